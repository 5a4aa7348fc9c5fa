//! diskguard's integration-test harness: real peers behind Drop guards, grouped by peer —
//! `aws` (moto, the CloudWatch peer, mocks of the ECS agent and IMDS, a fault proxy),
//! `docker` (a private dockerd, images, a registry, forwarders), `etcd`, `fs` (loop-mounted
//! ext4, mounts, watching usage), `network` (a mock HTTP server, a client, certificates),
//! `processes` (peer processes, the diskguard daemon, cleanup), `systemd` (systemd as PID 1
//! in a container, the install path).
//!
//! A library of its own, so each test binary links what it uses and nothing is compiled
//! thirty times. Tests run as root and need the packages from `scripts/test-deps.sh`; a
//! missing binary panics with the install command instead of skipping.

pub mod aws;
pub mod docker;
pub mod etcd;
pub mod fs;
pub mod network;
pub mod processes;
pub mod systemd;

pub use aws::moto::Moto;
pub use docker::dockerd::Dockerd;
pub use etcd::member::Etcd;
pub use fs::loopfs::{FsUsage, LoopFs, LoopFsOptions};
