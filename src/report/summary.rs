//! The one-line summary `systemctl status` shows, e.g.
//! `docker 83% (prune→70%) · etcd 12% · local mode`.

use crate::config::Settings;
use crate::policy::{Level, Plan};
use crate::sample::EcsView;

/// Whole percents only: the line is re-sent only when it changes, and decimals would
/// change it every second.
pub fn summary_line(plan: &Plan, settings: &Settings, ecs: Option<&EcsView>) -> String {
    let mut parts: Vec<String> = plan
        .volumes
        .iter()
        .map(|v| {
            if v.stats.is_none() {
                return format!("{} unreadable", v.volume);
            }
            let pct = v.usage_percent.round();
            match v.level {
                Level::Ok => format!("{} {pct:.0}%", v.volume),
                Level::Prune => format!(
                    "{} {pct:.0}% (prune→{:.0}%)",
                    v.volume, settings.thresholds.prune_target
                ),
                level => format!("{} {pct:.0}% ({level})", v.volume),
            }
        })
        .collect();
    match ecs {
        None => parts.push("local mode".into()),
        Some(v) => parts.push(format!(
            "ECS {}{}",
            v.status.as_str(),
            if v.drained_at.is_some() {
                " (by diskguard)"
            } else {
                ""
            }
        )),
    }
    if settings.observe_only() {
        parts.push("observe only".into());
    }
    parts.join(" · ")
}
