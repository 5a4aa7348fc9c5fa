//! A private Docker Engine (Debian's docker.io, 20.10) per test: its own
//! socket, exec root, containerd and data root, so tests never touch the
//! host's daemon or each other.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::loopfs::{LoopFs, LoopFsOptions, detach_loops_under, unmount_tree};
use super::peer::{Bin, HttpResponse, PeerProcess, binary, http_unix, temp_dir};

/// Startup on this kind of machine takes ~0.2 s; the margin is for loaded CI.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct Dockerd {
    process: Option<PeerProcess>,
    data_root: PathBuf,
    last_start: Duration,
    // Declared after `process` so the daemon is gone before its filesystem,
    // and before `dir`, which holds the socket, exec root and logs.
    fs: Option<LoopFs>,
    dir: tempfile::TempDir,
}

impl Dockerd {
    /// A new ext4 loop filesystem with the daemon's data root at `<mount>/docker`.
    pub fn start_on_loopfs(opts: &LoopFsOptions) -> Self {
        let fs = LoopFs::with_options(opts);
        let data_root = fs.path().join("docker");
        Self::launch(data_root, Some(fs))
    }

    /// Uses `data_root` as given; the caller keeps whatever holds it alive
    /// longer than this guard (declare it first).
    pub fn start(data_root: impl Into<PathBuf>) -> Self {
        Self::launch(data_root.into(), None)
    }

