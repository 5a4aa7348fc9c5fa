//! Telling people: the systemd notifications, the logs, and the status report.

pub mod cloudwatch;
pub mod etcd_status;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod prometheus;
pub mod status;
pub mod summary;
