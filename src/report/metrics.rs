//! The CloudWatch metric catalogue (a contract: README, "CloudWatch metrics") and its
//! aggregation: every sample of the 1 s loop goes into a statistic set, and each interval
//! closes into a batch of datums. Pure: no clock reads, no I/O — the loop feeds it, the
//! CloudWatch actor sends what it closes.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::policy::Plan;
use crate::sample::{Snapshot, Volume};

/// CloudWatch units used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Unit {
    Percent,
    Bytes,
    Seconds,
    Count,
    None,
}

/// SampleCount, Sum, Minimum, Maximum of the samples of one interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StatSet {
    pub count: f64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl StatSet {
    fn of(v: f64) -> Self {
        StatSet {
            count: 1.0,
            sum: v,
            min: v,
            max: v,
        }
    }

    fn add(&mut self, v: f64) {
        self.count += 1.0;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    /// CloudWatch rejects NaN and infinities; so does this.
    pub fn is_finite(&self) -> bool {
        [self.count, self.sum, self.min, self.max]
            .iter()
            .all(|v| v.is_finite())
    }
}

/// What a datum carries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Stats(StatSet),
    Single(f64),
}

impl Value {
    pub fn is_finite(&self) -> bool {
        match self {
            Value::Stats(s) => s.is_finite(),
            Value::Single(v) => v.is_finite(),
        }
    }
}

/// Which dimensions a datum takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// The configured instance dimensions plus `Volume`.
    Volume(Volume),
    /// The configured instance dimensions.
    Instance,
    /// `ClusterName` alone (the roll-up).
    Cluster,
}

/// One metric of one interval, before dimensions are attached.
#[derive(Debug, Clone, PartialEq)]
pub struct Datum {
    pub name: &'static str,
    pub scope: Scope,
    pub unit: Unit,
    pub value: Value,
}

/// A closed interval, ready to send once dimensions are known.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// The start of the interval.
    pub timestamp: SystemTime,
    pub datums: Vec<Datum>,
    /// The ECS cluster at the end of the interval, for `ClusterName`.
    pub cluster: Option<String>,
    /// `Evictions` in the interval by task family: only families that caused one, so the
    /// metric count stays bounded by real incidents.
    pub evictions: Vec<(String, u64)>,
}

/// Running totals the interval takes differences of.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    pub reclaimed_bytes: u64,
    pub reclaim_errors: u64,
    pub drains_suppressed: u64,
    pub escalations: u64,
    /// Evictions and drains by the task family that caused them.
    pub evictions: BTreeMap<String, u64>,
}

impl Totals {
    /// The counters as they are now.
    pub fn read(c: &crate::counters::Counters) -> Self {
        use crate::counters::Counters;
        Totals {
            reclaimed_bytes: Counters::get(&c.reclaimed_bytes),
            reclaim_errors: Counters::get(&c.reclaim_errors),
            drains_suppressed: Counters::get(&c.drains_suppressed),
            escalations: Counters::get(&c.escalations),
            evictions: c.evictions(),
        }
    }
}

/// Extra numbers for `extra_metrics`, sampled with each tick when available.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Extras {
    pub images_bytes: Option<f64>,
    pub image_count: Option<f64>,
    pub container_count: Option<f64>,
    pub top_writer_bytes: Option<f64>,
}

/// Accumulates the samples of the current interval.
#[derive(Debug, Clone)]
pub struct Aggregator {
    interval: Duration,
    start: SystemTime,
    samples: BTreeMap<(&'static str, Scope), (Unit, StatSet)>,
    totals_at_start: Totals,
    extra: Vec<String>,
    cluster: Option<String>,
    draining: Option<f64>,
}

/// Start of the interval holding `t`, aligned to multiples of `interval` since the epoch
/// (so every instance's minute is the same minute).
fn align(t: SystemTime, interval: Duration) -> SystemTime {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let step = interval.as_millis().max(1);
    let aligned = since.as_millis() / step * step;
    SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(aligned).unwrap_or(u64::MAX))
}

impl Aggregator {
    pub fn new(interval: Duration, now: SystemTime, totals: Totals, extra: &[String]) -> Self {
        Aggregator {
            interval,
            start: align(now, interval),
            samples: BTreeMap::new(),
            totals_at_start: totals,
            extra: extra.to_vec(),
            cluster: None,
            draining: None,
        }
    }

    fn add(&mut self, name: &'static str, scope: Scope, unit: Unit, v: f64) {
        self.samples
            .entry((name, scope))
            .and_modify(|(_, s)| s.add(v))
            .or_insert((unit, StatSet::of(v)));
    }

    fn wants(&self, metric: &str) -> bool {
        self.extra.iter().any(|m| m == metric)
    }

