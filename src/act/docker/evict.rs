//! Carrying out an eviction: one journal line that names the container, its image, task
//! and family, what it wrote and how fast — written before anything is removed — then the
//! stop and the removal, and the count per task family for the `Evictions` metric.

use std::time::Duration;

use tracing::{info, warn};

use crate::counters::Counters;
use crate::docker::DockerSource;
use crate::human;
use crate::policy::{Eviction, STOP_GRACE};

pub async fn evict(source: &DockerSource, e: &Eviction, counters: &Counters) {
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
    match source.evict(&e.container_id, grace).await {
        Ok(()) => {
            counters.add_eviction(e.task_family.as_deref());
            info!(
                container = %e.name,
                task_family = e.task_family.as_deref().unwrap_or("-"),
                "evicted container {}: stopped and removed, its writable layer freed",
                e.name
            );
        }
        Err(err) => warn!(
            container = %e.name,
            error = %crate::error::chain(&err),
            "could not evict container {}",
            e.name
        ),
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
