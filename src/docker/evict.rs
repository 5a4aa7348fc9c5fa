//! Stopping and removing the container that fills the disk: stopped (killed at once when
//! the disk fills sooner than a graceful stop takes), then removed so that its writable
//! layer is freed. The ECS agent sees its task stop; the scheduler places it elsewhere.

use std::time::Duration;

use bollard::query_parameters::{RemoveContainerOptions, StopContainerOptions};

use super::{CALL_TIMEOUT, DockerError, DockerSource};

impl DockerSource {
    /// Stops `id` (`grace` after SIGTERM, zero: SIGKILL at once — still a manual stop, so
    /// no restart policy brings it back) and removes it; anonymous volumes stay.
    pub async fn evict(&self, id: &str, grace: Duration) -> Result<(), DockerError> {
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
            Ok(()) => {}
            // Already stopped (304) is fine: it is removed next.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => {}
            Err(e) => return Err(self.call_error(&format!("stop container {id}"))(e)),
        }
        let remove = RemoveContainerOptions {
            v: false,
            force: false,
            link: false,
        };
        self.bounded(
            &format!("remove container {id}"),
            self.docker.remove_container(id, Some(remove)),
        )
        .await
    }
}
