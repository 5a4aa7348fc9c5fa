//! Engine API objects → the policy's plain data, with the facts only an inspect gives
//! (finish times, tag times, log paths) cached, since they do not change.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, SystemTime};

use bollard::models::{
    ContainerInspectResponse, ContainerSummary, ContainerSummaryStateEnum, ImageInspect,
    ImageSummary,
};

use super::parse_time;
use crate::sample::{ContainerInfo, ContainerState, ImageInfo};

#[derive(Debug, Default, Clone)]
struct ContainerFacts {
    started_at: Option<SystemTime>,
    finished_at: Option<SystemTime>,
    log_path: Option<String>,
}

/// What inspects taught us, by id.
#[derive(Debug, Default)]
pub(super) struct InspectCache {
    /// Last tag time of each image (None: the engine does not say).
    images: HashMap<String, Option<SystemTime>>,
    /// Facts of containers that had stopped when inspected.
    stopped: HashMap<String, ContainerFacts>,
    log_paths: HashMap<String, String>,
}

fn is_stopped(c: &ContainerSummary) -> bool {
    matches!(
        c.state,
        Some(ContainerSummaryStateEnum::EXITED | ContainerSummaryStateEnum::DEAD)
    )
}

impl InspectCache {
    pub(super) fn missing_images(&self, images: &[ImageSummary]) -> Vec<String> {
        images
            .iter()
            .filter(|i| !self.images.contains_key(&i.id))
            .map(|i| i.id.clone())
            .collect()
    }

    pub(super) fn missing_stopped(&self, containers: &[ContainerSummary]) -> Vec<String> {
        containers
            .iter()
            .filter(|c| is_stopped(c))
            .filter_map(|c| c.id.clone())
            .filter(|id| !self.stopped.contains_key(id))
            .collect()
    }

    pub(super) fn learn(
        &mut self,
        images: Vec<(String, Option<ImageInspect>)>,
        containers: Vec<(String, Option<ContainerInspectResponse>)>,
    ) {
        for (id, inspect) in images {
            // An image that vanished between list and inspect is simply not cached.
            if let Some(i) = inspect {
                let tagged = i
                    .metadata
                    .and_then(|m| m.last_tag_time)
                    .and_then(|t| parse_time(&t));
                self.images.insert(id, tagged);
            }
        }
        for (id, inspect) in containers {
            if let Some(c) = inspect {
                let state = c.state.unwrap_or_default();
                if let Some(p) = c.log_path.clone().filter(|p| !p.is_empty()) {
                    self.log_paths.insert(id.clone(), p);
                }
                self.stopped.insert(
                    id,
                    ContainerFacts {
                        started_at: state.started_at.as_deref().and_then(parse_time),
                        finished_at: state.finished_at.as_deref().and_then(parse_time),
                        log_path: c.log_path,
                    },
                );
            }
        }
    }

    /// Drops what no longer exists, and stopped facts of containers that restarted.
    pub(super) fn forget_gone(&mut self, images: &[ImageSummary], containers: &[ContainerSummary]) {
        let image_ids: HashSet<&str> = images.iter().map(|i| i.id.as_str()).collect();
        self.images.retain(|id, _| image_ids.contains(id.as_str()));
        let stopped: HashSet<&str> = containers
            .iter()
            .filter(|c| is_stopped(c))
            .filter_map(|c| c.id.as_deref())
            .collect();
        self.stopped.retain(|id, _| stopped.contains(id.as_str()));
        let all: HashSet<&str> = containers.iter().filter_map(|c| c.id.as_deref()).collect();
        self.log_paths.retain(|id, _| all.contains(id.as_str()));
    }

    pub(super) fn log_path(&self, id: &str) -> Option<String> {
        self.log_paths
            .get(id)
            .cloned()
            .or_else(|| self.stopped.get(id).and_then(|f| f.log_path.clone()))
    }

    pub(super) fn remember_log_path(&mut self, id: &str, path: &str) {
        self.log_paths.insert(id.to_owned(), path.to_owned());
    }
}

fn epoch(secs: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

fn state(s: Option<ContainerSummaryStateEnum>) -> Option<ContainerState> {
    Some(match s? {
        ContainerSummaryStateEnum::CREATED => ContainerState::Created,
        ContainerSummaryStateEnum::RUNNING | ContainerSummaryStateEnum::STOPPING => {
            ContainerState::Running
        }
        ContainerSummaryStateEnum::PAUSED => ContainerState::Paused,
        ContainerSummaryStateEnum::RESTARTING => ContainerState::Restarting,
        ContainerSummaryStateEnum::REMOVING => ContainerState::Removing,
        ContainerSummaryStateEnum::EXITED => ContainerState::Exited,
        ContainerSummaryStateEnum::DEAD => ContainerState::Dead,
        // Unknown to us: treat as running, the state that protects the most.
        ContainerSummaryStateEnum::EMPTY => ContainerState::Running,
    })
}

pub(super) fn container(c: &ContainerSummary, cache: &InspectCache) -> Option<ContainerInfo> {
    let id = c.id.clone()?;
    let facts = cache.stopped.get(&id).cloned().unwrap_or_default();
    Some(ContainerInfo {
        name: c
            .names
            .as_ref()
            .and_then(|n| n.first())
            .map(|n| n.trim_start_matches('/').to_owned())
            .unwrap_or_else(|| id.chars().take(12).collect()),
        image_id: c.image_id.clone().unwrap_or_default(),
        state: state(c.state).unwrap_or(ContainerState::Running),
        created: epoch(c.created.unwrap_or(0)),
        finished_at: facts.finished_at,
        labels: c
            .labels
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
        size_rw_bytes: c.size_rw.and_then(|s| u64::try_from(s).ok()),
        log_bytes: None,
        id,
    })
}

/// Last use = the latest of: created, last tagged, a container created, started or
/// finished from it (as far as the containers still exist), an event seen for it.
pub(super) fn image(
    i: &ImageSummary,
    cache: &InspectCache,
    containers: &[ContainerInfo],
    events: &HashMap<String, SystemTime>,
) -> ImageInfo {
    let created = epoch(i.created);
    let mut last_used = created;
    if let Some(Some(tagged)) = cache.images.get(&i.id) {
        last_used = last_used.max(*tagged);
    }
    for c in containers.iter().filter(|c| c.image_id == i.id) {
        last_used = last_used.max(c.created);
        if let Some(f) = cache.stopped.get(&c.id) {
            last_used = last_used
                .max(f.started_at.unwrap_or(created))
                .max(f.finished_at.unwrap_or(created));
        }
    }
    if let Some(seen) = events.get(&i.id) {
        last_used = last_used.max(*seen);
    }
    ImageInfo {
        id: i.id.clone(),
        tags: i
            .repo_tags
            .iter()
            .filter(|t| t.as_str() != "<none>:<none>")
            .cloned()
            .collect(),
        digests: i
            .repo_digests
            .iter()
            .filter(|d| !d.starts_with("<none>@"))
            .cloned()
            .collect(),
        size_bytes: u64::try_from(i.size).unwrap_or(0),
        created,
        last_used,
        parent: Some(i.parent_id.clone()).filter(|p| !p.is_empty()),
        labels: i.labels.clone().into_iter().collect(),
    }
}
