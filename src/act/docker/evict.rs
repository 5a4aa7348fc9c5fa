//! Carrying out an eviction: one journal line that names the container, its image, task
//! and family, what it wrote and how fast — written before anything is removed — then the
//! stop, counted per task family for the `Evictions` metric as soon as the container
//! writes no more, and the removal, which the machine has tried again when it fails.

use std::time::Duration;

use tracing::{info, warn};

use super::machine::Evicted;
use crate::counters::Counters;
use crate::docker::{DockerSource, Stop};
use crate::human;
use crate::policy::{Eviction, STOP_GRACE};

pub async fn evict(source: &DockerSource, e: &Eviction, counters: &Counters) -> Evicted {
    let how = if e.kill {
        "killing it now (the disk fills sooner than a graceful stop)"
    } else {
        "stopping it"
    };
    warn!(
        container = %e.name,
        container_id = %e.container_id,
        image = %e.image,
        task_arn = e.task_arn.as_deref().unwrap_or("-"),
        task_family = e.task_family.as_deref().unwrap_or("-"),
        written_bytes = e.written_bytes,
        bytes_per_second = e.bytes_per_second as u64,
        "evicting container {} (image {}, task family {}): {} written, {}/s — {}; {how}",
        e.name,
        e.image,
        e.task_family.as_deref().unwrap_or("none"),
        human::bytes(e.written_bytes),
        human::bytes(e.bytes_per_second as u64),
        e.why
    );
    let grace = if e.kill { Duration::ZERO } else { STOP_GRACE };
    match source.stop_for_eviction(&e.container_id, grace).await {
        Ok(Stop::Stopped | Stop::AlreadyStopped) => {
            // It writes no more: that is the eviction, whatever the removal does.
            counters.add_eviction(e.task_family.as_deref());
        }
        Ok(Stop::Gone) => {
            info!(
                container = %e.name,
                "container {} was already removed by someone else",
                e.name
            );
            return Evicted::Removed;
        }
        Err(err) => {
            let why = crate::error::chain(&err);
            warn!(
                container = %e.name,
                error = %why,
                "could not stop container {}; tried again while it is still the one to evict",
                e.name
            );
            return Evicted::NotStopped(why);
        }
    }
    remove(source, e).await
}

/// Removes an evicted container that has stopped.
pub async fn remove(source: &DockerSource, e: &Eviction) -> Evicted {
    match source.remove_evicted(&e.container_id).await {
        Ok(()) => {
            info!(
                container = %e.name,
                task_family = e.task_family.as_deref().unwrap_or("-"),
                "evicted container {}: stopped and removed, its writable layer freed",
                e.name
            );
            Evicted::Removed
        }
        Err(why) => {
            warn!(
                container = %e.name,
                error = %why,
                "stopped container {} (it writes no more), but could not remove it; trying again — its writable layer still holds the disk",
                e.name
            );
            Evicted::NotRemoved(why)
        }
    }
}

/// Observe mode: what would be evicted, said once per container.
pub fn observe(e: &Eviction) {
    info!(
        container = %e.name,
        image = %e.image,
        task_family = e.task_family.as_deref().unwrap_or("-"),
        bytes_per_second = e.bytes_per_second as u64,
        "observe mode: would evict container {} (task family {}, {}/s): {}",
        e.name,
        e.task_family.as_deref().unwrap_or("none"),
        human::bytes(e.bytes_per_second as u64),
        e.why
    );
}
