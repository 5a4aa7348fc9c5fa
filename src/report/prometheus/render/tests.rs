use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::config::Settings;
use crate::policy::{State, decide};
use crate::sample::{FsStats, History, Snapshot, VolumeSnapshot};

const GIB: u64 = 1 << 30;

fn at() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

/// A plan for Docker's volume at `used` of 10 GiB (and etcd's unreadable when asked), as
/// the loop decides it.
fn plan(used: u64, etcd_unreadable: bool) -> Plan {
    let docker = FsStats {
        total_bytes: 10 * GIB,
        free_bytes: 10 * GIB - used,
        avail_bytes: 10 * GIB - used - GIB / 2,
        total_inodes: 1000,
        free_inodes: 900,
        device: 7,
    };
    let mut volumes = vec![VolumeSnapshot {
        volume: Volume::Docker,
        path: PathBuf::from("/var/lib/docker"),
        stats: Some(docker),
        error: None,
    }];
    if etcd_unreadable {
        volumes.push(VolumeSnapshot {
            volume: Volume::Etcd,
            path: PathBuf::from("/var/lib/etcd"),
            stats: None,
            error: Some("/var/lib/etcd does not exist".into()),
        });
    }
    let snapshot = Snapshot {
        at: at(),
        volumes,
        inventory: Some(Arc::default()),
        ..Snapshot::default()
    };
    let history = History::new(Duration::from_secs(300), Duration::from_secs(1));
    decide(
        &snapshot,
        &history,
        &State::default(),
        &Settings::default(),
        at(),
    )
}

fn mounts() -> BTreeMap<Volume, MountInfo> {
    BTreeMap::from([(
        Volume::Docker,
        MountInfo {
            mount_point: PathBuf::from("/var/lib/docker"),
            device: "/dev/nvme1n1".into(),
            fs_type: "xfs".into(),
        },
    )])
}

fn ecs(status: EcsStatus, current: bool) -> EcsView {
    EcsView {
        cluster: "prod".into(),
        container_instance_arn: "arn:aws:ecs:eu-west-1:123456789012:container-instance/prod/1"
            .into(),
        status,
        drained_at: None,
        culprit: None,
        cluster_active: 3,
        cluster_draining: 0,
        current,
    }
}

fn text(plan: Option<&Plan>, ecs: Option<&EcsView>, totals: &Totals) -> String {
    let mounts = mounts();
    render(
        &Scrape {
            plan,
            mounts: &mounts,
            ecs,
            totals,
            drains_delayed: 2,
        },
        Format::Text,
    )
}

/// The text as Prometheus reads it (a real parser, not string matching).
fn samples(text: &str) -> Vec<prometheus_parse::Sample> {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("the text format parses")
        .samples
}

fn value(v: &prometheus_parse::Value) -> f64 {
    match v {
        prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Untyped(v) => *v,
        other => panic!("not a single value: {other:?}"),
    }
}

/// The value of the one sample named `name` whose labels include `labels`.
fn find(samples: &[prometheus_parse::Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<f64> = samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| value(&s.value))
        .collect();
    assert!(
        found.len() <= 1,
        "{name} {labels:?} is ambiguous: {found:?}"
    );
    found.first().copied()
}

#[test]
fn volumes_carry_node_exporters_labels_and_their_byte_and_inode_counts() {
    let p = plan(6 * GIB, false);
    let s = samples(&text(Some(&p), None, &Totals::default()));
    let labels = [
        ("device", "/dev/nvme1n1"),
        ("mountpoint", "/var/lib/docker"),
        ("fstype", "xfs"),
        ("volume", "docker"),
    ];
    for (name, want) in [
        ("diskguard_filesystem_size_bytes", 10 * GIB),
        ("diskguard_filesystem_used_bytes", 6 * GIB),
        ("diskguard_filesystem_free_bytes", 4 * GIB),
        ("diskguard_filesystem_avail_bytes", 4 * GIB - GIB / 2),
        ("diskguard_filesystem_files", 1000),
        ("diskguard_filesystem_files_free", 900),
    ] {
        assert_eq!(find(&s, name, &labels), Some(want as f64), "{name}");
    }
    assert!(
        find(&s, "diskguard_last_sample_timestamp_seconds", &[]) == Some(1_800_000_000.0),
        "the loop's last sample time"
    );
}

