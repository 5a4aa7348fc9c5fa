//! What /proc says about a process: whether it has exited (without reaping it, so its
//! owner can still collect the exit code), its resident memory, CPU time and threads.

use std::time::Duration;

/// The one-letter state in /proc/PID/stat; `None` once the pid is gone (reaped).
pub fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: the state follows the last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Exited: a zombie waiting for its parent, or already reaped.
pub fn has_exited(pid: u32) -> bool {
    matches!(state(pid), None | Some('Z') | Some('X'))
}

/// Waits until the process has exited, up to `limit`; `true` if it did.
pub fn wait_exit(pid: u32, limit: Duration) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if has_exited(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    has_exited(pid)
}

/// A `Key:  N kB` line of /proc/PID/status, e.g. `RssAnon:`.
pub fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// VmRSS in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

/// VmHWM (peak RSS) in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM:")
}

pub fn threads(pid: u32) -> Option<u64> {
    status_kib(pid, "Threads:")
}

/// User + system CPU time so far, all threads.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // After the command name: state is field 3, utime 14 and stime 15 (1-based).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / clock_ticks(),
    ))
}

/// USER_HZ: 100 on every Linux this runs on, asked once anyway.
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}
