//! systemd as PID 1 in a container on the private dockerd, the cloud-config applier and
//! checker, a NoCloud seed for the real cloud-init, the release artifacts the install tests use.

pub mod cloudinit;
pub mod container;
pub mod image;
pub mod nocloud;
pub mod node;
pub mod release;