#[test]
fn a_volume_missing_from_the_mount_table_keeps_its_path_as_mountpoint() {
    let p = plan(GIB, false);
    let rendered = render(
        &Scrape {
            plan: Some(&p),
            mounts: &BTreeMap::new(),
            ecs: None,
            totals: &Totals::default(),
            drains_delayed: 0,
        },
        Format::Text,
    );
    let s = samples(&rendered);
    let size = s
        .iter()
        .find(|x| x.metric == "diskguard_filesystem_size_bytes")
        .expect("size");
    assert_eq!(size.labels.get("mountpoint"), Some("/var/lib/docker"));
    assert_eq!(size.labels.get("device"), Some(""));
}

#[test]
fn the_level_is_one_series_per_level_and_only_the_current_one_is_1() {
    let mut p = plan(6 * GIB, false);
    p.volumes[0].level = Level::Drain;
    let s = samples(&text(Some(&p), None, &Totals::default()));
    for (level, want) in [
        ("ok", 0.0),
        ("prune", 0.0),
        ("drain", 1.0),
        ("critical", 0.0),
    ] {
        assert_eq!(
            find(
                &s,
                "diskguard_volume_level",
                &[("volume", "docker"), ("level", level), ("fstype", "xfs")]
            ),
            Some(want),
            "{level}"
        );
    }
}

#[test]
fn time_to_full_is_published_only_while_the_volume_is_filling() {
    let mut p = plan(6 * GIB, false);
    p.volumes[0].time_to_full = None;
    let s = samples(&text(Some(&p), None, &Totals::default()));
    assert_eq!(find(&s, "diskguard_volume_time_to_full_seconds", &[]), None);
    p.volumes[0].time_to_full = Some(Duration::from_millis(90_500));
    let s = samples(&text(Some(&p), None, &Totals::default()));
    assert_eq!(
        find(
            &s,
            "diskguard_volume_time_to_full_seconds",
            &[("volume", "docker")]
        ),
        Some(90.5)
    );
}

#[test]
fn an_unreadable_volume_and_a_loop_that_has_not_sampled_yet_publish_no_volume_series() {
    let p = plan(GIB, true);
    let s = samples(&text(Some(&p), None, &Totals::default()));
    assert!(s.iter().all(|x| x.labels.get("volume") != Some("etcd")));
    let before = samples(&text(None, None, &Totals::default()));
    assert!(
        before
            .iter()
            .all(|x| !x.metric.contains("filesystem") && !x.metric.contains("volume")),
        "{before:?}"
    );
    assert_eq!(
        find(&before, "diskguard_last_sample_timestamp_seconds", &[]),
        None
    );
    assert_eq!(
        find(&before, "diskguard_reclaimed_bytes_total", &[]),
        Some(0.0)
    );
}

#[test]
fn counters_end_in_total_and_evictions_are_counted_by_task_family() {
    let totals = Totals {
        reclaimed_bytes: 5 * GIB,
        reclaim_errors: 3,
        drains_suppressed: 1,
        escalations: 1,
        evictions: BTreeMap::from([("logger".into(), 4), ("web".into(), 1)]),
    };
    let s = samples(&text(None, None, &totals));
    assert_eq!(
        find(&s, "diskguard_reclaimed_bytes_total", &[]),
        Some((5 * GIB) as f64)
    );
    assert_eq!(find(&s, "diskguard_reclaim_errors_total", &[]), Some(3.0));
    assert_eq!(
        find(&s, "diskguard_drains_suppressed_total", &[]),
        Some(1.0)
    );
    assert_eq!(find(&s, "diskguard_drains_delayed_total", &[]), Some(2.0));
    assert_eq!(
        find(
            &s,
            "diskguard_evictions_total",
            &[("task_family", "logger")]
        ),
        Some(4.0)
    );
    assert_eq!(
        find(&s, "diskguard_evictions_total", &[("task_family", "web")]),
        Some(1.0)
    );
    for x in s
        .iter()
        .filter(|x| matches!(x.value, prometheus_parse::Value::Counter(_)))
    {
        assert!(x.metric.ends_with("_total"), "{}", x.metric);
    }
}

