//! The series of `/metrics` (a contract: README, "Prometheus metrics"), built from the same
//! numbers CloudWatch gets — the plan's volumes, this instance's ECS view, the running
//! `Totals` — into a fresh `prometheus-client` registry per scrape, and encoded by that
//! crate in the format the scraper asked for. A fresh registry means a series that stops
//! being true (an unreadable volume, an ECS status no longer known) is simply absent,
//! never a stale value. Pure: the server hands it everything it shows.
//!
//! Names start with `diskguard_` and never `node_`: node_exporter runs beside diskguard
//! and owns that prefix. Volume series carry node_exporter's own label names (`device`,
//! `mountpoint`, `fstype`) plus `volume`, so they join with its series.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::time::SystemTime;

use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::policy::{Level, Plan};
use crate::report::metrics::Totals;
use crate::sample::{EcsStatus, EcsView, MountInfo, Volume};

/// Every level, in order: one `diskguard_volume_level` series each.
const LEVELS: [Level; 4] = [Level::Ok, Level::Prune, Level::Drain, Level::Critical];

/// The container instance statuses ECS documents; each gets a 0/1 series, and a status
/// outside this list (should ECS add one) a series of its own.
const ECS_STATUSES: [&str; 6] = [
    "REGISTERING",
    "REGISTRATION_FAILED",
    "ACTIVE",
    "DRAINING",
    "DEREGISTERING",
    "INACTIVE",
];

type Labels = Vec<(&'static str, String)>;
type IntGauges = Family<Labels, Gauge>;
type FloatGauges = Family<Labels, Gauge<f64, AtomicU64>>;

/// What one scrape shows.
#[derive(Debug, Clone, Copy)]
pub struct Scrape<'a> {
    /// The newest plan; `None` before the first sample.
    pub plan: Option<&'a Plan>,
    /// Where each volume is mounted, when the mount table says.
    pub mounts: &'a BTreeMap<Volume, MountInfo>,
    /// This instance in ECS as last read; `None` in local mode.
    pub ecs: Option<&'a EcsView>,
    pub totals: &'a Totals,
    pub drains_delayed: u64,
}

/// The exposition format, chosen from the scraper's `Accept` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text: what Prometheus asks for first.
    OpenMetrics,
    /// The Prometheus text format 0.0.4: for everyone else (curl, promtool, older scrapers).
    Text,
}

impl Format {
    /// OpenMetrics when the header accepts it at least as much as plain text (Prometheus
    /// sends `application/openmetrics-text;version=1.0.0,…,text/plain;version=0.0.4;q=0.5`),
    /// the text format otherwise — also when there is no header at all.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let quality = |wanted: &[&str]| {
            accept
                .unwrap_or_default()
                .split(',')
                .filter_map(|range| {
                    let mut parts = range.split(';').map(str::trim);
                    let media = parts.next()?.to_ascii_lowercase();
                    if !wanted.contains(&media.as_str()) {
                        return None;
                    }
                    let q = parts
                        .filter_map(|p| p.strip_prefix("q="))
                        .find_map(|q| q.parse::<f64>().ok())
                        .unwrap_or(1.0);
                    Some(q)
                })
                .fold(0.0, f64::max)
        };
        let open = quality(&["application/openmetrics-text"]);
        let text = quality(&["text/plain", "text/*", "*/*"]);
        if open > 0.0 && open >= text {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }
}

/// The scrape in `format`.
pub fn render(scrape: &Scrape<'_>, format: Format) -> String {
    let registry = registry(scrape);
    let mut out = String::new();
    let encoded = match format {
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry),
        Format::Text => prometheus_client::encoding::prometheus_text::encode(&mut out, &registry),
    };
    // Writing to a String cannot fail, and every value here is encodable.
    encoded.expect("encoding into a String never fails");
    out
}

/// node_exporter's labels for a volume, plus which volume it is. A mount the table does
/// not list keeps its path as `mountpoint` and empty device and type.
fn volume_labels(volume: Volume, path: &std::path::Path, mount: Option<&MountInfo>) -> Labels {
    let (device, mountpoint, fstype) = match mount {
        Some(m) => (
            m.device.clone(),
            m.mount_point.display().to_string(),
            m.fs_type.clone(),
        ),
        None => (String::new(), path.display().to_string(), String::new()),
    };
    vec![
        ("device", device),
        ("mountpoint", mountpoint),
        ("fstype", fstype),
        ("volume", volume.name().to_owned()),
    ]
}

fn with(labels: &Labels, name: &'static str, value: &str) -> Labels {
    let mut out = labels.clone();
    out.push((name, value.to_owned()));
    out
}

/// Bytes and counts as the gauge's integer, saturating (no filesystem is 2^63 bytes).
fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn seconds_since_epoch(at: SystemTime) -> Option<f64> {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs_f64())
}

pub(super) fn registry(scrape: &Scrape<'_>) -> Registry {
    let mut r = Registry::with_prefix("diskguard");
    volumes(&mut r, scrape);
    counters(&mut r, scrape);
    ecs(&mut r, scrape.ecs);
    r.register(
        "build",
        "diskguard's version and the git commit it was built from",
        Info::new(vec![
            ("version", env!("CARGO_PKG_VERSION")),
            ("revision", env!("DISKGUARD_GIT_SHA")),
        ]),
    );
    r
}

