//! Whether to take this container instance out of ECS placement, or give it back.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::Level;
use crate::config::Settings;
pub use crate::sample::DrainingInstance;
use crate::sample::{EcsStatus, EcsView};

/// What to do with the container instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum EcsDecision {
    /// Nothing to change (or not on ECS).
    #[default]
    None,
    /// Set DRAINING and mark it as diskguard's. `over_budget`: the critical level
    /// overrode the cluster budget.
    Drain { over_budget: bool },
    /// Would drain, but the cluster budget is spent.
    DrainSuppressed { draining: u32, allowed: u32 },
    /// diskguard drained it and the disk has recovered: set ACTIVE, remove the mark.
    Undrain,
    /// diskguard drained it but someone set it ACTIVE again: only remove the mark.
    RemoveStaleMark,
    /// The disk recovered after an eviction without a drain: remove `diskguard.culprit`.
    ClearCulprit,
}

/// How many instances of `instances` (ACTIVE + DRAINING) may be DRAINING at once.
pub fn drain_budget(max_draining_percent: f64, instances: u32) -> u32 {
    ((max_draining_percent * f64::from(instances) / 100.0).floor() as u32).max(1)
}

/// What the disk asks of ECS, whatever the instance's status. The ECS actor reads the
/// status fresh before doing anything about it ([`ecs_action`]): a decision never rests
/// on the periodic view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(tag = "intent", rename_all = "snake_case")]
pub enum EcsIntent {
    /// Nothing to ask: between the levels, or an eviction holds the drain back.
    #[default]
    Steady,
    /// Take the instance out of placement; `critical`: past the budget if need be.
    Drain { critical: bool },
    /// Below `recover` for `recover_after`: give back what diskguard took.
    Recovered,
}

/// What to do with the container instance, given its status as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcsAction {
    None,
    Drain,
    Undrain,
    RemoveStaleMark,
    ClearCulprit,
}

/// The disk's intent, and when usage first went below `recover` (for `recover_after`).
/// `hold`: an eviction is under way or has just happened, and may be all it takes.
pub fn ecs_intent(
    level: Level,
    usage: f64,
    settings: &Settings,
    recover_since: Option<SystemTime>,
    hold: bool,
    now: SystemTime,
) -> (EcsIntent, Option<SystemTime>) {
    let t = &settings.thresholds;
    let since = (usage < t.recover).then(|| recover_since.unwrap_or(now));
    let intent = if level >= Level::Critical {
        EcsIntent::Drain { critical: true }
    } else if level >= Level::Drain && !hold {
        EcsIntent::Drain { critical: false }
    } else if since.is_some_and(|s| now.duration_since(s).unwrap_or_default() >= t.recover_after) {
        EcsIntent::Recovered
    } else {
        EcsIntent::Steady
    };
    (intent, since)
}

/// The one rule for acting on ECS, from the intent and this instance's status as read:
/// `ours` — diskguard's mark is on it; `culprit` — `diskguard.culprit` is set. An instance
/// drained by anyone else is never touched.
pub fn ecs_action(
    intent: EcsIntent,
    status: &EcsStatus,
    ours: bool,
    culprit: bool,
    undrain: bool,
) -> EcsAction {
    match (intent, status) {
        (EcsIntent::Drain { .. }, EcsStatus::Active) => EcsAction::Drain,
        (EcsIntent::Drain { .. }, _) => EcsAction::None,
        (_, EcsStatus::Active) if ours => EcsAction::RemoveStaleMark,
        // The episode is over: the culprit it named is no longer news.
        (EcsIntent::Recovered, EcsStatus::Active) if culprit => EcsAction::ClearCulprit,
        (EcsIntent::Recovered, EcsStatus::Draining) if ours && undrain => EcsAction::Undrain,
        _ => EcsAction::None,
    }
}

