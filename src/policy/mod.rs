//! Deciding, purely: a snapshot, the recent history, the policy's memory and `now` go in;
//! a plan comes out. No I/O and no clock reads here, so every rule is a unit test.

mod drain;
mod etcd;
mod evict;
mod findings;
mod forecast;
mod level;
mod reclaim;
mod volume;

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::config::Settings;
use crate::sample::{FsStats, History, Inventory, Snapshot, Volume};

pub use drain::{
    BudgetVerdict, CLAIM_TTL, DrainingInstance, EcsAction, EcsDecision, EcsIntent, budget_room,
    budget_verdict, decide_ecs, drain_budget, ecs_action, ecs_intent,
};
pub use etcd::{EtcdVerdict, QuotaLevel, judge_etcd, quota_level};
pub use evict::{
    EVICT_SETTLE, Escalation, EvictDecision, Eviction, MIN_WRITE_RATE, STOP_GRACE, escalate,
};
pub use findings::{Finding, findings};
pub use forecast::{
    Forecast, MIN_FORECAST_SPAN, RECENT_WINDOW, Recent, drains_early, forecast, recent,
};
pub use level::{HYSTERESIS_POINTS, Level, level_for, level_with_hysteresis};
pub use reclaim::{
    BUILD_CACHE, ReclaimStep, Rung, expired_images, image_name, is_protected, plan_reclaim,
    plan_reclaim_skipping,
};
pub use volume::{Driver, VolumeVerdict, judge};

/// How far below `prune_start` the fast sampling and the write meter start.
pub const ARM_MARGIN: f64 = 5.0;

/// What the policy remembers between ticks.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct State {
    /// Each volume's level at the last tick (for hysteresis).
    pub levels: BTreeMap<Volume, Level>,
    /// Since when the Docker volume has been below `recover`, continuously.
    pub recover_since: Option<SystemTime>,
    /// The last eviction and when it was decided (it settles before another, or a drain).
    pub eviction: Option<(SystemTime, Eviction)>,
    /// Since when this instance has been drained by diskguard with the deciding volume at
    /// `drain` or above and nothing left to reclaim, continuously (for `[escalate]`).
    pub stuck_since: Option<SystemTime>,
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
    /// The Docker volume is within `ARM_MARGIN` points of `prune_start` or above: the
    /// loop samples fast and the writers are measured, so that a fast writer is known by
    /// the time the volume crosses.
    pub armed: bool,
    pub reclaim: Vec<ReclaimStep>,
    /// Images past `docker.max_unused_image_age`, at any level (empty when off).
    pub expired: Vec<ReclaimStep>,
    /// The inventory `reclaim` was planned from.
    pub inventory_generation: Option<u64>,
    /// What the fullest of Docker's volume and the `[[watch]]` volumes asks of ECS; the
    /// ECS actor acts on it after a fresh read.
    pub ecs_intent: EcsIntent,
    /// The volume that decides `ecs_intent` (the highest level, then the fullest).
    pub ecs_volume: Option<Volume>,
    /// What the view at hand predicts the actor will do (for `status`).
    pub ecs: EcsDecision,
    /// Time to ask the Auto Scaling group to replace this instance (`[escalate]`): drained
    /// by diskguard, nothing left to reclaim, at `drain` for `escalate.after`. The ECS
    /// actor checks the rest afresh (its tasks gone, the fleet's share DRAINING).
    pub replace: bool,
    /// Whether to stop the container filling the disk, and which.
    pub evict: EvictDecision,
    /// The task family that caused this (the evicted writer's, or the fastest writer's
    /// when draining): named on the instance and in the metrics.
    pub culprit: Option<String>,
    pub findings: Vec<Finding>,
    /// etcd's quota and filesystem; `None` when etcd is not watched.
    pub etcd: Option<EtcdVerdict>,
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

