//! Docker, read through the Engine API (bollard — never the `docker` CLI): the inventory
//! of images and containers, last use from the events stream, and what filled the disk.

mod attribution;
mod audit;
mod convert;
mod du;
mod events;
mod evict;
pub mod leftovers;
pub mod remove;
mod writes;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bollard::Docker;
use bollard::query_parameters::{ListContainersOptions, ListImagesOptions};
use futures_util::{StreamExt, stream};

use crate::config::DockerSettings;
use crate::sample::{ContainerInfo, ImageInfo, Inventory};

pub use attribution::{TopWriter, top_writers};
pub use audit::ContainerFacts;
pub use events::{EventsStatus, LastUse, REPLAY_WINDOW, replay_recent, watch_events};
pub use evict::Stop;
pub use remove::Outcome;
pub use writes::WriteMeter;

/// Engine API calls in flight at once when inspecting many objects: enough to hide the
/// round trips, few enough not to load a dockerd that is already struggling.
const INSPECT_CONCURRENCY: usize = 16;

/// Every call but the events stream answers within this, or counts as failed.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Why Docker could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("cannot connect to Docker at {host}")]
    Connect {
        host: String,
        source: bollard::errors::Error,
    },
    #[error("Docker at {host}: {what}")]
    Call {
        host: String,
        what: String,
        source: bollard::errors::Error,
    },
    #[error("Docker at {host}: {what} took longer than {CALL_TIMEOUT:?}")]
    Timeout { host: String, what: String },
}

/// Where to reach Docker: the config key, else `DOCKER_HOST`, else the default socket.
pub fn docker_host(settings: &DockerSettings) -> String {
    settings
        .host
        .clone()
        .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned())
}

/// A connection to one Docker Engine, and what it has learned that does not change
/// (finish times of stopped containers, image tag times), so that re-listing is cheap.
#[derive(Debug, Clone)]
pub struct DockerSource {
    pub docker: Docker,
    pub host: String,
    pub last_use: LastUse,
    cache: Arc<Mutex<convert::InspectCache>>,
}

impl DockerSource {
    /// Connects and negotiates the API version (Engine 20.10 speaks 1.41; current
    /// engines more). Fails when the socket is missing or the engine does not answer.
    pub async fn connect(settings: &DockerSettings) -> Result<Self, DockerError> {
        let host = docker_host(settings);
        let connect = |source| DockerError::Connect {
            host: host.clone(),
            source,
        };
        let timeout = CALL_TIMEOUT.as_secs();
        let docker = if let Some(path) = host.strip_prefix("unix://") {
            Docker::connect_with_unix(path, timeout, bollard::API_DEFAULT_VERSION)
        } else {
            Docker::connect_with_http(
                &host.replacen("tcp://", "http://", 1),
                timeout,
                bollard::API_DEFAULT_VERSION,
            )
        }
        .map_err(connect)?;
        let docker = docker.negotiate_version().await.map_err(connect)?;
        Ok(DockerSource {
            docker,
            host,
            last_use: LastUse::default(),
            cache: Arc::default(),
        })
    }

    fn call_error(&self, what: &str) -> impl Fn(bollard::errors::Error) -> DockerError {
        let (host, what) = (self.host.clone(), what.to_owned());
        move |source| DockerError::Call {
            host: host.clone(),
            what: what.clone(),
            source,
        }
    }

