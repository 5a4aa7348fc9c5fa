//! Everything that talks to etcd: the HTTP(S) client, the Prometheus text on `/metrics`,
//! the v3 JSON gateway (alarms, status, members, compaction, defragment), the lease-based
//! maintenance lock, and finding etcd's data dir from its systemd unit.
//!
//! Imports only `config`, `sample` (plain data) and small shared helpers: the policy and
//! the actors see etcd through [`crate::sample::EtcdView`] and [`Gateway`]'s methods.

mod client;
pub mod discover;
mod error;
mod gateway;
mod lock;
mod metrics;
mod tls;
mod view;

pub use client::EtcdClient;
pub use discover::resolve_data_dir;
pub use error::EtcdError;
pub use gateway::{Alarm, Gateway, Member, MemberStatus};
pub use lock::{Attempt as LockAttempt, LOCK_KEY, LOCK_TTL_SECONDS, Lock};
pub use metrics::{BackendMetrics, parse_metrics};
pub use view::{read_view, watched};
