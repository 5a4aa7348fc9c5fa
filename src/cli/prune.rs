//! `prune [--dry-run]`: one reclaim pass down to `prune_target`, by hand.

use std::fmt::Write as _;
use std::time::SystemTime;

use super::Error;
use crate::act::reclaim::{Outcome, PASS_CONCURRENCY, PASS_DEADLINE, PassSettings, run_pass};
use crate::config::Settings;
use crate::daemon::oneshot::read_docker;
use crate::human;
use crate::policy::{ReclaimStep, reclaim_by_hand};
use crate::sample::{Volume, stat};

/// What `prune` prints and its exit code, or why it could not run at all.
pub async fn prune(settings: &Settings, dry_run: bool) -> Result<(String, u8), Error> {
    {
        let root = &settings.docker.root;
        let stats = stat(root).map_err(|source| Error::Volume {
            path: root.clone(),
            source,
        })?;
        let (source, inventory) = read_docker(settings, true).await?;
        let target = settings.thresholds.prune_target;
        let usage = stats.used_percent().max(stats.inodes_used_percent());
        let (goal, critical, steps) =
            reclaim_by_hand(&stats, &inventory, settings, SystemTime::now());
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} at {usage:.1}%, goal ≤ {target}%: {} to free{}",
            Volume::Docker,
            goal.map_or("inodes".to_owned(), human::bytes),
            if critical {
                " (critical: minimum ages ignored)"
            } else {
                ""
            }
        );
        if steps.is_empty() {
            let _ = writeln!(out, "nothing to remove");
            return Ok((out, 0));
        }
        if dry_run || settings.observe_only() {
            for s in &steps {
                let _ = writeln!(out, "{}", line("would", s));
            }
            let total: u64 = steps.iter().map(|s| s.bytes).sum();
            let _ = writeln!(
                out,
                "total: {} items, ~{} (dry run: nothing removed)",
                steps.len(),
                human::bytes(total)
            );
            return Ok((out, 0));
        }
        let pass = PassSettings {
            root: root.clone(),
            target_percent: Some(target),
            concurrency: PASS_CONCURRENCY,
            deadline: PASS_DEADLINE,
        };
        let report = run_pass(&source, &steps, &pass, &|| false).await;
        for (s, outcome) in &report.steps {
            let word = match outcome {
                Outcome::Removed => "removed",
                Outcome::InUse(_) => "in-use",
                Outcome::Gone => "gone",
                Outcome::Failed(_) | Outcome::Unreachable(_) => "failed",
            };
            let _ = write!(out, "{}", line(word, s));
            match outcome {
                Outcome::InUse(why) | Outcome::Failed(why) | Outcome::Unreachable(why) => {
                    let _ = writeln!(out, "  ({why})");
                }
                _ => out.push('\n'),
            }
        }
        let _ = writeln!(out, "{}", report.summary());
        let code = u8::from(report.errors() > 0 || report.aborted);
        Ok((out, code))
    }
}

/// `would    unused_image        sha256:…  app:v1  7.0 MiB`
fn line(word: &str, s: &ReclaimStep) -> String {
    let rung = serde_json::to_value(s.rung)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    format!(
        "{word:<8} {rung:<18} {} {} {}",
        s.id,
        s.name.replace(' ', "_"),
        human::bytes(s.bytes)
    )
}
