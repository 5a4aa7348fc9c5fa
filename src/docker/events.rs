//! Last use of each image, kept current by Docker's events stream.
//!
//! A container created or started from an image marks that image used at the event's
//! time; tagging, pulling, importing or loading it does too; deleting it forgets it.
//! Kept in memory only: the disk may be full, so nothing here writes a state file.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bollard::models::{EventMessage, EventMessageTypeEnum};
use bollard::query_parameters::EventsOptions;
use futures_util::StreamExt;
use tokio::sync::{Notify, watch};

use super::DockerSource;
use crate::backoff::Backoff;
use crate::sample::ImageInfo;

/// Image id → last use, and `repo:tag` → image id for resolving names in events.
#[derive(Debug, Clone, Default)]
pub struct LastUse {
    inner: Arc<Mutex<Table>>,
}

#[derive(Debug, Default)]
struct Table {
    used: HashMap<String, SystemTime>,
    tags: HashMap<String, String>,
}

impl LastUse {
    fn with<T>(&self, f: impl FnOnce(&mut Table) -> T) -> T {
        // A poisoned lock would mean a panic while holding it; none of these closures panic.
        f(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Marks `image_id` used at `at` (never moving a last use backwards).
    pub fn record(&self, image_id: &str, at: SystemTime) {
        self.with(|t| {
            let e = t.used.entry(image_id.to_owned()).or_insert(at);
            *e = (*e).max(at);
        });
    }

    pub fn forget(&self, image_id: &str) {
        self.with(|t| {
            t.used.remove(image_id);
            t.tags.retain(|_, id| id != image_id);
        });
    }

    /// The image id a reference names, if known: an id, or a tag seen in the inventory.
    pub fn resolve(&self, reference: &str) -> Option<String> {
        if reference.starts_with("sha256:") {
            return Some(reference.to_owned());
        }
        let with_tag = if reference.contains(':') {
            reference.to_owned()
        } else {
            format!("{reference}:latest")
        };
        self.with(|t| t.tags.get(&with_tag).cloned())
    }

    pub fn snapshot(&self) -> HashMap<String, SystemTime> {
        self.with(|t| t.used.clone())
    }

    pub(super) fn learn_tags(&self, images: &[ImageInfo]) {
        let index = super::tag_index(images);
        self.with(|t| t.tags = index);
    }
}

/// The events stream's health, for `status` and the logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventsStatus {
    pub connected: bool,
    pub reconnects: u64,
    pub events: u64,
}

fn event_time(e: &EventMessage) -> SystemTime {
    match (e.time_nano, e.time) {
        (Some(n), _) if n > 0 => SystemTime::UNIX_EPOCH + Duration::from_nanos(n as u64),
        (_, Some(s)) if s > 0 => SystemTime::UNIX_EPOCH + Duration::from_secs(s as u64),
        _ => SystemTime::now(),
    }
}

fn options(since: Option<SystemTime>, until: Option<SystemTime>) -> EventsOptions {
    let stamp = |t: SystemTime| {
        let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
    };
    let filters = HashMap::from([
        (
            "type".to_owned(),
            vec!["container".to_owned(), "image".to_owned()],
        ),
        (
            "event".to_owned(),
            [
                "create", "start", "destroy", "delete", "untag", "tag", "import", "pull", "load",
            ]
            .map(String::from)
            .to_vec(),
        ),
    ]);
    EventsOptions {
        since: since.map(stamp),
        until: until.map(stamp),
        filters: Some(filters),
    }
}

/// Applies one event to the table. Returns whether the inventory is now stale.
async fn apply(source: &DockerSource, e: &EventMessage) -> bool {
    let at = event_time(e);
    let action = e.action.as_deref().unwrap_or("");
    let actor = e.actor.clone().unwrap_or_default();
    let attrs = actor.attributes.unwrap_or_default();
    match (e.typ, action) {
        (Some(EventMessageTypeEnum::CONTAINER), "create" | "start") => {
            let Some(reference) = attrs.get("image") else {
                return true;
            };
            let id = match source.last_use.resolve(reference) {
                Some(id) => Some(id),
                // A name the inventory has not seen yet (just pulled): ask once. If the
                // image is already gone, there is nothing to remember.
                None => source
                    .docker
                    .inspect_image(reference)
                    .await
                    .ok()
                    .and_then(|i| i.id),
            };
            if let Some(id) = id {
                source.last_use.record(&id, at);
            }
            true
        }
        (Some(EventMessageTypeEnum::CONTAINER), _) => true,
        (Some(EventMessageTypeEnum::IMAGE), "delete") => {
            if let Some(id) = actor.id {
                source.last_use.forget(&id);
            }
            true
        }
        (Some(EventMessageTypeEnum::IMAGE), "untag") => true,
        (Some(EventMessageTypeEnum::IMAGE), _) => {
            if let Some(id) = actor.id.as_deref().and_then(|r| source.last_use.resolve(r)) {
                source.last_use.record(&id, at);
            }
            true
        }
        _ => false,
    }
}

/// How far back the engine's event buffer is read at start-up for last use.
pub const REPLAY_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// Reads the events the engine still holds (dockerd keeps its most recent 256) from
/// `window` ago until now, so that last use survives a diskguard restart. Returns how
/// many were applied.
pub async fn replay_recent(source: &DockerSource, window: Duration) -> usize {
    let now = SystemTime::now();
    let mut stream = source
        .docker
        .events(Some(options(Some(now - window), Some(now))));
    let mut n = 0;
    while let Ok(Some(Ok(e))) = tokio::time::timeout(super::CALL_TIMEOUT, stream.next()).await {
        apply(source, &e).await;
        n += 1;
    }
    n
}

const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Follows the events stream forever, reconnecting with backoff when dockerd goes away
/// and resuming from the last event seen, so nothing in between is lost. `stale` is
/// notified whenever the inventory should be re-read.
pub async fn watch_events(
    source: DockerSource,
    status: watch::Sender<EventsStatus>,
    stale: Arc<Notify>,
) {
    let mut since = Some(SystemTime::now());
    let mut backoff = Backoff::new(BACKOFF_START, BACKOFF_MAX);
    loop {
        // The stream only yields on events; a ping says whether dockerd is there at all.
        if source.docker.ping().await.is_ok() {
            if backoff.failures() > 0 {
                tracing::info!(
                    attempts = backoff.failures(),
                    "Docker events stream reconnected"
                );
                // Whatever happened while disconnected shows in a fresh inventory.
                stale.notify_one();
            }
            backoff.succeeded();
            status.send_modify(|s| s.connected = true);
            let mut stream = source.docker.events(Some(options(since, None)));
            loop {
                match stream.next().await {
                    Some(Ok(e)) => {
                        since = Some(event_time(&e));
                        status.send_modify(|s| s.events += 1);
                        if apply(&source, &e).await {
                            stale.notify_one();
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(host = %source.host, error = %e, "Docker events stream lost; reconnecting");
                        break;
                    }
                    None => {
                        tracing::warn!(host = %source.host, "Docker events stream ended; reconnecting");
                        break;
                    }
                }
            }
        }
        status.send_modify(|s| {
            s.connected = false;
            s.reconnects += 1;
        });
        tokio::time::sleep(backoff.failed()).await;
    }
}
