//! Deciding, purely: a snapshot, the recent history, the policy's memory and `now` go in;
//! a plan comes out. No I/O and no clock reads here, so every rule is a unit test.

mod drain;
mod forecast;
mod level;
mod reclaim;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::config::Settings;
use crate::sample::{FsStats, History, Snapshot, Volume, VolumeSnapshot};

pub use drain::{
    BudgetVerdict, DrainingInstance, EcsDecision, budget_room, budget_verdict, decide_ecs,
    drain_budget,
};
pub use forecast::{Forecast, MIN_FORECAST_SPAN, forecast};
pub use level::{HYSTERESIS_POINTS, Level, level_for, level_with_hysteresis};
pub use reclaim::{ReclaimStep, Rung, is_protected, plan_reclaim};

/// What the policy remembers between ticks.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct State {
    /// Each volume's level at the last tick (for hysteresis).
    pub levels: BTreeMap<Volume, Level>,
    /// Since when the Docker volume has been below `recover`, continuously.
    pub recover_since: Option<SystemTime>,
}

/// What put a volume at its level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    Bytes,
    Inodes,
    Forecast,
}

/// One volume's reading and verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VolumeVerdict {
    pub volume: Volume,
    pub path: PathBuf,
    pub level: Level,
    pub driven_by: Driver,
    /// max(bytes %, inodes %): what the thresholds are compared with.
    pub usage_percent: f64,
    #[serde(skip)]
    pub stats: Option<FsStats>,
    #[serde(skip)]
    pub time_to_full: Option<Duration>,
    pub error: Option<String>,
}

/// Something an operator should know, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub volume: Option<Volume>,
    pub message: String,
}

/// The decision for this tick.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub at: SystemTime,
    /// The highest level of any readable volume.
    pub level: Level,
    pub volumes: Vec<VolumeVerdict>,
    /// The Docker volume is at `prune` or above: reclaim is wanted, whether or not the
    /// inventory offers anything.
    pub reclaim_wanted: bool,
    /// Bytes to free to reach `prune_target`; `None` when inodes drive it.
    pub reclaim_needed_bytes: Option<u64>,
    pub reclaim: Vec<ReclaimStep>,
    /// The inventory `reclaim` was planned from.
    pub inventory_generation: Option<u64>,
    /// The ECS view `ecs` was decided from.
    pub ecs_generation: Option<u64>,
    pub ecs: EcsDecision,
    pub findings: Vec<Finding>,
    /// The memory to pass to the next tick.
    pub next: State,
}

impl Plan {
    pub fn volume(&self, volume: Volume) -> Option<&VolumeVerdict> {
        self.volumes.iter().find(|v| v.volume == volume)
    }

    /// Any watched volume could not be read.
    pub fn has_unreadable_volume(&self) -> bool {
        self.volumes.iter().any(|v| v.stats.is_none())
    }
}

