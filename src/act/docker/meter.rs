//! The meter: while the Docker volume is near `prune_start` or above, what each running
//! container writes is read (once a second when armed, four times a second at `prune`)
//! and published for the eviction rule. A task of its own, so that a slow read never
//! delays a pass or an eviction; it lists the running containers itself, so that a writer
//! started a moment ago is measured without waiting for the next inventory.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bollard::query_parameters::ListContainersOptions;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::docker::{CALL_TIMEOUT, DockerSource, WriteMeter};
use crate::sample::{ContainerInfo, ContainerState, ContainerWrites};

/// Runs until aborted, reading every `cadence` (which the actor may change).
pub async fn run(
    source: DockerSource,
    mut cadence: watch::Receiver<Duration>,
    docker_root: PathBuf,
    out: watch::Sender<Arc<Vec<ContainerWrites>>>,
) {
    let mut meter = WriteMeter::new();
    info!(
        counter = meter.kind(),
        "measuring what each running container writes"
    );
    let mut failing = false;
    loop {
        let every = *cadence.borrow_and_update();
        match running(&source).await {
            Ok(running) => {
                failing = false;
                let refs: Vec<&ContainerInfo> = running.iter().collect();
                let writes = meter.measure(&source, &refs, &docker_root).await;
                out.send_replace(Arc::new(writes));
            }
            Err(e) if !failing => {
                failing = true;
                warn!(error = %e, "cannot list the running containers to measure their writes");
            }
            Err(_) => {}
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            changed = cadence.changed() => if changed.is_err() { return },
        }
    }
}

/// The running containers, as the meter needs them.
async fn running(source: &DockerSource) -> Result<Vec<ContainerInfo>, String> {
    let opts = ListContainersOptions {
        all: false,
        filters: Some(HashMap::from([(
            "status".to_owned(),
            vec!["running".to_owned()],
        )])),
        ..Default::default()
    };
    let listed = tokio::time::timeout(CALL_TIMEOUT, source.docker.list_containers(Some(opts)))
        .await
        .map_err(|_| format!("no answer within {CALL_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
    Ok(listed
        .into_iter()
        .filter_map(|c| {
            Some(ContainerInfo {
                name: c
                    .names
                    .as_ref()
                    .and_then(|n| n.first())
                    .map(|n| n.trim_start_matches('/').to_owned())
                    .unwrap_or_default(),
                image_id: c.image_id.unwrap_or_default(),
                state: ContainerState::Running,
                created: std::time::SystemTime::UNIX_EPOCH,
                finished_at: None,
                labels: c.labels.unwrap_or_default().into_iter().collect(),
                size_rw_bytes: None,
                log_bytes: None,
                id: c.id?,
            })
        })
        .collect())
}
