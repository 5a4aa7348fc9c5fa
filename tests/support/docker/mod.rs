//! A private dockerd on a loop-mounted ext4, images made by `docker import`, a private
//! registry, forwarders that slow, fail or stall requests, the engine's events.

pub mod client;
pub mod dockerd;
pub mod events;
pub mod images;
pub mod registry;
pub mod slowsock;
pub mod stallsock;
pub mod world;
