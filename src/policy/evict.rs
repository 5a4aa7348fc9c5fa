//! The escalation, in one place: reclaim first; evict the container that is filling the
//! disk when the disk will be full sooner than a drain can help — even counting what the
//! reclaim ladder can free; drain when it will be full within `drain_lead` or sits at
//! `drain` after reclaim and eviction; `critical` overrides the drain budget. A slow
//! filler (megabytes a minute) gets an early drain and no eviction; a fast one an eviction
//! and, if that was enough, no drain.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::forecast::Recent;
use super::level::Level;
use super::reclaim::is_protected;
use super::volume::VolumeVerdict;
use crate::config::Settings;
use crate::sample::{ContainerWrites, ImageInfo, Inventory, Snapshot};

/// After an eviction, this long without another one (the first must have time to free
/// its layer), and without a drain below `critical` (it may have been enough) — unless
/// the volume is at `critical` or will be full sooner than this: then waiting is how it
/// fills, and the next writer may go at once.
pub const EVICT_SETTLE: Duration = Duration::from_secs(10);
/// `docker stop`'s grace for the writer; sooner than this to full, it is killed at once.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// Below this write rate a container is not what fills the disk.
pub const MIN_WRITE_RATE: f64 = 256.0 * 1024.0;

/// The ECS agent names its own container so.
const ECS_AGENT_NAME: &str = "ecs-agent";
/// The ECS agent's pause container (awsvpc networking) carries this container name.
const PAUSE_CONTAINER_NAME: &str = "~internal~ecs~pause";

/// Which container to stop, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Eviction {
    pub container_id: String,
    pub name: String,
    pub image: String,
    pub task_family: Option<String>,
    pub task_arn: Option<String>,
    pub bytes_per_second: f64,
    pub written_bytes: u64,
    /// Full sooner than `STOP_GRACE`: no time for a graceful stop.
    pub kill: bool,
    /// Why this one, in a sentence (and which bigger writers were passed over).
    pub why: String,
}

/// What the escalation asks for.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum EvictDecision {
    #[default]
    None,
    Evict(Eviction),
    /// Eviction is wanted, but no container may be stopped.
    NoCandidate {
        why: String,
    },
}

/// The escalation's verdict for this tick.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Escalation {
    pub evict: EvictDecision,
    /// Hold a drain below `critical`: an eviction is under way or has just happened.
    pub hold_drain: bool,
    /// The eviction being settled and when it was decided, for the next tick.
    pub eviction: Option<(SystemTime, Eviction)>,
}

/// Decides whether to evict, from the short-window rate of the Docker volume, what the
/// ladder can free (`reclaimable`, its estimate in bytes), and what each running container
/// wrote over the last seconds (`snapshot.writers`).
pub fn escalate(
    docker: &VolumeVerdict,
    recent: Option<Recent>,
    reclaimable: u64,
    snapshot: &Snapshot,
    eviction: Option<&(SystemTime, Eviction)>,
    settings: &Settings,
    now: SystemTime,
) -> Escalation {
    let settling = eviction.filter(|(at, _)| {
        now.duration_since(*at)
            .is_ok_and(|since| since < EVICT_SETTLE)
    });
    // While it settles, the eviction is asked for again as long as the container still
    // runs: an actor busy with a pass may have missed the plan that asked first (it
    // sees only the newest), and it evicts each container once.
    let still_running =
        settling.filter(|(_, e)| snapshot.writers.iter().any(|w| w.id == e.container_id));
    let mut out = Escalation {
        evict: still_running.map_or(EvictDecision::None, |(_, e)| {
            EvictDecision::Evict(e.clone())
        }),
        hold_drain: settling.is_some() && docker.level < Level::Critical,
        eviction: settling.cloned(),
    };
    let Some(stats) = docker.stats else {
        return out;
    };
    let time_to_full = recent.and_then(|r| r.time_to_full);
    let urgent = docker.level >= Level::Critical || time_to_full.is_some_and(|t| t < EVICT_SETTLE);
    // While one is being stopped, it is the one asked for; once it is gone, the next
    // writer waits out the settle unless there is no time to.
    if !settings.evict.on()
        || docker.level < Level::Prune
        || still_running.is_some()
        || (settling.is_some() && !urgent)
    {
        return out;
    }
    let rate = recent.map_or(0.0, |r| r.bytes_per_second);
    // Full sooner than a drain can help, even after the ladder frees all it can.
    let after_reclaim = (rate > 0.0).then(|| {
        Duration::from_secs_f64((stats.avail_bytes.saturating_add(reclaimable)) as f64 / rate)
    });
    let fast = after_reclaim.is_some_and(|ttf| ttf < settings.evict.lead);
    // At critical, the ladder cannot even get the volume back below `drain`.
    let capacity = stats.used_bytes() as f64 + stats.avail_bytes as f64;
    let to_below_drain =
        (stats.used_bytes() as f64 - capacity * settings.thresholds.drain / 100.0).max(0.0);
    let stuck = docker.level >= Level::Critical && (reclaimable as f64) < to_below_drain;
    if !(fast || stuck) {
        return out;
    }
    out.evict = choose(
        &snapshot.writers,
        snapshot.inventory.as_deref(),
        time_to_full,
        settings,
    );
    if let EvictDecision::Evict(e) = &out.evict {
        out.eviction = Some((now, e.clone()));
        out.hold_drain = docker.level < Level::Critical;
    }
    out
}