fn volumes(r: &mut Registry, scrape: &Scrape<'_>) {
    let size = IntGauges::default();
    let used = IntGauges::default();
    let free = IntGauges::default();
    let avail = IntGauges::default();
    let files = IntGauges::default();
    let files_free = IntGauges::default();
    let level = IntGauges::default();
    let time_to_full = FloatGauges::default();
    let readable = scrape
        .plan
        .into_iter()
        .flat_map(|p| &p.volumes)
        .filter_map(|v| v.stats.map(|s| (v, s)));
    for (v, stats) in readable {
        let labels = volume_labels(v.volume, &v.path, scrape.mounts.get(&v.volume));
        size.get_or_create(&labels).set(int(stats.total_bytes));
        used.get_or_create(&labels).set(int(stats.used_bytes()));
        free.get_or_create(&labels).set(int(stats.free_bytes));
        avail.get_or_create(&labels).set(int(stats.avail_bytes));
        files.get_or_create(&labels).set(int(stats.total_inodes));
        files_free
            .get_or_create(&labels)
            .set(int(stats.free_inodes));
        for l in LEVELS {
            level
                .get_or_create(&with(&labels, "level", l.name()))
                .set(i64::from(v.level == l));
        }
        // Only while the volume is filling: no series (never NaN or +Inf) otherwise.
        if let Some(secs) = v
            .time_to_full
            .map(|d| d.as_secs_f64())
            .filter(|s| s.is_finite())
        {
            time_to_full.get_or_create(&labels).set(secs);
        }
    }
    let bytes = [
        (
            "filesystem_size",
            "Size of the watched filesystem (statvfs f_blocks)",
            size,
        ),
        (
            "filesystem_used",
            "Bytes in use on the watched filesystem: size - free, as df counts them",
            used,
        ),
        (
            "filesystem_free",
            "Free bytes on the watched filesystem, root's reserve included (f_bfree)",
            free,
        ),
        (
            "filesystem_avail",
            "Bytes a container can still write on the watched filesystem (f_bavail)",
            avail,
        ),
    ];
    for (name, help, family) in bytes {
        r.register_with_unit(name, help, Unit::Bytes, family);
    }
    r.register(
        "filesystem_files",
        "Inodes of the watched filesystem (f_files)",
        files,
    );
    r.register(
        "filesystem_files_free",
        "Free inodes of the watched filesystem (f_ffree)",
        files_free,
    );
    r.register(
        "volume_level",
        "The volume's level: 1 for the current one of ok, prune, drain, critical; 0 for the others",
        level,
    );
    r.register_with_unit(
        "volume_time_to_full",
        "Seconds until the volume is full at the current rate; absent while it is not filling",
        Unit::Seconds,
        time_to_full,
    );
    if let Some(at) = scrape.plan.and_then(|p| seconds_since_epoch(p.at)) {
        r.register_with_unit(
            "last_sample_timestamp",
            "When the sampling loop last read the volumes (Unix time)",
            Unit::Seconds,
            ConstGauge::new(at),
        );
    }
}

fn counters(r: &mut Registry, scrape: &Scrape<'_>) {
    let t = scrape.totals;
    r.register_with_unit(
        "reclaimed",
        "Bytes reclaimed from Docker since diskguard started",
        Unit::Bytes,
        ConstCounter::new(t.reclaimed_bytes),
    );
    let simple = [
        (
            "reclaim_errors",
            "Images, containers or build cache Docker failed to remove",
            t.reclaim_errors,
        ),
        (
            "drains_suppressed",
            "Drains not started because the cluster's drain budget was spent",
            t.drains_suppressed,
        ),
        (
            "escalations",
            "Replacements asked of the instance's Auto Scaling group (a drained node that stayed full)",
            t.escalations,
        ),
        (
            "drains_delayed",
            "Drain and undrain decisions that waited on a failed or throttled ECS read",
            scrape.drains_delayed,
        ),
    ];
    for (name, help, value) in simple {
        r.register(name, help, ConstCounter::new(value));
    }
    let evictions = Family::<Labels, Counter>::default();
    for (family, n) in &t.evictions {
        evictions
            .get_or_create(&vec![("task_family", family.clone())])
            .inc_by(*n);
    }
    r.register(
        "evictions",
        "Containers stopped, or this instance drained, because a container of the task family filled the disk",
        evictions,
    );
}

/// Only while this instance's status is known (the last read succeeded): through an ECS
/// outage or after deregistration there is no series rather than a guess.
fn ecs(r: &mut Registry, view: Option<&EcsView>) {
    let Some(view) = view.filter(|v| v.current) else {
        return;
    };
    let status = IntGauges::default();
    let current = view.status.as_str();
    let others = (!ECS_STATUSES.contains(&current)).then_some(current);
    for s in ECS_STATUSES.into_iter().chain(others) {
        status
            .get_or_create(&vec![
                ("cluster", view.cluster.clone()),
                ("status", s.to_owned()),
            ])
            .set(i64::from(s == current));
    }
    r.register(
        "ecs_instance_status",
        "This container instance's status in ECS: 1 for the current one, 0 for the others",
        status,
    );
    r.register(
        "ecs_draining",
        "1 while this container instance is DRAINING in ECS",
        ConstGauge::new(i64::from(view.status == EcsStatus::Draining)),
    );
}

#[cfg(test)]
mod tests;
