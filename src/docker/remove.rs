//! Removing things from Docker: containers, images and the build cache, by id and never
//! with `force`, so that the engine itself refuses anything in use — the last line of
//! defence behind the policy's protections.

use std::collections::HashMap;

use bollard::errors::Error as BollardError;
use bollard::query_parameters::{
    ListContainersOptions, PruneBuildOptions, RemoveContainerOptions, RemoveImageOptions,
};
use serde::Serialize;

use super::{CALL_TIMEOUT, DockerSource};

/// What happened to one removal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "detail", rename_all = "snake_case")]
pub enum Outcome {
    Removed,
    /// The engine refused: the item became in use between plan and act.
    InUse(String),
    /// Already gone (removed by someone else, or twice planned).
    Gone,
    /// The engine answered with an error for this item (HTTP 500 …).
    Failed(String),
    /// No answer: the engine is gone or stalled. Says nothing about the item.
    Unreachable(String),
}

impl Outcome {
    /// Either kind of failure: counted as a reclaim error.
    pub fn is_error(&self) -> bool {
        matches!(self, Outcome::Failed(_) | Outcome::Unreachable(_))
    }
}

/// The engine's answer when an image has several references and no `force` is given.
const MULTIPLE_REFERENCES: &str = "referenced in multiple repositories";

fn classify(e: &BollardError) -> Outcome {
    match e {
        BollardError::DockerResponseServerError {
            status_code: 404, ..
        } => Outcome::Gone,
        BollardError::DockerResponseServerError {
            status_code: 409,
            message,
        } => Outcome::InUse(message.clone()),
        BollardError::DockerResponseServerError { .. } => Outcome::Failed(e.to_string()),
        other => Outcome::Unreachable(other.to_string()),
    }
}

async fn bounded<T>(call: impl Future<Output = Result<T, BollardError>>) -> Result<T, Outcome> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(classify(&e)),
        Err(_) => Err(Outcome::Unreachable(format!(
            "no answer within {CALL_TIMEOUT:?}"
        ))),
    }
}

fn outcome<T>(r: Result<T, Outcome>) -> Outcome {
    r.err().unwrap_or(Outcome::Removed)
}

/// Removes a stopped container and its writable layer. `v=false`: anonymous volumes
/// stay; volumes are never diskguard's to remove.
pub async fn remove_container(source: &DockerSource, id: &str) -> Outcome {
    let opts = RemoveContainerOptions {
        v: false,
        force: false,
        link: false,
    };
    outcome(bounded(source.docker.remove_container(id, Some(opts))).await)
}

/// Prunes all unused build cache. Returns the outcome and the bytes the engine says it
/// freed.
pub async fn prune_build_cache(source: &DockerSource) -> (Outcome, u64) {
    let opts = PruneBuildOptions {
        all: Some(true),
        ..Default::default()
    };
    match bounded(source.docker.prune_build(Some(opts))).await {
        Ok(r) => (
            Outcome::Removed,
            r.space_reclaimed
                .and_then(|b| u64::try_from(b).ok())
                .unwrap_or(0),
        ),
        Err(o) => (o, 0),
    }
}

fn no_force() -> RemoveImageOptions {
    RemoveImageOptions {
        force: false,
        noprune: false,
        ..Default::default()
    }
}

/// Removes an image by id, without force. An image with several references (tags, or
/// repo digests in several repositories) cannot be deleted by id without force; then, if
/// no container uses it, each reference is removed by name — but only while that name
/// still resolves to this image, so a tag moved to a freshly pulled image in the meantime
/// is left alone — and the image goes with its last reference.
pub async fn remove_image(source: &DockerSource, id: &str) -> Outcome {
    let docker = &source.docker;
    match bounded(docker.remove_image(id, Some(no_force()), None)).await {
        Ok(_) => return Outcome::Removed,
        Err(Outcome::InUse(msg)) if msg.contains(MULTIPLE_REFERENCES) => {}
        Err(o) => return o,
    }
    let users = ListContainersOptions {
        all: true,
        filters: Some(HashMap::from([(
            "ancestor".to_owned(),
            vec![id.to_owned()],
        )])),
        ..Default::default()
    };
    match bounded(docker.list_containers(Some(users))).await {
        Ok(users) if users.is_empty() => {}
        Ok(_) => return Outcome::InUse(format!("{id} is used by a container")),
        Err(o) => return o,
    }
    let references = match bounded(docker.inspect_image(id)).await {
        Ok(i) => i
            .repo_tags
            .unwrap_or_default()
            .into_iter()
            .chain(i.repo_digests.unwrap_or_default())
            .collect::<Vec<_>>(),
        Err(o) => return o,
    };
    for reference in references {
        // Resolve right before removing: the name is what the engine deletes by, and a
        // name can move to another image between the plan and now.
        match bounded(docker.inspect_image(&reference)).await {
            Ok(now) if now.id.as_deref() == Some(id) => {}
            Ok(_) | Err(Outcome::Gone) => continue,
            Err(o) => return o,
        }
        match bounded(docker.remove_image(&reference, Some(no_force()), None)).await {
            Ok(_) | Err(Outcome::Gone) => {}
            Err(o) => return o,
        }
    }
    // The last reference removed takes the image with it; a reference that moved away
    // leaves it with fewer, and then the delete by id goes through.
    match bounded(docker.inspect_image(id)).await {
        Err(Outcome::Gone) => Outcome::Removed,
        Err(o) => o,
        Ok(_) => match bounded(docker.remove_image(id, Some(no_force()), None)).await {
            Ok(_) | Err(Outcome::Gone) => Outcome::Removed,
            Err(o) => o,
        },
    }
}