/// The running container writing the most, passing over those that must never be
/// stopped — and saying which, so that an operator knows why the biggest was spared.
fn choose(
    writers: &[ContainerWrites],
    inventory: Option<&Inventory>,
    time_to_full: Option<Duration>,
    settings: &Settings,
) -> EvictDecision {
    // Who writes now; when nobody does (a disk already full stops every writer), who
    // wrote fastest in the last half minute.
    let writing_now = writers.iter().any(|w| w.bytes_per_second >= MIN_WRITE_RATE);
    let rate = |w: &ContainerWrites| {
        if writing_now {
            w.bytes_per_second
        } else {
            w.peak_bytes_per_second
        }
    };
    let mut ranked: Vec<&ContainerWrites> = writers.iter().collect();
    ranked.sort_by(|a, b| rate(b).total_cmp(&rate(a)).then_with(|| a.id.cmp(&b.id)));
    let mut passed_over = Vec::new();
    for w in ranked {
        if rate(w) < MIN_WRITE_RATE {
            break;
        }
        let image = inventory.and_then(|i| i.images.iter().find(|img| img.id == w.image_id));
        if let Some(reason) = spared(w, image, settings) {
            passed_over.push(format!("{} ({reason})", w.name));
            continue;
        }
        let mut why = if writing_now {
            format!(
                "writing {:.1} MiB/s, the most of any running container",
                rate(w) / 1_048_576.0
            )
        } else {
            format!(
                "wrote up to {:.1} MiB/s in the last 30 s, the most of any running container",
                rate(w) / 1_048_576.0
            )
        };
        if !passed_over.is_empty() {
            why.push_str(&format!("; passed over {}", passed_over.join(", ")));
        }
        return EvictDecision::Evict(Eviction {
            container_id: w.id.clone(),
            name: w.name.clone(),
            image: image
                .and_then(|i| i.references().next().map(str::to_owned))
                .unwrap_or_else(|| w.image_id.clone()),
            task_family: w.task_family().map(str::to_owned),
            task_arn: w.task_arn().map(str::to_owned),
            bytes_per_second: w.bytes_per_second,
            written_bytes: w.written_bytes,
            kill: time_to_full.is_some_and(|t| t < STOP_GRACE),
            why,
        });
    }
    let why = if passed_over.is_empty() {
        "no running container is writing fast enough to be the cause".to_owned()
    } else {
        format!(
            "every container writing fast must not be stopped: {}",
            passed_over.join(", ")
        )
    };
    EvictDecision::NoCandidate { why }
}

/// Why a container must never be stopped, if it must not. `image` is the writer's image
/// as the inventory knows it; without it, whether the image is protected cannot be told,
/// and a protected container stopped by mistake is worse than a writer spared.
fn spared(
    w: &ContainerWrites,
    image: Option<&ImageInfo>,
    settings: &Settings,
) -> Option<&'static str> {
    if w.has_keep_label() {
        return Some("labelled diskguard.keep=true");
    }
    if w.name == ECS_AGENT_NAME {
        return Some("the ECS agent");
    }
    if w.ecs_container_name() == Some(PAUSE_CONTAINER_NAME) {
        return Some("an ECS pause container");
    }
    match image {
        Some(i) if is_protected(i, &settings.docker) => Some("its image is protected"),
        Some(_) => None,
        // Not read yet, the sized read timed out, or pulled since the last read.
        None => {
            Some("its image is not in the inventory, so whether it is protected cannot be told")
        }
    }
}