#[test]
fn the_ecs_status_is_published_only_while_it_is_known() {
    let t = Totals::default();
    let draining = ecs(EcsStatus::Draining, true);
    let s = samples(&text(None, Some(&draining), &t));
    assert_eq!(find(&s, "diskguard_ecs_draining", &[]), Some(1.0));
    assert_eq!(
        find(
            &s,
            "diskguard_ecs_instance_status",
            &[("cluster", "prod"), ("status", "DRAINING")]
        ),
        Some(1.0)
    );
    assert_eq!(
        find(&s, "diskguard_ecs_instance_status", &[("status", "ACTIVE")]),
        Some(0.0)
    );

    let active = ecs(EcsStatus::Active, true);
    let s = samples(&text(None, Some(&active), &t));
    assert_eq!(find(&s, "diskguard_ecs_draining", &[]), Some(0.0));

    // Through an ECS outage, or in local mode: nothing rather than the last guess.
    let stale = ecs(EcsStatus::Draining, false);
    for view in [Some(&stale), None] {
        let s = samples(&text(None, view, &t));
        assert!(
            s.iter().all(|x| !x.metric.starts_with("diskguard_ecs")),
            "{s:?}"
        );
    }
}

#[test]
fn an_ecs_status_outside_the_documented_ones_gets_a_series_of_its_own() {
    let odd = ecs(EcsStatus::Other("HIBERNATING".into()), true);
    let s = samples(&text(None, Some(&odd), &Totals::default()));
    assert_eq!(
        find(
            &s,
            "diskguard_ecs_instance_status",
            &[("status", "HIBERNATING")]
        ),
        Some(1.0)
    );
    let ones = s
        .iter()
        .filter(|x| x.metric == "diskguard_ecs_instance_status" && value(&x.value) == 1.0)
        .count();
    assert_eq!(ones, 1);
}

#[test]
fn every_series_is_diskguards_own_and_finite() {
    let mut p = plan(9 * GIB, false);
    p.volumes[0].time_to_full = Some(Duration::MAX);
    let view = ecs(EcsStatus::Active, true);
    let totals = Totals {
        evictions: BTreeMap::from([("web".into(), 1)]),
        ..Totals::default()
    };
    for format in [Format::Text, Format::OpenMetrics] {
        let mounts = mounts();
        let out = render(
            &Scrape {
                plan: Some(&p),
                mounts: &mounts,
                ecs: Some(&view),
                totals: &totals,
                drains_delayed: 0,
            },
            format,
        );
        for line in out.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("diskguard_"), "{line}");
            let number = line.rsplit(' ').next().unwrap_or_default();
            assert!(
                number.parse::<f64>().is_ok_and(f64::is_finite),
                "{format:?}: {line}"
            );
        }
    }
}

#[test]
fn openmetrics_declares_units_and_ends_with_eof() {
    let p = plan(GIB, false);
    let mounts = mounts();
    let out = render(
        &Scrape {
            plan: Some(&p),
            mounts: &mounts,
            ecs: None,
            totals: &Totals::default(),
            drains_delayed: 0,
        },
        Format::OpenMetrics,
    );
    assert!(out.ends_with("# EOF\n"), "{out}");
    assert!(out.contains("# UNIT diskguard_filesystem_size_bytes bytes\n"));
    assert!(out.contains("# TYPE diskguard_reclaimed_bytes counter\n"));
    assert!(out.contains("\ndiskguard_reclaimed_bytes_total 0\n"));
    assert!(out.contains("# TYPE diskguard_build info\n"));
}

#[test]
fn prometheus_gets_openmetrics_and_everyone_else_the_text_format() {
    // Prometheus 2.x's scrape Accept header.
    let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
    assert_eq!(Format::negotiate(None), Format::Text);
    assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
    assert_eq!(Format::negotiate(Some("text/plain")), Format::Text);
    assert_eq!(
        Format::negotiate(Some("application/openmetrics-text; q=0.2, text/plain")),
        Format::Text
    );
    assert_eq!(
        Format::negotiate(Some("application/openmetrics-text;q=0")),
        Format::Text
    );
    assert!(
        Format::Text
            .content_type()
            .starts_with("text/plain; version=0.0.4")
    );
    assert!(
        Format::OpenMetrics
            .content_type()
            .starts_with("application/openmetrics-text; version=1.0.0")
    );
}
