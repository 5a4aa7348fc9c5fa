//! Loop-mounted ext4 filesystems, the mount table, and watching a disk's usage.

pub mod loopfs;
pub mod mounts;
pub mod watch;
