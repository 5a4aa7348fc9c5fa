//! One reclaim pass: carry out the policy's ladder against the Engine API, in order,
//! with bounded concurrency and a time bound, re-reading statvfs before each removal and
//! stopping at the target. The removals themselves are `crate::docker::remove`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde::Serialize;

pub use crate::docker::Outcome;
use crate::docker::{DockerSource, remove};
use crate::human;
use crate::policy::{ReclaimStep, Rung};
use crate::sample::{FsStats, stat};

/// Removals in flight at once. dockerd serialises much of an image delete internally;
/// four hides the round trips without piling work on an engine that is short of disk.
pub const PASS_CONCURRENCY: usize = 4;
/// A pass that has not finished in this time stops dispatching and reports.
pub const PASS_DEADLINE: Duration = Duration::from_secs(120);
/// Consecutive failures (not conflicts) after which the pass gives up: dockerd is gone.
const MAX_CONSECUTIVE_FAILURES: usize = 3;

/// How a pass is run.
#[derive(Debug, Clone)]
pub struct PassSettings {
    /// Docker's data root: statvfs is read here.
    pub root: PathBuf,
    /// Stop once bytes and inodes are both at or below this percent; `None`: remove
    /// every step (images past their maximum age go whatever the usage).
    pub target_percent: Option<f64>,
    pub concurrency: usize,
    pub deadline: Duration,
}

/// The record of a pass, for logs, counters and `prune`'s output.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PassReport {
    /// Steps in the order they were dispatched, with their outcome.
    pub steps: Vec<(ReclaimStep, Outcome)>,
    pub before: Option<FsStats>,
    pub after: Option<FsStats>,
    pub reached_target: bool,
    pub timed_out: bool,
    /// Gave up after repeated failures.
    pub aborted: bool,
    /// Stopped dispatching on shutdown.
    pub stopped: bool,
    pub elapsed: Duration,
    /// Reported by the engine for the build cache rung.
    pub build_cache_bytes: u64,
}

impl PassReport {
    pub fn removed(&self) -> impl Iterator<Item = &ReclaimStep> {
        self.steps
            .iter()
            .filter(|(_, o)| *o == Outcome::Removed)
            .map(|(s, _)| s)
    }

    pub fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.steps.iter().filter(|(_, o)| f(o)).count()
    }

    /// Whether the pass freed anything: an item removed other than the build cache, or
    /// build cache the engine says it freed. Pruning an empty build cache is no progress,
    /// and must not keep the next pass from cooling down.
    pub fn freed_something(&self) -> bool {
        self.removed().any(|s| s.rung != Rung::BuildCache) || self.build_cache_bytes > 0
    }

    pub fn in_use(&self) -> usize {
        self.count(|o| matches!(o, Outcome::InUse(_)))
    }

    pub fn errors(&self) -> usize {
        self.count(Outcome::is_error)
    }

    /// Items the engine answered with an error for: skipped for the rest of the episode.
    pub fn failed_items(&self) -> Vec<String> {
        self.steps
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Failed(_)))
            .map(|(s, _)| s.id.clone())
            .collect()
    }

    /// Measured with statvfs before and after; 0 if something else wrote meanwhile.
    pub fn reclaimed_bytes(&self) -> u64 {
        match (self.before, self.after) {
            (Some(b), Some(a)) => b.used_bytes().saturating_sub(a.used_bytes()),
            _ => 0,
        }
    }

    /// One line: totals, then what each rung removed.
    pub fn summary(&self) -> String {
        let mut rungs: BTreeMap<Rung, (usize, u64)> = BTreeMap::new();
        for s in self.removed() {
            let e = rungs.entry(s.rung).or_default();
            e.0 += 1;
            e.1 += s.bytes;
        }
        let per_rung: Vec<String> = rungs
            .iter()
            .map(|(r, (n, b))| format!("{} {n} (~{})", rung_name(*r), human::bytes(*b)))
            .collect();
        let pct =
            |s: Option<FsStats>| s.map_or("?".to_owned(), |s| format!("{:.1}%", s.used_percent()));
        format!(
            "freed {} ({} → {}) in {:.1}s: {}; {} skipped in use, {} already gone, {} errors{}{}{}",
            human::bytes(self.reclaimed_bytes()),
            pct(self.before),
            pct(self.after),
            self.elapsed.as_secs_f64(),
            if per_rung.is_empty() {
                "nothing removed".to_owned()
            } else {
                per_rung.join(", ")
            },
            self.in_use(),
            self.count(|o| *o == Outcome::Gone),
            self.errors(),
            if self.timed_out {
                "; stopped at the time bound"
            } else {
                ""
            },
            if self.aborted {
                "; gave up after repeated failures"
            } else {
                ""
            },
            if self.stopped {
                "; stopped on shutdown"
            } else {
                ""
            },
        )
    }
}

