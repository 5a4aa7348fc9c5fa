//! diskguard keeps ECS container instances alive when Docker's or etcd's disk fills up:
//! it samples the disks, decides with a pure policy, reclaims Docker space, drains the
//! instance before the disk is full, and reports to systemd, journald and CloudWatch.

/// Changing the world: the actors that carry plans out.
pub mod act;
/// Command-line arguments and the commands behind them.
pub mod cli;
/// The configuration file: raw form, defaults, validation.
pub mod config;
/// The daemon: the sampling loop that ties sample → decide → act → report together.
pub mod daemon;
/// Errors of the program as a whole, and the exit codes they map to.
pub mod error;
/// Deciding what to do, purely.
pub mod policy;
/// Telling people: sd_notify, logs, the status report.
pub mod report;
/// Reading the world: filesystems, Docker, ECS, etcd.
pub mod sample;
/// Build information: version and git SHA.
pub mod version;
