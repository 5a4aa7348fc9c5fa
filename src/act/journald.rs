//! Opt-in reclaim of the systemd journal (`[journald] vacuum_size`): when the watched
//! volume holding the journal directory reaches `prune`, `journalctl --directory DIR
//! --vacuum-size SIZE` removes archived journal files, oldest first, until they take no
//! more than SIZE. journald's own tool does it, so the active journal is never touched and
//! no file is removed by hand; at most once every [`VACUUM_EVERY`] while the volume stays at
//! `prune` or above. Off by default: the journal is the operator's record.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::actors::{PlanReceiver, next_plan};
use crate::config::Settings;
use crate::policy::Level;

/// A vacuum is not repeated sooner than this while the volume stays full.
pub const VACUUM_EVERY: Duration = Duration::from_secs(5 * 60);
/// journalctl is given this long.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Whether to vacuum now: the journal's volume at `prune` or above, and no vacuum in the
/// last [`VACUUM_EVERY`].
pub fn vacuum_due(level: Level, last: Option<Instant>, now: Instant) -> bool {
    level >= Level::Prune && last.is_none_or(|at| now.duration_since(at) >= VACUUM_EVERY)
}

/// Runs until the plan channel closes; returns at once when `vacuum_size` is not set.
pub async fn run(settings: Settings, mut plans: PlanReceiver) {
    let Some(size) = settings.journald.vacuum_size else {
        return;
    };
    let dir = settings.journald.directory.clone();
    let device = match std::fs::metadata(&dir) {
        Ok(m) => m.dev(),
        Err(e) => {
            warn!(directory = %dir.display(), "journald.vacuum_size is set, but {} cannot be read ({e}): the journal is not vacuumed", dir.display());
            return;
        }
    };
    let mut last: Option<Instant> = None;
    let mut unwatched_said = false;
    let mut observed = false;
    while let Some(plan) = next_plan(&mut plans).await {
        let Some(v) = plan
            .volumes
            .iter()
            .find(|v| v.stats.is_some_and(|s| s.device == device))
        else {
            if !std::mem::replace(&mut unwatched_said, true) {
                warn!(directory = %dir.display(), "journald.vacuum_size is set, but no watched volume holds {}: add a [[watch]] entry for it", dir.display());
            }
            continue;
        };
        let now = Instant::now();
        if v.level < Level::Prune {
            observed = false;
        }
        if !vacuum_due(v.level, last, now) {
            continue;
        }
        last = Some(now);
        let (volume, usage) = (v.volume, v.usage_percent);
        if settings.observe_only() {
            if !std::mem::replace(&mut observed, true) {
                info!(%volume, "observe mode: would vacuum the journal in {} to {} ({volume} at {usage:.1}%)", dir.display(), crate::human::bytes(size));
            }
            continue;
        }
        match vacuum(&dir, size).await {
            Ok(summary) => info!(
                %volume,
                usage_percent = usage,
                "{volume} at {usage:.1}%: vacuumed the journal in {} to {}: {summary}",
                dir.display(),
                crate::human::bytes(size)
            ),
            Err(e) => warn!(%volume, "could not vacuum the journal in {}: {e}", dir.display()),
        }
    }
}

/// `journalctl --directory DIR --vacuum-size SIZE`; its summary line ("Vacuuming done,
/// freed … of archived journals from …").
async fn vacuum(dir: &Path, size: u64) -> Result<String, String> {
    let mut command = tokio::process::Command::new("journalctl");
    command
        .arg("--directory")
        .arg(dir)
        .arg(format!("--vacuum-size={size}"))
        .kill_on_drop(true);
    let out = tokio::time::timeout(TIMEOUT, command.output())
        .await
        .map_err(|_| format!("journalctl did not finish within {TIMEOUT:?}"))?
        .map_err(|e| format!("cannot run journalctl: {e}"))?;
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "journalctl exited with {}: {}",
            out.status,
            text.trim()
        ));
    }
    Ok(text
        .lines()
        .find(|l| l.contains("freed"))
        .unwrap_or(text.trim())
        .trim()
        .to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vacuum_is_due_at_prune_and_not_again_within_five_minutes() {
        let t0 = Instant::now();
        assert!(!vacuum_due(Level::Ok, None, t0));
        assert!(vacuum_due(Level::Prune, None, t0));
        assert!(vacuum_due(Level::Critical, None, t0));
        let later = t0 + Duration::from_secs(299);
        assert!(!vacuum_due(Level::Drain, Some(t0), later));
        assert!(vacuum_due(Level::Drain, Some(t0), t0 + VACUUM_EVERY));
    }
}
