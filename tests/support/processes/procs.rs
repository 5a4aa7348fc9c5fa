//! Child processes and /proc: running a command to completion, the guard for
//! a long-running peer, and finding (or killing) what processes are left.

use std::collections::HashSet;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::processes::peer::{Bin, binary};

/// Runs `cmd` to completion; panics with the command line, status and stderr
/// on failure. Returns trimmed stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = run_raw(cmd);
    if !out.status.success() {
        panic!(
            "`{}` failed ({}):\nstderr: {}\nstdout: {}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Runs `cmd`, panicking only if it could not be started at all.
pub fn run_raw(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot start `{}`: {e}", describe(cmd)))
}

/// Runs `cmd` to its end: whether it succeeded, and its stdout and stderr as one text (what a
/// checker said about a file).
pub fn run_said(cmd: &mut Command) -> (bool, String) {
    let out = run_raw(cmd);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// A long-running peer. It gets its own process group (so a terminal ^C hits
/// only the test) and a parent-death SIGKILL via `setpriv`, so a test process
/// that is killed outright does not leave it running. The death signal is
/// tied to the spawning *thread*: keep the guard on the thread that made it.
#[derive(Debug)]
pub struct PeerProcess {
    name: String,
    child: Child,
    log: PathBuf,
}

impl PeerProcess {
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        log: &Path,
        env: &[(&str, &str)],
    ) -> Self {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("opening log {}: {e}", log.display()));
        let log_err = log_file.try_clone().expect("duplicating log file handle");
        let mut cmd = Command::new(binary(Bin::Setpriv));
        cmd.args(["--pdeathsig", "KILL", "--"])
            .arg(program)
            .args(args);
        cmd.envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{}`: {e}", describe(&cmd)));
        PeerProcess {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once the peer has exited (it is reaped here).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Last lines of the peer's combined stdout/stderr, for panic messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        format!(
            "--- last lines of {} ({}) ---\n{tail}",
            self.name,
            self.log.display()
        )
    }

    /// Waits for `probe`, failing fast (with the log) if the peer dies first.
    pub fn wait_ready(
        &mut self,
        timeout: Duration,
        mut probe: impl FnMut() -> bool,
    ) -> Result<(), String> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(5);
        loop {
            if probe() {
                return Ok(());
            }
            if let Some(status) = self.exited() {
                return Err(format!(
                    "{} exited ({status}) before it was ready\n{}",
                    self.name,
                    self.log_tail()
                ));
            }
            if start.elapsed() > timeout {
                return Err(format!(
                    "{} not ready after {timeout:?}\n{}",
                    self.name,
                    self.log_tail()
                ));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// SIGTERM to the group, up to `grace` to exit, then SIGKILL. Reaps it.
    pub fn stop(&mut self, grace: Duration) {
        if self.exited().is_some() {
            return;
        }
        let pgid = Pid::from_raw(self.child.id() as i32);
        let _ = killpg(pgid, Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill9();
    }

    /// SIGKILL to the peer's process group, then reap it.
    pub fn kill9(&mut self) {
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}
/// A process as seen in /proc.
#[derive(Debug, Clone)]
pub struct ProcInfo {
    pub pid: i32,
    pub ppid: i32,
    pub cmdline: String,
}

pub fn processes() -> Vec<ProcInfo> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // comm may contain spaces and parens; fields resume after the last ')'.
        let rest = &stat[stat.rfind(')')? + 2..];
        let mut fields = rest.split(' ');
        let state = fields.next()?;
        if state == "Z" {
            return None;
        }
        let ppid = fields.next()?.parse().ok()?;
        let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        Some(ProcInfo { pid, ppid, cmdline })
    })
    .collect()
}

/// `true` while `pid` is a live (not zombie) process.
pub fn pid_alive(pid: u32) -> bool {
    processes().iter().any(|p| p.pid == pid as i32)
}

/// `"<pid> <cmdline>"` of every live process whose command line mentions
/// `needle`, for assertions that nothing was left running.
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    processes()
        .into_iter()
        .filter(|p| p.cmdline.contains(needle))
        .map(|p| format!("{} {}", p.pid, p.cmdline))
        .collect()
}

/// SIGKILLs every live process whose command line mentions `needle`, plus all
/// their descendants (container processes do not mention it), and waits
/// briefly for them to go so their mounts are released.
pub fn kill_processes_mentioning(needle: &str) -> usize {
    let procs = processes();
    let me = std::process::id() as i32;
    let mut doomed: HashSet<i32> = procs
        .iter()
        .filter(|p| p.pid != me && p.cmdline.contains(needle))
        .map(|p| p.pid)
        .collect();
    loop {
        let before = doomed.len();
        let children: Vec<i32> = procs
            .iter()
            .filter(|p| doomed.contains(&p.ppid))
            .map(|p| p.pid)
            .collect();
        doomed.extend(children);
        if doomed.len() == before {
            break;
        }
    }
    for pid in &doomed {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        let alive: HashSet<i32> = processes().into_iter().map(|p| p.pid).collect();
        if doomed.iter().all(|p| !alive.contains(p)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    doomed.len()
}
