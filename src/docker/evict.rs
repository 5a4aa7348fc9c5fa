//! Stopping and removing the container that fills the disk: stopped (killed at once when
//! the disk fills sooner than a graceful stop takes), then removed so that its writable
//! layer is freed. The ECS agent sees its task stop; the scheduler places it elsewhere.
//! The two steps are separate calls: a container that stopped but could not be removed
//! writes no more, and its removal is tried again on its own.

use std::time::Duration;

use bollard::query_parameters::StopContainerOptions;

use super::remove::{Outcome, remove_container};
use super::{CALL_TIMEOUT, DockerError, DockerSource};

/// How a stop went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Stopped,
    /// It had stopped already (it exited, or an earlier stop went through late).
    AlreadyStopped,
    /// It is gone: someone else removed it.
    Gone,
}

impl DockerSource {
    /// Stops `id` (`grace` after SIGTERM, zero: SIGKILL at once — still a manual stop, so
    /// no restart policy brings it back).
    pub async fn stop_for_eviction(&self, id: &str, grace: Duration) -> Result<Stop, DockerError> {
        let stop = StopContainerOptions {
            t: Some(i32::try_from(grace.as_secs()).unwrap_or(i32::MAX)),
            ..Default::default()
        };
        let timeout = CALL_TIMEOUT + grace;
        let stopped = tokio::time::timeout(timeout, self.docker.stop_container(id, Some(stop)))
            .await
            .map_err(|_| DockerError::Timeout {
                host: self.host.clone(),
                what: format!("stop container {id}"),
            })?;
        match stopped {
            Ok(()) => Ok(Stop::Stopped),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(Stop::AlreadyStopped),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(Stop::Gone),
            Err(e) => Err(self.call_error(&format!("stop container {id}"))(e)),
        }
    }

    /// Removes the stopped container `id`, without force (anonymous volumes stay). `Err`
    /// says why it is still there.
    pub async fn remove_evicted(&self, id: &str) -> Result<(), String> {
        removal(remove_container(self, id).await)
    }
}

/// Docker's answer (409) when another client is already removing the container.
const REMOVAL_IN_PROGRESS: &str = "already in progress";

/// Whether a removal leaves the container gone: removed; already gone (404); or being
/// removed by someone else (409 "removal of container … is already in progress").
/// Anything else — a 409 because it runs again, a 500 from the storage driver, no
/// answer — leaves it on the disk.
pub fn removal(outcome: Outcome) -> Result<(), String> {
    match outcome {
        Outcome::Removed | Outcome::Gone => Ok(()),
        Outcome::InUse(m) if m.contains(REMOVAL_IN_PROGRESS) => Ok(()),
        Outcome::InUse(m) | Outcome::Failed(m) | Outcome::Unreachable(m) => Err(m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gone_and_removal_in_progress_count_as_removed_and_the_rest_does_not() {
        let rows = [
            (Outcome::Removed, true),
            (Outcome::Gone, true),
            (
                Outcome::InUse(
                    "Docker responded with status code 409: removal of container abc is already in progress".into(),
                ),
                true,
            ),
            (
                Outcome::InUse(
                    "Docker responded with status code 409: cannot remove container \"/bad\": container is running: stop the container before removing or force remove".into(),
                ),
                false,
            ),
            (
                Outcome::Failed("driver \"overlay2\" failed to remove root filesystem".into()),
                false,
            ),
            (Outcome::Unreachable("no answer within 10s".into()), false),
        ];
        for (outcome, removed) in rows {
            let label = format!("{outcome:?}");
            assert_eq!(removal(outcome).is_ok(), removed, "{label}");
        }
    }
}
