//! systemd as PID 1 in a container on the private dockerd, the cloud-config applier and
//! checker, the release artifacts the install tests use.

pub mod cloudinit;
pub mod container;
pub mod image;
pub mod node;
pub mod release;
