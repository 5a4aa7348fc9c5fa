//! What filled the disk: containers ranked by writable layer plus json log. Listing with
//! `size=true` makes dockerd walk every layer, so this runs only at `prune` level and
//! above, never on the 1 s path.

use serde::Serialize;

use super::{DockerError, DockerSource};
use bollard::query_parameters::ListContainersOptions;

use crate::sample::{ECS_CONTAINER_LABEL, TASK_FAMILY_LABEL};

/// One container and what it holds on the Docker volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopWriter {
    pub container_id: String,
    pub name: String,
    pub bytes: u64,
    pub writable_layer_bytes: u64,
    pub log_bytes: u64,
    pub task_family: Option<String>,
    pub ecs_container_name: Option<String>,
}

impl std::fmt::Display for TopWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.name, crate::human::bytes(self.bytes))?;
        if let Some(family) = &self.task_family {
            write!(f, " (task {family}")?;
            if let Some(c) = &self.ecs_container_name {
                write!(f, ", container {c}")?;
            }
            write!(f, ")")?;
        }
        Ok(())
    }
}

/// The `n` containers holding the most bytes, largest first.
pub async fn top_writers(source: &DockerSource, n: usize) -> Result<Vec<TopWriter>, DockerError> {
    let opts = ListContainersOptions {
        all: true,
        size: true,
        ..Default::default()
    };
    let containers = source
        .bounded(
            "list containers with sizes",
            source.docker.list_containers(Some(opts)),
        )
        .await?;
    let mut writers = Vec::with_capacity(containers.len());
    for c in containers {
        let Some(id) = c.id else { continue };
        let writable = c.size_rw.and_then(|s| u64::try_from(s).ok()).unwrap_or(0);
        let log_bytes = match source.log_path(&id).await {
            Some(path) => tokio::fs::metadata(&path)
                .await
                .map(|m| m.len())
                .unwrap_or(0),
            None => 0,
        };
        let labels = c.labels.unwrap_or_default();
        writers.push(TopWriter {
            name: c
                .names
                .and_then(|n| n.into_iter().next())
                .map(|n| n.trim_start_matches('/').to_owned())
                .unwrap_or_else(|| id.chars().take(12).collect()),
            container_id: id,
            bytes: writable + log_bytes,
            writable_layer_bytes: writable,
            log_bytes,
            task_family: labels.get(TASK_FAMILY_LABEL).cloned(),
            ecs_container_name: labels.get(ECS_CONTAINER_LABEL).cloned(),
        });
    }
    writers.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.name.cmp(&b.name)));
    writers.truncate(n);
    Ok(writers)
}
