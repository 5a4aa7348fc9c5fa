//! The maintenance lock: a key in etcd itself, created only if absent and tied to a
//! lease, so that two diskguards never defragment at once and a diskguard that dies
//! holding it frees it when its lease runs out.

use super::{EtcdError, Gateway};

/// The lock's key. Its value names the holder, for the other diskguards' log lines.
pub const LOCK_KEY: &str = "diskguard/maintenance-lock";
/// Long enough to outlive a missed keepalive or two, short enough that a crashed holder
/// blocks the others for at most a minute.
pub const LOCK_TTL_SECONDS: u64 = 60;

/// A held lock; give it back with [`Lock::release`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lock {
    pub lease: u64,
}

/// What trying to take the lock came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Taken(Lock),
    /// Another diskguard holds it; its value says which.
    Busy(String),
    /// etcd refused the lease or the key: its NOSPACE alarm is up (or this member's db is
    /// over quota), and no write, however small, gets through until it is defragmented.
    NoSpace,
}

impl Lock {
    /// One attempt, never waiting for the holder.
    pub async fn try_take(etcd: &impl Gateway, holder: &str) -> Result<Attempt, EtcdError> {
        let lease = match etcd.lease_grant(LOCK_TTL_SECONDS).await {
            Ok(lease) => lease,
            Err(e) if e.is_no_space() => return Ok(Attempt::NoSpace),
            Err(e) => return Err(e),
        };
        let outcome = match etcd.put_if_absent(LOCK_KEY, holder, lease).await {
            Ok(None) => return Ok(Attempt::Taken(Lock { lease })),
            Ok(Some(current)) => Ok(Attempt::Busy(current)),
            Err(e) if e.is_no_space() => Ok(Attempt::NoSpace),
            Err(e) => Err(e),
        };
        // Not taken: the lease is of no use. Revoking it is best effort: it runs out by
        // itself otherwise.
        let _ = etcd.lease_revoke(lease).await;
        outcome
    }

    pub async fn keep_alive(&self, etcd: &impl Gateway) -> Result<(), EtcdError> {
        etcd.lease_keepalive(self.lease).await
    }

    /// Revoking the lease deletes the key with it (a delete: allowed under NOSPACE).
    pub async fn release(self, etcd: &impl Gateway) -> Result<(), EtcdError> {
        etcd.lease_revoke(self.lease).await
    }
}
