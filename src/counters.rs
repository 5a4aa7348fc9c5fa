//! Running totals that actors add to and reporters read: bytes reclaimed, errors,
//! suppressed drains. Atomics, so neither side ever waits for the other.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// Totals since start, plus bytes reclaimed today (UTC) for the status line.
#[derive(Debug, Default)]
pub struct Counters {
    pub reclaimed_bytes: AtomicU64,
    pub reclaim_errors: AtomicU64,
    pub reclaim_skipped_in_use: AtomicU64,
    pub reclaim_passes: AtomicU64,
    pub drains_suppressed: AtomicU64,
    /// Drain (and undrain) decisions that waited on a failed or throttled ECS read.
    pub drains_delayed: AtomicU64,
    /// Replacements asked of the Auto Scaling group (`[escalate]`).
    pub escalations: AtomicU64,
    /// Metric intervals dropped from the CloudWatch buffer during an outage.
    pub metric_intervals_dropped: AtomicU64,
    /// Metric values left out because they were not finite.
    pub metric_values_skipped: AtomicU64,
    /// (day number since the epoch, bytes reclaimed that day)
    today: Mutex<(u64, u64)>,
    /// Evictions and drains by the task family that caused them (for `Evictions`).
    evictions: Mutex<BTreeMap<String, u64>>,
}

fn day(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400)
}

impl Counters {
    pub fn add_reclaimed(&self, bytes: u64, at: SystemTime) {
        self.reclaimed_bytes.fetch_add(bytes, Ordering::Relaxed);
        let mut today = self.today.lock().unwrap_or_else(|p| p.into_inner());
        if today.0 != day(at) {
            *today = (day(at), 0);
        }
        today.1 += bytes;
    }

    pub fn reclaimed_today(&self, now: SystemTime) -> u64 {
        let today = self.today.lock().unwrap_or_else(|p| p.into_inner());
        if today.0 == day(now) { today.1 } else { 0 }
    }

    /// Counts an incident caused by `family`; one with no task family (a container
    /// outside ECS) is not counted: the metric is per family.
    pub fn add_eviction(&self, family: Option<&str>) {
        if let Some(f) = family {
            let mut map = self.evictions.lock().unwrap_or_else(|p| p.into_inner());
            *map.entry(f.to_owned()).or_default() += 1;
        }
    }

    /// Incidents by task family since start.
    pub fn evictions(&self) -> BTreeMap<String, u64> {
        self.evictions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn reclaimed_today_resets_at_midnight_utc() {
        let c = Counters::default();
        let noon = SystemTime::UNIX_EPOCH + Duration::from_secs(20_000 * 86_400 + 43_200);
        c.add_reclaimed(100, noon);
        c.add_reclaimed(50, noon + Duration::from_secs(60));
        assert_eq!(c.reclaimed_today(noon), 150);
        assert_eq!(c.reclaimed_today(noon + Duration::from_secs(86_400)), 0);
        c.add_reclaimed(7, noon + Duration::from_secs(86_400));
        assert_eq!(c.reclaimed_today(noon + Duration::from_secs(86_400)), 7);
        assert_eq!(Counters::get(&c.reclaimed_bytes), 157);
    }
}