/// The policy: a snapshot, the recent history, the policy's memory and `now` in; the plan
/// out. It reads as the table in README's "Policy": each volume's level, what an operator
/// should know, whether and what to reclaim, and what to ask of ECS.
pub fn decide(
    snapshot: &Snapshot,
    history: &History,
    state: &State,
    settings: &Settings,
    now: SystemTime,
) -> Plan {
    let volumes: Vec<VolumeVerdict> = snapshot
        .volumes
        .iter()
        .map(|v| {
            let previous = state.levels.get(&v.volume).copied().unwrap_or_default();
            judge(v, history, previous, settings)
        })
        .collect();
    let mut next = State {
        levels: volumes
            .iter()
            .filter(|v| v.stats.is_some())
            .map(|v| (v.volume, v.level))
            .collect(),
        recover_since: None,
        eviction: None,
        stuck_since: None,
    };
    let level = volumes
        .iter()
        .filter(|v| v.stats.is_some())
        .map(|v| v.level)
        .max()
        .unwrap_or_default();
    let docker = volumes
        .iter()
        .find(|v| v.volume == Volume::Docker && v.stats.is_some());
    let mut findings = findings(&volumes);
    let reclaim = reclaim_rule(docker, snapshot, settings, now);
    if reclaim.wanted && !snapshot.reclaim_skip.is_empty() {
        findings.push(Finding {
            volume: Some(Volume::Docker),
            message: format!(
                "{} item(s) could not be removed (the engine answered with an error); skipped until the disk recovers",
                snapshot.reclaim_skip.len()
            ),
        });
    }
    if reclaim.wanted && snapshot.inventory.is_none() {
        findings.push(Finding {
            volume: Some(Volume::Docker),
            message: "reclaim wanted, but Docker's images and containers have not been read".into(),
        });
    }
    let escalation = docker.map_or_else(Escalation::default, |d| {
        let recent = d
            .stats
            .and_then(|s| recent(history.points(Volume::Docker), &s));
        escalate(
            d,
            recent,
            reclaim.steps.iter().map(|s| s.bytes).sum(),
            snapshot,
            state.eviction.as_ref(),
            settings,
            now,
        )
    });
    next.eviction = escalation.eviction.clone();
    if let EvictDecision::NoCandidate { why } = &escalation.evict {
        findings.push(Finding {
            volume: Some(Volume::Docker),
            message: format!(
                "the disk fills faster than a drain can help, but nothing may be evicted: {why}"
            ),
        });
    }
    let (etcd, etcd_findings) = judge_etcd(snapshot.etcd.as_ref(), &volumes, settings);
    findings.extend(etcd_findings);
    // What the disk asks of ECS is decided here; the ECS actor reads the instance's status
    // fresh before acting on it. `ecs` is what the view at hand predicts, for display.
    // Docker's volume or any [[watch]] volume (an ECS agent that cannot write its state is
    // as dead as a full Docker disk): the one at the highest level, then the fullest.
    let deciding = volumes
        .iter()
        .filter(|v| v.volume.drains() && v.stats.is_some())
        .max_by(|a, b| {
            a.level
                .cmp(&b.level)
                .then(a.usage_percent.total_cmp(&b.usage_percent))
                .then(b.volume.cmp(&a.volume))
        });
    let ecs_volume = deciding.map(|d| d.volume);
    let mut intent = EcsIntent::Steady;
    if let Some(d) = deciding {
        // Holding a drain for an eviction is about Docker's volume only.
        let hold = escalation.hold_drain && d.volume == Volume::Docker;
        let (i, since) = ecs_intent(
            d.level,
            d.usage_percent,
            settings,
            state.recover_since,
            hold,
            now,
        );
        intent = i;
        next.recover_since = since;
    }
    let ecs = snapshot
        .ecs
        .as_ref()
        .map_or(EcsDecision::None, |view| decide_ecs(intent, view, settings));
    // Replacement: drained by diskguard (as last known; the ECS actor reads it afresh),
    // still at `drain` or above, and the reclaim ladder has nothing left to offer (the
    // build cache's step, offered whatever its size, counts as nothing when it is 0).
    let drained_by_us = snapshot
        .ecs
        .as_ref()
        .is_some_and(|v| v.status == crate::sample::EcsStatus::Draining && v.drained_at.is_some());
    let stuck = drained_by_us
        && deciding.is_some_and(|d| d.level >= Level::Drain)
        && reclaim.steps.iter().all(|s| s.bytes == 0)
        && snapshot.inventory.is_some();
    next.stuck_since = stuck.then(|| state.stuck_since.unwrap_or(now));
    let replace = settings.escalate.enabled != crate::config::Toggle::Off
        && next
            .stuck_since
            .is_some_and(|s| now.duration_since(s).unwrap_or_default() >= settings.escalate.after);
    let armed = docker.is_some_and(|d| {
        d.level >= Level::Prune || d.usage_percent >= settings.thresholds.prune_start - ARM_MARGIN
    });
    let culprit = match &escalation.evict {
        EvictDecision::Evict(e) => e.task_family.clone(),
        _ if matches!(intent, EcsIntent::Drain { .. }) => fastest_family(&snapshot.writers),
        _ => None,
    };
    Plan {
        at: now,
        level,
        volumes,
        reclaim_wanted: reclaim.wanted,
        armed,
        reclaim_needed_bytes: reclaim.needed_bytes,
        reclaim: reclaim.steps,
        expired: reclaim.expired,
        inventory_generation: snapshot.inventory.as_ref().map(|i| i.generation),
        ecs_intent: intent,
        ecs_volume,
        ecs,
        replace,
        evict: escalation.evict,
        culprit,
        findings,
        etcd,
        next,
    }
}

