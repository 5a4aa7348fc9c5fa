//! Telling people: the systemd notifications, the logs, and the status report.

pub mod cloudwatch;
pub mod counters;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod status;
pub mod summary;

/// Bytes for people: `2.1 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    bytesize::ByteSize::b(bytes).display().iec().to_string()
}
