//! `diskguard run` as a child process, its stderr read line by line and each line stamped
//! on arrival, so tests can wait for what the daemon says and measure when it said it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

#[derive(Debug)]
pub struct Daemon {
    child: Child,
    lines: Receiver<(SystemTime, String)>,
    /// Every line read so far, for assertions and failure messages.
    pub seen: Vec<String>,
}

impl Daemon {
    pub fn start(config: &Path) -> Daemon {
        Daemon::start_with(config, &[])
    }

    /// With extra environment (AWS endpoints, NOTIFY_SOCKET …).
    pub fn start_with(config: &Path, env: &[(&str, &str)]) -> Daemon {
        let mut cmd = Command::new(crate::processes::diskguard_bin());
        cmd.arg("--config")
            .arg(config)
            .arg("run")
            .env("DISKGUARD_LOG", "info")
            // Never probe the real link-local IMDS address from a test; tests that need
            // IMDS serve it locally and turn this back off.
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("diskguard starts");
        let stderr = child.stderr.take().expect("piped");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send((SystemTime::now(), line)).is_err() {
                    break;
                }
            }
        });
        Daemon {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The first line from now on containing `needle`, with its arrival time.
    pub fn wait_for(&mut self, needle: &str, limit: Duration) -> (SystemTime, String) {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((at, line)) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return (at, line);
                    }
                }
                Err(_) => panic!(
                    "no log line with {needle:?} within {limit:?}; the daemon said:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// The first line containing `needle`, whether already read (by an earlier wait) or
    /// arriving within `limit`.
    pub fn said(&mut self, needle: &str, limit: Duration) -> String {
        match self.seen.iter().find(|l| l.contains(needle)) {
            Some(line) => line.clone(),
            None => self.wait_for(needle, limit).1,
        }
    }

    /// Reads whatever arrives for `d` (to count lines afterwards).
    pub fn drain_for(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        while let Ok((_, line)) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push(line);
        }
    }

    pub fn count(&self, needle: &str) -> usize {
        self.seen.iter().filter(|l| l.contains(needle)).count()
    }

    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_none()
    }

    /// SIGTERM, and the exit code must be 0.
    pub fn stop(mut self) {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM).expect("SIGTERM");
        let status = self.child.wait().expect("wait");
        assert_eq!(status.code(), Some(0), "diskguard exit after SIGTERM");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of the structured field `key=` in one of the daemon's log lines, unquoted.
pub fn log_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let needle = format!(" {key}=");
    let rest = &line[line.find(&needle)? + needle.len()..];
    rest.split_whitespace().next().map(|v| v.trim_matches('"'))
}

/// A numeric field of a log line; panics naming the line when it has none.
pub fn log_number(line: &str, key: &str) -> f64 {
    log_field(line, key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number {key}= in {line}"))
}