pub fn rung_name(r: Rung) -> &'static str {
    match r {
        Rung::DanglingImage => "dangling images",
        Rung::StoppedContainer => "stopped containers",
        Rung::UnusedImage => "unused images",
        Rung::BuildCache => "build cache",
    }
}

fn at_target(stats: &FsStats, target: Option<f64>) -> bool {
    target.is_some_and(|t| stats.used_percent() <= t && stats.inodes_used_percent() <= t)
}

/// Runs the steps. Never panics and never returns early with an error: every problem is
/// an outcome in the report.
///
/// `stop` is asked before each dispatch: once it says so (shutdown), nothing more is
/// dispatched and what is in flight finishes.
pub async fn run_pass(
    source: &DockerSource,
    steps: &[ReclaimStep],
    settings: &PassSettings,
    stop: &(dyn Fn() -> bool + Sync),
) -> PassReport {
    let start = Instant::now();
    let mut report = PassReport {
        before: stat(&settings.root).ok(),
        ..PassReport::default()
    };
    let mut pending = steps.iter().peekable();
    let mut in_flight = FuturesUnordered::new();
    let mut failures_in_a_row = 0;
    loop {
        // Dispatch in plan order; finish a rung before starting the next, so that images
        // freed by removing their containers are free when their turn comes.
        while in_flight.len() < settings.concurrency.max(1) {
            let Some(next) = pending.peek() else { break };
            if report
                .steps
                .last()
                .is_some_and(|(s, _): &(ReclaimStep, Outcome)| s.rung != next.rung)
                && !in_flight.is_empty()
            {
                break;
            }
            if start.elapsed() >= settings.deadline {
                report.timed_out = true;
                break;
            }
            if stop() {
                report.stopped = true;
                break;
            }
            if stat(&settings.root).is_ok_and(|s| at_target(&s, settings.target_percent)) {
                report.reached_target = true;
                break;
            }
            let step = (*next).clone();
            pending.next();
            let index = report.steps.len();
            report.steps.push((step.clone(), Outcome::Gone));
            in_flight.push(async move { (index, remove(source, &step).await) });
        }
        let Some((index, (outcome, cache_bytes))) = in_flight.next().await else {
            break;
        };
        report.build_cache_bytes += cache_bytes;
        failures_in_a_row = if outcome.is_error() {
            failures_in_a_row + 1
        } else {
            0
        };
        report.steps[index].1 = outcome;
        if failures_in_a_row >= MAX_CONSECUTIVE_FAILURES {
            report.aborted = true;
            // Let what is in flight finish so the report is true; dispatch nothing more.
            while let Some((i, (o, b))) = in_flight.next().await {
                report.build_cache_bytes += b;
                report.steps[i].1 = o;
            }
            break;
        }
        if report.timed_out || report.reached_target || report.stopped {
            continue;
        }
    }
    report.after = stat(&settings.root).ok();
    report.reached_target |= report
        .after
        .is_some_and(|s| at_target(&s, settings.target_percent));
    report.elapsed = start.elapsed();
    report
}

/// Removes one item. Returns the outcome and, for the build cache, the bytes the engine
/// says it freed.
async fn remove(source: &DockerSource, step: &ReclaimStep) -> (Outcome, u64) {
    match step.rung {
        Rung::StoppedContainer => (remove::remove_container(source, &step.id).await, 0),
        Rung::DanglingImage | Rung::UnusedImage => {
            (remove::remove_image(source, &step.id).await, 0)
        }
        Rung::BuildCache => remove::prune_build_cache(source).await,
    }
}
