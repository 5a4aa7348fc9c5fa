//! Integration-test harness: real peers (loop-mounted ext4, a private
//! dockerd, imported images, moto_server, etcd, a container with systemd as
//! PID 1) behind Drop guards.
//! Use it from any test file with `mod support;`.
//!
//! Tests run as root and need the packages from `scripts/test-deps.sh`; a
//! missing binary panics with the install command instead of skipping.

// Each test binary uses only part of the harness (re-exports included).
#![allow(dead_code, unused_imports)]

pub mod certs;
pub mod client;
pub mod cloudinit;
pub mod cwpeer;
pub mod daemon;
pub mod docker_world;
pub mod dockerd;
pub mod ecs_agent;
pub mod ecs_cluster;
pub mod ecs_world;
pub mod engine_events;
pub mod etcd;
pub mod etcd_cluster;
pub mod etcd_fill;
pub mod faultproxy;
pub mod http_client;
pub mod images;
pub mod imds;
pub mod leftovers;
pub mod loopfs;
pub mod mockhttp;
pub mod moto;
pub mod mounts;
pub mod node;
pub mod notify;
pub mod peer;
pub mod procs;
pub mod procstat;
pub mod registry;
pub mod release;
pub mod slowsock;
pub mod stallsock;
pub mod systemd_container;
pub mod systemd_image;
pub mod watch;

pub use dockerd::Dockerd;
pub use etcd::Etcd;
pub use loopfs::{FsUsage, LoopFs, LoopFsOptions};
pub use moto::Moto;