/// The task family of the container writing fastest, if it belongs to a task.
fn fastest_family(writers: &[crate::sample::ContainerWrites]) -> Option<String> {
    writers
        .iter()
        .filter(|w| w.bytes_per_second >= MIN_WRITE_RATE)
        .max_by(|a, b| a.bytes_per_second.total_cmp(&b.bytes_per_second))
        .and_then(|w| w.task_family().map(str::to_owned))
}

/// What to reclaim, when the Docker volume asks for it.
struct Reclaim {
    wanted: bool,
    needed_bytes: Option<u64>,
    steps: Vec<ReclaimStep>,
    expired: Vec<ReclaimStep>,
}

/// The reclaim rule: at `prune` and above, the ladder down to `prune_target` (minimum
/// ages ignored at `critical`); at any level, images past `max_unused_image_age`.
fn reclaim_rule(
    docker: Option<&VolumeVerdict>,
    snapshot: &Snapshot,
    settings: &Settings,
    now: SystemTime,
) -> Reclaim {
    let level = docker.map(|d| d.level).unwrap_or_default();
    let wanted = level >= Level::Prune;
    let needed_bytes = docker
        .and_then(|d| d.stats)
        .and_then(|s| reclaim_goal(&s, settings.thresholds.prune_target));
    let inventory = snapshot.inventory.as_deref();
    let steps = match inventory {
        Some(inv) if wanted => plan_reclaim_skipping(
            inv,
            needed_bytes,
            level >= Level::Critical,
            &settings.docker,
            now,
            &snapshot.reclaim_skip,
        ),
        _ => Vec::new(),
    };
    let expired = inventory.map_or_else(Vec::new, |inv| expired_images(inv, &settings.docker, now));
    Reclaim {
        wanted,
        needed_bytes,
        steps,
        expired,
    }
}

/// `prune` by hand: the ladder down to `prune_target` whatever the level, minimum ages
/// ignored at `critical` — the same ladder the daemon climbs. Returns the bytes to free
/// (`None` when inodes drive it), whether the volume is critical, and the steps.
pub fn reclaim_by_hand(
    stats: &FsStats,
    inventory: &Inventory,
    settings: &Settings,
    now: SystemTime,
) -> (Option<u64>, bool, Vec<ReclaimStep>) {
    let usage = stats.used_percent().max(stats.inodes_used_percent());
    let critical = level_for(usage, &settings.thresholds) >= Level::Critical;
    let goal = reclaim_goal(stats, settings.thresholds.prune_target);
    let steps = plan_reclaim(inventory, goal, critical, &settings.docker, now);
    (goal, critical, steps)
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

#[cfg(test)]
mod drain_tests;
#[cfg(test)]
mod evict_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod reclaim_tests;
#[cfg(test)]
mod tests;
