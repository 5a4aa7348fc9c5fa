//! Watching what the agent does from outside: the peak of a disk's usage, sampled every
//! 20 ms in the background, and a container's state (or that it is gone).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use crate::Dockerd;

/// The container's state, or `gone` once it no longer exists.
pub fn container_state(d: &Dockerd, id: &str) -> String {
    let out = d
        .docker()
        .args(["container", "inspect", "--format", "{{.State.Status}}", id])
        .output()
        .expect("docker container inspect");
    if out.status.success() {
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    } else {
        "gone".to_owned()
    }
}

/// What a watch saw: the peak of df's Use%, and when usage first reached the threshold.
#[derive(Debug, Clone, Copy)]
pub struct Watched {
    pub peak: f64,
    pub crossed: Option<std::time::SystemTime>,
}

/// Polls df's Use% every 20 ms in the background.
#[derive(Debug)]
pub struct PeakWatch {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<Watched>,
}

impl PeakWatch {
    pub fn start(root: std::path::PathBuf) -> PeakWatch {
        Self::crossing(root, 100.0)
    }

    /// Also notes when usage first reaches `threshold` percent.
    pub fn crossing(root: std::path::PathBuf, threshold: f64) -> PeakWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = thread::spawn(move || {
            let mut seen = Watched {
                peak: 0.0,
                crossed: None,
            };
            while !flag.load(Ordering::Relaxed) {
                // statvfs directly: a `stat -f` process every 20 ms would cost more than
                // what it watches.
                if let Ok(s) = diskguard::sample::stat(&root) {
                    let pct = s.used_percent();
                    seen.peak = seen.peak.max(pct);
                    if pct >= threshold && seen.crossed.is_none() {
                        seen.crossed = Some(std::time::SystemTime::now());
                    }
                }
                thread::sleep(Duration::from_millis(20));
            }
            seen
        });
        PeakWatch { stop, handle }
    }

    pub fn peak(self) -> f64 {
        self.watched().peak
    }

    pub fn watched(self) -> Watched {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("peak watcher")
    }
}