    /// Adds one tick's samples. When `now` has left the current interval, the interval is
    /// closed first and returned.
    pub fn observe(
        &mut self,
        now: SystemTime,
        plan: &Plan,
        snapshot: &Snapshot,
        totals: Totals,
        extras: Extras,
    ) -> Option<Batch> {
        let closed = (now >= self.start + self.interval).then(|| self.close(now, totals));
        let docker_device = plan
            .volume(Volume::Docker)
            .and_then(|v| v.stats)
            .map(|s| s.device);
        for v in &plan.volumes {
            let Some(stats) = v.stats else { continue };
            // etcd on Docker's filesystem would repeat Docker's numbers, billed twice.
            let shares = v.volume == Volume::Etcd && docker_device == Some(stats.device);
            if shares {
                continue;
            }
            let scope = Scope::Volume(v.volume);
            self.add(
                "DiskUsedPercent",
                scope,
                Unit::Percent,
                stats.used_percent(),
            );
            self.add(
                "InodesUsedPercent",
                scope,
                Unit::Percent,
                stats.inodes_used_percent(),
            );
            // Docker's volume gets all four; etcd's own volume two, so that the default
            // set stays at 12 billed metrics per instance.
            if v.volume == Volume::Docker {
                self.add(
                    "DiskFreeBytes",
                    scope,
                    Unit::Bytes,
                    stats.avail_bytes as f64,
                );
                if let Some(ttf) = v.time_to_full {
                    self.add("TimeToFullSeconds", scope, Unit::Seconds, ttf.as_secs_f64());
                }
            }
        }
        // Only while this instance's status is known: not through an ECS outage or after
        // it was deregistered, when the last value would be a guess.
        if let Some(ecs) = snapshot.ecs.as_ref().filter(|e| e.current) {
            let draining = if ecs.status == crate::sample::EcsStatus::Draining {
                1.0
            } else {
                0.0
            };
            self.add("Draining", Scope::Instance, Unit::None, draining);
            self.draining = Some(draining);
        }
        // From the identity, not from a successful read of ECS: a metric must keep its
        // dimensions through an ECS outage, or it becomes another metric that the
        // dashboard and the alarms do not see.
        if let Some(cluster) = &snapshot.cluster {
            self.cluster = Some(cluster.clone());
        }
        // Only what etcd actually said: a down etcd publishes nothing rather than a 0 that
        // would read as "no alarm".
        if let Some(etcd) = snapshot.etcd.as_ref().filter(|e| e.is_readable()) {
            if let Some(p) = etcd.quota_used_percent() {
                self.add("EtcdQuotaUsedPercent", Scope::Instance, Unit::Percent, p);
            }
            self.add(
                "EtcdNoSpaceAlarm",
                Scope::Instance,
                Unit::None,
                if etcd.alarm_nospace { 1.0 } else { 0.0 },
            );
            for (metric, value) in [
                ("EtcdDbBytes", etcd.db_bytes),
                ("EtcdDbInUseBytes", etcd.in_use_bytes),
            ] {
                if let Some(v) = value.filter(|_| self.wants(metric)) {
                    self.add(metric, Scope::Instance, Unit::Bytes, v as f64);
                }
            }
        }
        for (metric, unit, value) in [
            ("ImagesBytes", Unit::Bytes, extras.images_bytes),
            ("ImageCount", Unit::Count, extras.image_count),
            ("ContainerCount", Unit::Count, extras.container_count),
            ("TopWriterBytes", Unit::Bytes, extras.top_writer_bytes),
        ] {
            if let Some(v) = value.filter(|_| self.wants(metric)) {
                self.add(metric, Scope::Instance, unit, v);
            }
        }
        closed
    }

    /// Closes the current interval (also used for the final flush on SIGTERM) and starts
    /// the one holding `now`.
    pub fn close(&mut self, now: SystemTime, totals: Totals) -> Batch {
        let mut datums: Vec<Datum> = std::mem::take(&mut self.samples)
            .into_iter()
            .map(|((name, scope), (unit, stats))| Datum {
                name,
                scope,
                unit,
                value: Value::Stats(stats),
            })
            .collect();
        let before = &self.totals_at_start;
        for (name, unit, delta) in [
            (
                "ReclaimedBytes",
                Unit::Bytes,
                totals
                    .reclaimed_bytes
                    .saturating_sub(before.reclaimed_bytes),
            ),
            (
                "ReclaimErrors",
                Unit::Count,
                totals.reclaim_errors.saturating_sub(before.reclaim_errors),
            ),
            (
                "DrainSuppressed",
                Unit::Count,
                totals
                    .drains_suppressed
                    .saturating_sub(before.drains_suppressed),
            ),
        ] {
            datums.push(Datum {
                name,
                scope: Scope::Instance,
                unit,
                value: Value::Single(delta as f64),
            });
        }
        // Only in an interval with a replacement asked: an instance that never escalates
        // is not billed for the metric (the default set stays at twelve).
        let escalations = totals.escalations.saturating_sub(before.escalations);
        if escalations > 0 {
            datums.push(Datum {
                name: "Escalations",
                scope: Scope::Instance,
                unit: Unit::Count,
                value: Value::Single(escalations as f64),
            });
        }
        // The roll-up: one 0/1 value per instance per interval, so that the cluster's Sum
        // is the number of draining instances and its SampleCount the instances reporting.
        if let (Some(d), Some(_)) = (self.draining, &self.cluster) {
            datums.push(Datum {
                name: "Draining",
                scope: Scope::Cluster,
                unit: Unit::None,
                value: Value::Single(d),
            });
        }
        let evictions = totals
            .evictions
            .iter()
            .filter_map(|(family, n)| {
                let was = before.evictions.get(family).copied().unwrap_or(0);
                (*n > was).then(|| (family.clone(), n - was))
            })
            .collect();
        let batch = Batch {
            timestamp: self.start,
            datums,
            cluster: self.cluster.clone(),
            evictions,
        };
        self.start = align(now, self.interval).max(self.start + self.interval);
        self.totals_at_start = totals;
        self.draining = None;
        batch
    }
}

#[cfg(test)]
mod tests;