    fn launch(data_root: PathBuf, fs: Option<LoopFs>) -> Self {
        let dir = temp_dir("dockerd");
        // Our own config file shields us from the host's /etc/docker/daemon.json.
        // The key path (settable only here in Debian's build) stops every
        // daemon sharing, and racing to create, /etc/docker/key.json.
        let config = serde_json::json!({ "deprecated-key-path": dir.path().join("key.json") });
        std::fs::write(dir.path().join("daemon.json"), config.to_string())
            .expect("writing daemon.json");
        std::fs::create_dir_all(dir.path().join("cli")).expect("creating docker CLI config dir");
        let mut d = Dockerd {
            process: None,
            data_root,
            last_start: Duration::ZERO,
            fs,
            dir,
        };
        let socket_len = d.socket().as_os_str().len().max(
            d.exec_root()
                .join("containerd/containerd.sock.ttrpc")
                .as_os_str()
                .len(),
        );
        assert!(
            socket_len < 100,
            "temp dir {} too long for unix socket paths; set TMPDIR shorter",
            d.dir.path().display()
        );
        d.restart();
        d
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("docker.sock")
    }
    /// Value for `DOCKER_HOST`, e.g. `unix:///tmp/diskguard-t42-dockerd-x/docker.sock`.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }
    pub fn data_root(&self) -> &Path {
        &self.data_root
    }
    /// Holds containerd's private state and socket, and container netns.
    pub fn exec_root(&self) -> PathBuf {
        self.dir.path().join("exec")
    }
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("dockerd.log")
    }
    pub fn loopfs(&self) -> Option<&LoopFs> {
        self.fs.as_ref()
    }
    pub fn loopfs_mut(&mut self) -> Option<&mut LoopFs> {
        self.fs.as_mut()
    }
    /// How long the last (re)start took until `/_ping` answered.
    pub fn startup_time(&self) -> Duration {
        self.last_start
    }

    /// dockerd's pid; panics if it is not running.
    pub fn pid(&self) -> u32 {
        self.process
            .as_ref()
            .map(PeerProcess::pid)
            .expect("dockerd is not running (killed and not restarted?)")
    }

    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(|p| p.exited().is_none())
    }

    /// `true` if the socket answers `GET /_ping` with `OK`.
    pub fn ping(&self) -> bool {
        http_unix(&self.socket(), "GET", "/_ping", &[], b"")
            .is_ok_and(|r| r.status == 200 && r.body == b"OK")
    }

    /// A raw Engine API call over the private socket.
    pub fn api(&self, method: &str, path: &str, body: &[u8]) -> HttpResponse {
        let headers: &[(&str, &str)] = if body.is_empty() {
            &[]
        } else {
            &[("Content-Type", "application/json")]
        };
        http_unix(&self.socket(), method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path} on {}: {e}", self.socket().display()))
    }

    /// Debian's docker CLI pointed at this daemon only. Its config dir is
    /// private too, so host contexts or credential helpers cannot redirect it.
    pub fn docker(&self) -> Command {
        let mut cmd = Command::new(binary(Bin::Docker));
        cmd.env("DOCKER_HOST", self.docker_host())
            .env("DOCKER_CONFIG", self.dir.path().join("cli"))
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH");
        cmd
    }

    /// SIGKILL dockerd alone, like a crash: its containerd dies with it
    /// (dockerd gives it a parent-death signal) but shims and containers keep
    /// running, as on a real host. Use [`Dockerd::restart`] to bring it back.
    pub fn kill9(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill9();
        }
    }

    /// Graceful stop (SIGTERM, bounded), keeping the data root for a restart.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            // Containers would otherwise get their 10 s stop timeout each.
            self.kill_containers();
            p.stop(Duration::from_secs(15));
        }
    }

    /// Starts dockerd (again) on the same data root, sockets and exec root,
    /// and waits until `/_ping` answers. Stops a running one first.
    pub fn restart(&mut self) {
        self.stop();
        self.clear_stale_containerd_pidfile();
        let dir = self.dir.path();
        let args: Vec<String> = vec![
            format!("--host={}", self.docker_host()),
            format!("--data-root={}", self.data_root.display()),
            format!("--exec-root={}", self.exec_root().display()),
            format!("--pidfile={}", dir.join("docker.pid").display()),
            format!("--config-file={}", dir.join("daemon.json").display()),
            "--bridge=none".into(),
            "--iptables=false".into(),
            "--ip-masq=false".into(),
            "--ip-forward=false".into(),
            "--userland-proxy=false".into(),
            "--storage-driver=overlay2".into(),
            "--log-level=warn".into(),
            // No --containerd: dockerd then runs its own, configured under
            // the exec root (state, socket) and data root, so it is private.
        ];
        let log = self.log_path();
        // A fixed PATH so Debian's containerd, runc and shim are the ones used.
        let env = [("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")];
        let started = Instant::now();
        let mut p = PeerProcess::spawn("dockerd", &binary(Bin::Dockerd), &args, &log, &env);
        let socket = self.socket();
        let ready = p.wait_ready(READY_TIMEOUT, || {
            http_unix(&socket, "GET", "/_ping", &[], b"").is_ok_and(|r| r.status == 200)
        });
        self.process = Some(p);
        if let Err(why) = ready {
            panic!(
                "private dockerd on {} (data root {}): {why}",
                socket.display(),
                self.data_root.display()
            );
        }
        self.last_start = started.elapsed();
    }

    // After a SIGKILL, dockerd's containerd dies too but lingers as a zombie
    // until init reaps it (slowly, on some hosts). dockerd treats the pid in
    // this file as "containerd still running" if kill(pid, 0) succeeds, and
    // then times out dialing its dead socket instead of starting a new one.
    fn clear_stale_containerd_pidfile(&self) {
        let pidfile = self.exec_root().join("containerd/containerd.pid");
        let Ok(pid) = std::fs::read_to_string(&pidfile) else {
            return;
        };
        let Ok(pid) = pid.trim().parse::<i32>() else {
            return;
        };
        let live = || {
            processes()
                .iter()
                .any(|p| p.pid == pid && p.cmdline.contains("containerd"))
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while live() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if live() {
            panic!(
                "containerd {pid} of the previous dockerd is still running; cannot restart on {}",
                self.data_root.display()
            );
        }
        let _ = std::fs::remove_file(&pidfile);
    }

    // Container processes are children of shims that name our containerd
    // socket; killing them (not the shims) lets dockerd shut down promptly.
    fn kill_containers(&self) {
        let needle = self
            .exec_root()
            .join("containerd/containerd.sock")
            .display()
            .to_string();
        let procs = processes();
        let shims: Vec<i32> = procs
            .iter()
            .filter(|p| p.cmdline.contains("containerd-shim") && p.cmdline.contains(&needle))
            .map(|p| p.pid)
            .collect();
        for child in procs.iter().filter(|p| shims.contains(&p.ppid)) {
            let _ = kill(Pid::from_raw(child.pid), Signal::SIGKILL);
        }
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        self.stop();
        // Whatever survived (shims after kill9, containerd if dockerd was
        // SIGKILLed mid-shutdown) names our temp dir on its command line.
        kill_processes_mentioning(&format!("{}/", self.dir.path().display()));
        // Every container this daemon ever ran may have left a shim socket
        // (a SIGKILLed shim cannot remove its own).
        let address = self.exec_root().join("containerd/containerd.sock");
        let ids = std::fs::read_dir(self.data_root.join("containers"))
            .into_iter()
            .flatten();
        let keys: Vec<String> = ids
            .flatten()
            .map(|e| {
                format!(
                    "{}/moby/{}",
                    address.display(),
                    e.file_name().to_string_lossy()
                )
            })
            .collect();
        remove_shim_sockets(&keys);
        // Overlay and shm mounts of containers, netns under the exec root.
        unmount_tree(self.dir.path());
        unmount_tree(&self.data_root);
    }
}