/// The ECS decision as the view at hand predicts it, for `status` and the plan: the
/// actor decides again on a fresh read, with the budget counted fresh.
pub fn decide_ecs(intent: EcsIntent, ecs: &EcsView, settings: &Settings) -> EcsDecision {
    let action = ecs_action(
        intent,
        &ecs.status,
        ecs.drained_at.is_some(),
        ecs.culprit.is_some(),
        settings.ecs.undrain,
    );
    match action {
        EcsAction::None => EcsDecision::None,
        EcsAction::Drain => {
            let allowed = drain_budget(
                settings.ecs.max_draining_percent,
                ecs.cluster_active + ecs.cluster_draining,
            );
            let over = ecs.cluster_draining + 1 > allowed;
            let critical = matches!(intent, EcsIntent::Drain { critical: true });
            if over && !critical {
                EcsDecision::DrainSuppressed {
                    draining: ecs.cluster_draining,
                    allowed,
                }
            } else {
                EcsDecision::Drain { over_budget: over }
            }
        }
        EcsAction::Undrain => EcsDecision::Undrain,
        EcsAction::RemoveStaleMark => EcsDecision::RemoveStaleMark,
        EcsAction::ClearCulprit => EcsDecision::ClearCulprit,
    }
}

/// Whether this instance may keep the drain it just made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetVerdict {
    Keep,
    /// More diskguard-marked instances drain than the budget allows, and this one is
    /// among the latest: it undoes its own drain.
    Undo {
        /// This instance's place among diskguard's drains, first = 0.
        rank: u32,
        /// How many of diskguard's drains the budget leaves room for.
        room: u32,
    },
}

/// A claim (the mark on a still ACTIVE instance) older than this is a stale mark, not a
/// drain about to happen: an instance that claimed and died must not hold the budget.
pub const CLAIM_TTL: Duration = Duration::from_secs(60);

/// Whether this instance may drain (judging its claim) or keep its drain (judging it after
/// draining), from a fresh read of the cluster. Instances drained by anyone else count
/// against the budget and are never touched. diskguard's drains and claims are ranked —
/// DRAINING ones first (a claim never outranks a drain already made), then by the mark's
/// time, ties broken by ARN — and those past the budget give way, each instance judging
/// only itself, so that every instance that reads the same cluster reaches the same
/// answer. `instances` counts ACTIVE + DRAINING.
pub fn budget_verdict(
    me: &str,
    draining: &[DrainingInstance],
    instances: u32,
    max_draining_percent: f64,
    now: SystemTime,
) -> BudgetVerdict {
    let allowed = drain_budget(max_draining_percent, instances);
    let others = draining
        .iter()
        .filter(|d| d.draining && d.marked_at.is_none())
        .count();
    let room = allowed.saturating_sub(u32::try_from(others).unwrap_or(u32::MAX));
    // An unreadable mark sorts first: it is never this instance's own fresh mark, and
    // ranking it early makes this instance the one to give way.
    let when = |d: &DrainingInstance| {
        d.marked_at
            .as_deref()
            .and_then(|m| humantime::parse_rfc3339_weak(m).ok())
            .unwrap_or(SystemTime::UNIX_EPOCH)
    };
    let live = |d: &&DrainingInstance| {
        d.marked_at.is_some()
            && (d.draining
                || d.arn == me
                || now
                    .duration_since(when(d))
                    .map_or(true, |age| age < CLAIM_TTL))
    };
    let mut ours: Vec<(bool, SystemTime, &str)> = draining
        .iter()
        .filter(live)
        .map(|d| (!d.draining, when(d), d.arn.as_str()))
        .collect();
    ours.sort();
    match ours.iter().position(|(_, _, arn)| *arn == me) {
        Some(rank) => {
            let rank = u32::try_from(rank).unwrap_or(u32::MAX);
            if rank < room {
                BudgetVerdict::Keep
            } else {
                BudgetVerdict::Undo { rank, room }
            }
        }
        // Not (yet) visible as DRAINING in the read: nothing to judge; the next read will.
        None => BudgetVerdict::Keep,
    }
}

/// Before draining, with a fresh count: `Ok` when one more DRAINING instance fits the
/// budget, `Err((draining, allowed))` when it does not.
pub fn budget_room(
    draining: u32,
    instances: u32,
    max_draining_percent: f64,
) -> Result<(), (u32, u32)> {
    let allowed = drain_budget(max_draining_percent, instances);
    if draining < allowed {
        Ok(())
    } else {
        Err((draining, allowed))
    }
}
