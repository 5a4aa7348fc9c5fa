//! Debian's etcd-server: one member, a three-member cluster, filling its quota.

pub mod cluster;
pub mod fill;
pub mod member;