/// Where containerd 1.6 puts a shim's ttrpc socket: outside every dir we
/// own, at /run/containerd/s/<sha256("<containerd address>/<ns>/<id>")>.
pub fn shim_socket_paths(keys: &[String]) -> Vec<PathBuf> {
    if keys.is_empty() {
        return Vec::new();
    }
    let script = r#"for k; do printf %s "$k" | sha256sum; done"#;
    let out = Command::new("sh")
        .args(["-c", script, "sh"])
        .args(keys)
        .output();
    let Ok(out) = out else { return Vec::new() };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(|hex| Path::new("/run/containerd/s").join(hex))
        .collect()
}

fn remove_shim_sockets(keys: &[String]) {
    for socket in shim_socket_paths(keys) {
        let _ = std::fs::remove_file(socket);
    }
}

/// `<address>/<namespace>/<id>` of every live shim whose command line
/// mentions `needle`, i.e. the keys of [`shim_socket_paths`].
fn shim_keys_mentioning(needle: &str) -> Vec<String> {
    let flag = |args: &[&str], name: &str| {
        let i = args.iter().position(|a| *a == name)?;
        args.get(i + 1).map(|v| (*v).to_owned())
    };
    processes()
        .iter()
        .filter(|p| p.cmdline.contains("containerd-shim") && p.cmdline.contains(needle))
        .filter_map(|p| {
            let args: Vec<&str> = p.cmdline.split(' ').collect();
            let (ns, id) = (flag(&args, "-namespace")?, flag(&args, "-id")?);
            Some(format!("{}/{ns}/{id}", flag(&args, "-address")?))
        })
        .collect()
}

// Process-tree and leftover cleanup helpers live here because dockerd is
// the peer whose descendants (shims, containers) outlive it.

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

/// Once per test process: clean up after earlier test processes that died
/// without running their guards (SIGKILL, abort, CI timeout). Only dirs whose
/// owning pid is gone are touched, so concurrent test binaries are safe.
pub fn sweep_stale_once() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        sweep_stale();
    });
}

/// The sweep itself; returns the dirs it removed.
pub fn sweep_stale() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return Vec::new();
    };
    let mut swept = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("diskguard-t")
            .and_then(|r| r.split('-').next())
        else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let dir = entry.path();
        eprintln!(
            "diskguard tests: cleaning up {} left by dead test process {pid}",
            dir.display()
        );
        let needle = format!("{}/", dir.display());
        let shim_keys = shim_keys_mentioning(&needle);
        kill_processes_mentioning(&needle);
        remove_shim_sockets(&shim_keys);
        unmount_tree(&dir);
        detach_loops_under(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        swept.push(dir);
    }
    swept
}
