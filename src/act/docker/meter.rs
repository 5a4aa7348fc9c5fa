//! The meter: while the Docker volume is near `prune_start` or above, what each running
//! container writes is read (once a second when armed, four times a second at `prune`)
//! and published for the eviction rule. A task of its own, so that a slow read never
//! delays a pass or an eviction; it lists the running containers itself, so that a writer
//! started a moment ago is measured without waiting for the next inventory.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

use crate::docker::{DockerSource, WriteMeter};
use crate::sample::{ContainerInfo, ContainerWrites};

/// Runs until aborted, reading every `cadence` (which the actor may change).
pub async fn run(
    source: DockerSource,
    mut cadence: watch::Receiver<Duration>,
    docker_root: PathBuf,
    out: watch::Sender<Arc<Vec<ContainerWrites>>>,
) {
    let mut meter = WriteMeter::new(&docker_root);
    info!(
        counter = %meter.kind(),
        "measuring what each running container writes"
    );
    let mut failing = false;
    loop {
        let every = *cadence.borrow_and_update();
        match source.running().await {
            Ok(running) => {
                failing = false;
                let refs: Vec<&ContainerInfo> = running.iter().collect();
                let writes = meter.measure(&source, &refs, &docker_root).await;
                out.send_replace(Arc::new(writes));
            }
            Err(e) if !failing => {
                failing = true;
                warn!(error = %crate::error::chain(&e), "cannot list the running containers to measure their writes");
            }
            Err(_) => {}
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            changed = cadence.changed() => if changed.is_err() { return },
        }
    }
}
