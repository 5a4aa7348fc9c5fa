//! Whether to take this container instance out of ECS placement, or give it back.

use std::time::SystemTime;

use serde::Serialize;

use super::Level;
use crate::config::Settings;
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
}

/// How many instances of `instances` (ACTIVE + DRAINING) may be DRAINING at once.
pub fn drain_budget(max_draining_percent: f64, instances: u32) -> u32 {
    ((max_draining_percent * f64::from(instances) / 100.0).floor() as u32).max(1)
}

/// The ECS decision, and when usage first went below `recover` (for `recover_after`).
pub fn decide_ecs(
    level: Level,
    usage: f64,
    ecs: &EcsView,
    settings: &Settings,
    recover_since: Option<SystemTime>,
    now: SystemTime,
) -> (EcsDecision, Option<SystemTime>) {
    let t = &settings.thresholds;
    let ours = ecs.drained_at.is_some();
    let below = usage < t.recover;
    let since = if below {
        Some(recover_since.unwrap_or(now))
    } else {
        None
    };
    let decision = match ecs.status {
        EcsStatus::Active if level >= Level::Drain => {
            let allowed = drain_budget(
                settings.ecs.max_draining_percent,
                ecs.cluster_active + ecs.cluster_draining,
            );
            let over = ecs.cluster_draining + 1 > allowed;
            if over && level < Level::Critical {
                EcsDecision::DrainSuppressed {
                    draining: ecs.cluster_draining,
                    allowed,
                }
            } else {
                EcsDecision::Drain { over_budget: over }
            }
        }
        EcsStatus::Active if ours => EcsDecision::RemoveStaleMark,
        EcsStatus::Draining if ours && settings.ecs.undrain => match since {
            Some(s) if now.duration_since(s).unwrap_or_default() >= t.recover_after => {
                EcsDecision::Undrain
            }
            _ => EcsDecision::None,
        },
        _ => EcsDecision::None,
    };
    (decision, since)
}
