//! diskguard keeps ECS container instances alive when Docker's or etcd's disk fills up:
//! it samples the disks, decides with a pure policy, reclaims Docker space, drains the
//! instance before the disk is full, and reports to systemd, journald and CloudWatch.
//!
//! Imports flow one way: `config` ← `sample` (and the outside systems `docker`, `ecs`,
//! `aws`, which read and write them) ← `policy` ← `act` / `report` ← `daemon` ← `cli`.
//! The small shared pieces (`actors`, `backoff`, `counters`, `human`, `http`) sit beside.

/// Changing the world: the actors that carry plans out.
pub mod act;
/// The actors' plumbing: the newest-plan channel and bounded shutdown.
pub mod actors;
/// EC2 Auto Scaling: this instance's group, and setting the instance Unhealthy in it.
pub mod asg;
/// The AWS SDK set-up and the instance metadata service.
pub mod aws;
/// One retry schedule for every actor.
pub mod backoff;
/// Command-line arguments and the commands behind them.
pub mod cli;
/// The configuration file: raw form, defaults, validation.
pub mod config;
/// Running totals that actors add to and reporters read.
pub mod counters;
/// The daemon: the sampling loop that ties sample → decide → act → report together.
pub mod daemon;
/// Everything that talks to Docker's Engine API, reads and writes.
pub mod docker;
/// `doctor`: the host's bad defaults, audited by pure checks over what was read.
pub mod doctor;
/// Everything that talks to ECS, reads and writes.
pub mod ecs;
/// Errors of the program as a whole, and the exit codes they map to.
pub mod error;
/// Everything that talks to etcd: its client URL, metrics, alarms, maintenance, the lock.
pub mod etcd;
/// A small HTTP GET for local endpoints.
pub mod http;
/// Numbers for people.
pub mod human;
/// Deciding what to do, purely.
pub mod policy;
/// Telling people: sd_notify, logs, metrics, the status report.
pub mod report;

pub mod runtime;
/// Reading the world: filesystems, and plain-data descriptions of Docker, ECS and etcd.
pub mod sample;
/// systemd unit files with their drop-ins, as systemd merges them.
pub mod unit_file;
/// Build information: version and git SHA.
pub mod version;
