//! A systemd notify socket for a daemon under test: every datagram diskguard sends
//! (READY=1, WATCHDOG=1, STATUS=…) is stamped on arrival by a thread of its own, so a
//! test can do other things (fill a disk, run `status`) and afterwards check that no
//! watchdog ping came late.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct NotifySocket {
    path: PathBuf,
    heard: Arc<Mutex<Vec<(Instant, String)>>>,
    stop: Arc<AtomicBool>,
    _dir: tempfile::TempDir,
}

impl NotifySocket {
    pub fn bind() -> NotifySocket {
        let dir = tempfile::tempdir().expect("tempdir for the notify socket");
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        let heard = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (Arc::clone(&heard), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !s.load(Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf) {
                    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                    lock(&h).push((Instant::now(), msg));
                }
            }
        });
        NotifySocket {
            path,
            heard,
            stop,
            _dir: dir,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `NOTIFY_SOCKET` and `WATCHDOG_USEC`, as systemd sets them for `WatchdogSec=`.
    pub fn env(&self, watchdog: Duration) -> Vec<(&'static str, String)> {
        vec![
            ("NOTIFY_SOCKET", self.path.display().to_string()),
            ("WATCHDOG_USEC", watchdog.as_micros().to_string()),
        ]
    }

    /// When the first message with a line starting with `key` arrived.
    pub fn wait_for(&self, key: &str, limit: Duration) -> Instant {
        let start = Instant::now();
        loop {
            if let Some(at) = self.with(key).first() {
                return *at;
            }
            assert!(
                start.elapsed() < limit,
                "no {key} on the notify socket within {limit:?}; heard {:?}",
                self.messages()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn messages(&self) -> Vec<(Instant, String)> {
        lock(&self.heard).clone()
    }

    /// Arrival times of the messages carrying a line that starts with `key`.
    pub fn with(&self, key: &str) -> Vec<Instant> {
        lock(&self.heard)
            .iter()
            .filter(|(_, m)| m.lines().any(|l| l.starts_with(key)))
            .map(|(at, _)| *at)
            .collect()
    }

    /// The longest time without a `WATCHDOG=1` between `since` and `until`, counting
    /// the stretch from `since` to the first ping and from the last ping to `until`:
    /// what systemd's watchdog would have measured over that span.
    pub fn longest_watchdog_silence(&self, since: Instant, until: Instant) -> Duration {
        let pings: Vec<Instant> = self
            .with("WATCHDOG=1")
            .into_iter()
            .filter(|t| *t >= since && *t <= until)
            .collect();
        let mut edges = vec![since];
        edges.extend(pings);
        edges.push(until);
        edges
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default()
    }

    pub fn pings_between(&self, since: Instant, until: Instant) -> usize {
        self.with("WATCHDOG=1")
            .into_iter()
            .filter(|t| *t >= since && *t <= until)
            .count()
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
