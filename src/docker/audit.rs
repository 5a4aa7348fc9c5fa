//! What `doctor` and `status` need from Docker: each running container's image tags, log
//! settings and how much its log holds now. A list of images, a list of running
//! containers, one inspect per container (and one `stat` of its log file).

use std::collections::BTreeMap;

use bollard::query_parameters::{
    InspectContainerOptions, ListContainersOptions, ListImagesOptions,
};

use super::{DockerError, DockerSource};
use crate::sample::TASK_FAMILY_LABEL;

/// A running container as `doctor` audits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerFacts {
    pub name: String,
    /// The ECS task family, for containers ECS started.
    pub task_family: Option<String>,
    /// The image as the container names it (`repo:tag` or an id).
    pub image: String,
    /// Every tag of the container's image (`repo:tag`); empty when untagged.
    pub image_tags: Vec<String>,
    /// `json-file`, `local`, `awslogs`, `none` …
    pub log_driver: String,
    /// The log driver's options (`max-size`, `max-file` …).
    pub log_options: BTreeMap<String, String>,
    /// What its json log file holds now (`None`: no log file, another driver).
    pub log_bytes: Option<u64>,
}

impl ContainerFacts {
    /// Logs to a json-file that nothing limits: it grows until the disk is full.
    pub fn log_unlimited(&self) -> bool {
        self.log_driver == "json-file" && !self.log_options.contains_key("max-size")
    }
}

impl DockerSource {
    /// The running containers with their image tags and log settings.
    pub async fn audit_containers(&self) -> Result<Vec<ContainerFacts>, DockerError> {
        let images = self
            .bounded(
                "list images",
                self.docker.list_images(Some(ListImagesOptions::default())),
            )
            .await?;
        let tags: BTreeMap<String, Vec<String>> =
            images.into_iter().map(|i| (i.id, i.repo_tags)).collect();
        let running = self
            .bounded(
                "list containers",
                self.docker
                    .list_containers(Some(ListContainersOptions::default())),
            )
            .await?;
        let mut out = Vec::new();
        for c in running {
            let Some(id) = c.id else { continue };
            let inspected = self
                .bounded(
                    "inspect container",
                    self.docker
                        .inspect_container(&id, None::<InspectContainerOptions>),
                )
                .await?;
            let log_bytes = match inspected.log_path.as_deref().filter(|p| !p.is_empty()) {
                Some(path) => tokio::fs::metadata(path).await.ok().map(|m| m.len()),
                None => None,
            };
            let log = inspected.host_config.and_then(|h| h.log_config);
            let name = c
                .names
                .and_then(|n| n.first().map(|n| n.trim_start_matches('/').to_owned()))
                .unwrap_or_else(|| id.chars().take(12).collect());
            out.push(ContainerFacts {
                name,
                task_family: c
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(TASK_FAMILY_LABEL).cloned()),
                image: c.image.unwrap_or_default(),
                image_tags: c
                    .image_id
                    .and_then(|i| tags.get(&i).cloned())
                    .unwrap_or_default(),
                log_driver: log.as_ref().and_then(|l| l.typ.clone()).unwrap_or_default(),
                log_options: log
                    .and_then(|l| l.config)
                    .map(|m| m.into_iter().collect())
                    .unwrap_or_default(),
                log_bytes,
            });
        }
        Ok(out)
    }
}