/// The policy. See design.md, "Policy", for the table this implements row by row.
pub fn decide(
    snapshot: &Snapshot,
    history: &History,
    state: &State,
    settings: &Settings,
    now: SystemTime,
) -> Plan {
    let t = &settings.thresholds;
    let mut next = State::default();
    let mut findings = Vec::new();
    let volumes: Vec<VolumeVerdict> = snapshot
        .volumes
        .iter()
        .map(|v| {
            let previous = state.levels.get(&v.volume).copied().unwrap_or_default();
            let verdict = judge(v, history, previous, settings);
            if verdict.stats.is_some() {
                next.levels.insert(v.volume, verdict.level);
            }
            verdict
        })
        .collect();
    for v in &volumes {
        if let Some(e) = &v.error {
            findings.push(Finding {
                volume: Some(v.volume),
                message: e.clone(),
            });
        }
    }
    let level = volumes
        .iter()
        .filter(|v| v.stats.is_some())
        .map(|v| v.level)
        .max()
        .unwrap_or_default();
    let docker = volumes
        .iter()
        .find(|v| v.volume == Volume::Docker && v.stats.is_some());
    if let (Some(d), Some(e)) = (docker, volumes.iter().find(|v| v.volume == Volume::Etcd)) {
        match (d.stats, e.stats) {
            (Some(ds), Some(es)) if ds.device == es.device => findings.push(Finding {
                volume: Some(Volume::Etcd),
                message: format!(
                    "etcd data dir {} is on the same filesystem as Docker's data root {}: a full Docker disk takes etcd down; move etcd to its own volume",
                    e.path.display(),
                    d.path.display()
                ),
            }),
            (Some(_), Some(_)) if e.level >= Level::Prune => findings.push(Finding {
                volume: Some(Volume::Etcd),
                message: format!(
                    "etcd's filesystem is {:.1}% full and diskguard cannot reclaim it: compact and defragment etcd or grow the volume",
                    e.usage_percent
                ),
            }),
            _ => {}
        }
    }

    let docker_level = docker.map(|d| d.level).unwrap_or_default();
    let reclaim_wanted = docker_level >= Level::Prune;
    let reclaim_needed_bytes = docker
        .and_then(|d| d.stats)
        .and_then(|s| reclaim_goal(&s, t.prune_target));
    let mut reclaim = Vec::new();
    if reclaim_wanted {
        match &snapshot.inventory {
            Some(inventory) => {
                reclaim = plan_reclaim(
                    inventory,
                    reclaim_needed_bytes,
                    docker_level >= Level::Critical,
                    &settings.docker,
                    now,
                );
            }
            None => findings.push(Finding {
                volume: Some(Volume::Docker),
                message: "reclaim wanted, but Docker's images and containers have not been read"
                    .into(),
            }),
        }
    }

    let mut ecs = EcsDecision::None;
    if let (Some(view), Some(d)) = (&snapshot.ecs, docker) {
        let (decision, since) = decide_ecs(
            docker_level,
            d.usage_percent,
            view,
            settings,
            state.recover_since,
            now,
        );
        ecs = decision;
        next.recover_since = since;
    }

    if let Some(etcd) = &snapshot.etcd {
        let quota = percent(etcd.db_bytes, etcd.quota_bytes);
        if etcd.alarm_nospace {
            findings.push(Finding {
                volume: Some(Volume::Etcd),
                message: "etcd raised its NOSPACE alarm and accepts only reads and deletes: compact, defragment, then `etcdctl alarm disarm`".into(),
            });
        } else if quota >= settings.etcd.quota_warn_percent {
            findings.push(Finding {
                volume: Some(Volume::Etcd),
                message: format!("etcd's database is at {quota:.0}% of its quota: compact and defragment before it reaches NOSPACE"),
            });
        }
    }

    let inventory_generation = snapshot.inventory.as_ref().map(|i| i.generation);
    let ecs_generation = snapshot.ecs.as_ref().map(|e| e.generation);
    Plan {
        at: now,
        level,
        volumes,
        reclaim_wanted,
        reclaim_needed_bytes,
        reclaim,
        inventory_generation,
        ecs_generation,
        ecs,
        findings,
        next,
    }
}

/// Judges one volume: its level from bytes, inodes and the forecast, with hysteresis.
fn judge(
    v: &VolumeSnapshot,
    history: &History,
    previous: Level,
    settings: &Settings,
) -> VolumeVerdict {
    let t = &settings.thresholds;
    let Some(stats) = v.stats else {
        return VolumeVerdict {
            volume: v.volume,
            path: v.path.clone(),
            level: Level::Ok,
            driven_by: Driver::Bytes,
            usage_percent: 0.0,
            stats: None,
            time_to_full: None,
            error: v.error.clone(),
        };
    };
    let (bytes, inodes) = (stats.used_percent(), stats.inodes_used_percent());
    let usage = bytes.max(inodes);
    let mut driven_by = if inodes > bytes {
        Driver::Inodes
    } else {
        Driver::Bytes
    };
    let mut level = level_with_hysteresis(usage, previous, t);
    let time_to_full = forecast(history.points(v.volume), &stats).time_to_full;
    if level < Level::Drain
        && usage
            >= t.prune_start
                - if previous >= Level::Drain {
                    HYSTERESIS_POINTS
                } else {
                    0.0
                }
    {
        // The forecast alone never drains below prune_start; once it has, it holds the
        // level until the time to full is twice the lead, so that noise does not flap it.
        let lead = if previous >= Level::Drain {
            t.drain_lead * 2
        } else {
            t.drain_lead
        };
        if time_to_full.is_some_and(|ttf| ttf < lead) {
            level = Level::Drain;
            driven_by = Driver::Forecast;
        }
    }
    VolumeVerdict {
        volume: v.volume,
        path: v.path.clone(),
        level,
        driven_by,
        usage_percent: usage,
        stats: Some(stats),
        time_to_full,
        error: None,
    }
}

/// Bytes to free so that df's Use% reaches `target`; `None` when it is the inodes that are
/// above target (their relief cannot be estimated in bytes).
pub fn reclaim_goal(stats: &FsStats, target: f64) -> Option<u64> {
    if stats.inodes_used_percent() > target {
        return None;
    }
    let used = stats.used_bytes() as f64;
    let capacity = used + stats.avail_bytes as f64;
    Some((used - capacity * target / 100.0).max(0.0).ceil() as u64)
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

#[cfg(test)]
mod drain_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
