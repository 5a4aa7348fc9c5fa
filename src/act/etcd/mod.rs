//! etcd's actor: reads etcd every 15 s for the loop and the reporters, and — only with
//! `etcd.maintenance = true` — performs what the pure [`machine`] decides.

mod actor;
pub mod machine;

pub use actor::{EtcdChannels, run};