    async fn bounded<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<T, DockerError> {
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(r) => r.map_err(self.call_error(what)),
            Err(_) => Err(DockerError::Timeout {
                host: self.host.clone(),
                what: what.to_owned(),
            }),
        }
    }

    /// Lists images and containers and merges in last use. Costs two list calls plus one
    /// inspect per container that stopped and per image that appeared since the last call.
    /// `sized` (at `prune` level only): stopped containers also get their writable layer
    /// and json log sizes, so that a plan lists what a pass will really free — the engine
    /// walks those containers' layers for it.
    pub async fn inventory(&self, sized: bool) -> Result<Inventory, DockerError> {
        let images_opts = ListImagesOptions {
            all: false,
            ..Default::default()
        };
        let containers_opts = ListContainersOptions {
            all: true,
            ..Default::default()
        };
        let (images, containers, stopped_sizes) = tokio::try_join!(
            self.bounded("list images", self.docker.list_images(Some(images_opts))),
            self.bounded(
                "list containers",
                self.docker.list_containers(Some(containers_opts))
            ),
            self.stopped_sizes(sized),
        )?;

        let (new_images, new_stopped) = {
            let cache = self
                .cache
                .lock()
                .expect("inspect cache lock is never poisoned: no panics inside");
            (
                cache.missing_images(&images),
                cache.missing_stopped(&containers),
            )
        };
        let image_facts: Vec<_> = stream::iter(new_images)
            .map(|id| async move { (id.clone(), self.docker.inspect_image(&id).await.ok()) })
            .buffer_unordered(INSPECT_CONCURRENCY)
            .collect()
            .await;
        let container_facts: Vec<_> = stream::iter(new_stopped)
            .map(|id| async move {
                (
                    id.clone(),
                    self.docker.inspect_container(&id, None).await.ok(),
                )
            })
            .buffer_unordered(INSPECT_CONCURRENCY)
            .collect()
            .await;

        let mut cache = self
            .cache
            .lock()
            .expect("inspect cache lock is never poisoned: no panics inside");
        cache.learn(image_facts, container_facts);
        cache.forget_gone(&images, &containers);
        let mut containers: Vec<ContainerInfo> = containers
            .iter()
            .filter_map(|c| convert::container(c, &cache))
            .collect();
        if sized {
            for c in containers.iter_mut().filter(|c| c.state.is_stopped()) {
                c.size_rw_bytes = Some(stopped_sizes.get(&c.id).copied().unwrap_or(0));
                c.log_bytes = Some(
                    cache
                        .log_path(&c.id)
                        .and_then(|p| std::fs::metadata(p).ok())
                        .map_or(0, |m| m.len()),
                );
            }
        }
        let events = self.last_use.snapshot();
        let images: Vec<ImageInfo> = images
            .iter()
            .map(|i| convert::image(i, &cache, &containers, &events))
            .collect();
        self.last_use.learn_tags(&images);
        Ok(Inventory {
            generation: 0,
            images,
            containers,
            build_cache: None,
        })
    }

    /// The running containers alone: one list call, for the write meter, which must see a
    /// container started a moment ago without waiting for the next inventory.
    pub async fn running(&self) -> Result<Vec<ContainerInfo>, DockerError> {
        let opts = ListContainersOptions {
            all: false,
            filters: Some(HashMap::from([(
                "status".to_owned(),
                vec!["running".to_owned()],
            )])),
            ..Default::default()
        };
        let listed = self
            .bounded(
                "list running containers",
                self.docker.list_containers(Some(opts)),
            )
            .await?;
        let cache = self
            .cache
            .lock()
            .expect("inspect cache lock is never poisoned: no panics inside");
        Ok(listed
            .iter()
            .filter_map(|c| convert::container(c, &cache))
            .collect())
    }

    /// Writable-layer sizes of the stopped containers, by id; empty unless `sized`.
    async fn stopped_sizes(&self, sized: bool) -> Result<HashMap<String, u64>, DockerError> {
        if !sized {
            return Ok(HashMap::new());
        }
        let opts = ListContainersOptions {
            all: true,
            size: true,
            filters: Some(HashMap::from([(
                "status".to_owned(),
                vec!["exited".to_owned(), "dead".to_owned()],
            )])),
            ..Default::default()
        };
        let listed = self
            .bounded(
                "list stopped containers with sizes",
                self.docker.list_containers(Some(opts)),
            )
            .await?;
        Ok(listed
            .into_iter()
            .filter_map(|c| Some((c.id?, u64::try_from(c.size_rw.unwrap_or(0)).unwrap_or(0))))
            .collect())
    }

    /// Inspect of one container's log path, for attribution.
    pub(crate) async fn log_path(&self, id: &str) -> Option<String> {
        if let Some(p) = self.cache.lock().ok()?.log_path(id) {
            return Some(p);
        }
        let c = self.docker.inspect_container(id, None).await.ok()?;
        let path = c.log_path.filter(|p| !p.is_empty())?;
        if let Ok(mut cache) = self.cache.lock() {
            cache.remember_log_path(id, &path);
        }
        Some(path)
    }
}

/// Image ids by `repo:tag`, for resolving the image names in container events.
pub(crate) fn tag_index(images: &[ImageInfo]) -> HashMap<String, String> {
    images
        .iter()
        .flat_map(|i| i.tags.iter().map(move |t| (t.clone(), i.id.clone())))
        .collect()
}

/// A time from the Engine API (RFC 3339 with nanoseconds); Docker's zero time
/// (`0001-01-01T00:00:00Z`) and anything unparsable read as `None`.
pub(crate) fn parse_time(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text)
        .ok()
        .filter(|t| *t > SystemTime::UNIX_EPOCH)
}
