//! The meter: while the Docker volume is at `prune` or above, what each running container
//! writes is read four times a second and published for the eviction rule. A task of its
//! own, so that a slow read never delays a pass or an eviction.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::info;

use crate::docker::{DockerSource, WriteMeter};
use crate::sample::{ContainerInfo, ContainerState, ContainerWrites, Inventory};

/// How often running containers' writes are read while metering. A writer at 100 MB/s
/// takes seconds to fill what is left at `prune_start`; a quarter second is cheap.
pub const METER_EVERY: Duration = Duration::from_millis(250);

/// Runs until aborted; publishes an empty list when it starts.
pub async fn run(
    source: DockerSource,
    inventory: watch::Receiver<Option<Arc<Inventory>>>,
    docker_root: PathBuf,
    out: watch::Sender<Arc<Vec<ContainerWrites>>>,
) {
    let mut meter = WriteMeter::new();
    info!(
        counter = meter.kind(),
        "measuring what each running container writes"
    );
    let mut tick = tokio::time::interval(METER_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let snapshot = inventory.borrow().clone();
        let running: Vec<&ContainerInfo> = snapshot
            .as_deref()
            .map(|i| {
                i.containers
                    .iter()
                    .filter(|c| c.state == ContainerState::Running)
                    .collect()
            })
            .unwrap_or_default();
        let writes = meter.measure(&source, &running, &docker_root).await;
        out.send_replace(Arc::new(writes));
    }
}
