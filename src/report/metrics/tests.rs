use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use super::*;
use crate::config::Settings;
use crate::policy::{State, decide};
use crate::sample::{EcsStatus, EcsView, EtcdView, FsStats, History, Snapshot, VolumeSnapshot};

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
}

fn snapshot(t: SystemTime, used_pct: f64, etcd_device: u64) -> Snapshot {
    let stats = |pct: f64, device| FsStats {
        total_bytes: 1000,
        free_bytes: 1000 - (pct * 10.0) as u64,
        avail_bytes: 1000 - (pct * 10.0) as u64,
        total_inodes: 100,
        free_inodes: 90,
        device,
    };
    Snapshot {
        at: t,
        volumes: vec![
            VolumeSnapshot {
                volume: Volume::Docker,
                path: PathBuf::from("/d"),
                stats: Some(stats(used_pct, 1)),
                error: None,
            },
            VolumeSnapshot {
                volume: Volume::Etcd,
                path: PathBuf::from("/e"),
                stats: Some(stats(10.0, etcd_device)),
                error: None,
            },
        ],
        inventory: Some(Arc::default()),
        reclaim_skip: Default::default(),
        writers: Default::default(),
        cluster: Some("prod".into()),
        ecs: Some(EcsView {
            cluster: "prod".into(),
            container_instance_arn: "arn".into(),
            status: EcsStatus::Active,
            drained_at: None,
            culprit: None,
            cluster_active: 3,
            cluster_draining: 0,
            current: true,
        }),
        etcd: Some(EtcdView {
            db_bytes: Some(50),
            in_use_bytes: Some(20),
            quota_bytes: Some(100),
            ..EtcdView::failed("http://127.0.0.1:2379", true, String::new())
        })
        .map(|v| EtcdView { error: None, ..v }),
    }
}

fn tick(
    agg: &mut Aggregator,
    t: SystemTime,
    pct: f64,
    etcd_device: u64,
    totals: Totals,
) -> Option<Batch> {
    let snap = snapshot(t, pct, etcd_device);
    let history = History::new(Duration::from_secs(300), Duration::from_secs(1));
    let plan = decide(&snap, &history, &State::default(), &Settings::default(), t);
    agg.observe(t, &plan, &snap, totals, Extras::default())
}

fn find<'a>(b: &'a Batch, name: &str, scope: Scope) -> &'a Datum {
    b.datums
        .iter()
        .find(|d| d.name == name && d.scope == scope)
        .unwrap_or_else(|| panic!("{name} {scope:?} in {b:#?}"))
}

#[test]
fn an_interval_of_samples_becomes_one_statistic_set_with_the_interval_timestamp() {
    let mut agg = Aggregator::new(Duration::from_secs(60), at(0), Totals::default(), &[]);
    let mut closed = None;
    for (s, pct) in [(0, 50.0), (1, 52.0), (2, 48.0), (59, 51.0), (60, 90.0)] {
        closed = tick(&mut agg, at(s), pct, 1, Totals::default()).or(closed);
    }
    let b = closed.expect("the minute closed at 60 s");
    assert_eq!(b.timestamp, at(0));
    let Value::Stats(s) = find(&b, "DiskUsedPercent", Scope::Volume(Volume::Docker)).value else {
        panic!("stats")
    };
    assert_eq!((s.count, s.min, s.max), (4.0, 48.0, 52.0));
    assert!((s.sum - 201.0).abs() < 1e-9);
    // The 90 % sample belongs to the next minute.
    let next = agg.close(at(120), Totals::default());
    let Value::Stats(s) = find(&next, "DiskUsedPercent", Scope::Volume(Volume::Docker)).value
    else {
        panic!("stats")
    };
    assert_eq!((s.count, s.max), (1.0, 90.0));
    assert_eq!(next.timestamp, at(60));
}

#[test]
fn counters_are_sent_as_the_interval_sums() {
    let t0 = Totals {
        reclaimed_bytes: 1000,
        reclaim_errors: 2,
        drains_suppressed: 0,
        escalations: 0,
        evictions: Default::default(),
    };
    let mut agg = Aggregator::new(Duration::from_secs(60), at(0), t0.clone(), &[]);
    tick(&mut agg, at(1), 50.0, 1, t0);
    let t1 = Totals {
        reclaimed_bytes: 5000,
        reclaim_errors: 3,
        drains_suppressed: 1,
        escalations: 1,
        evictions: Default::default(),
    };
    let b = agg.close(at(61), t1.clone());
    assert_eq!(
        find(&b, "ReclaimedBytes", Scope::Instance).value,
        Value::Single(4000.0)
    );
    assert_eq!(
        find(&b, "ReclaimErrors", Scope::Instance).value,
        Value::Single(1.0)
    );
    assert_eq!(
        find(&b, "DrainSuppressed", Scope::Instance).value,
        Value::Single(1.0)
    );
    assert_eq!(
        find(&b, "Draining", Scope::Cluster).value,
        Value::Single(0.0)
    );
    assert_eq!(
        find(&b, "Escalations", Scope::Instance).value,
        Value::Single(1.0)
    );
    let b = agg.close(at(121), t1);
    assert_eq!(
        find(&b, "ReclaimedBytes", Scope::Instance).value,
        Value::Single(0.0)
    );
    assert!(
        b.datums.iter().all(|d| d.name != "Escalations"),
        "not sent in an interval without one"
    );
}

#[test]
fn the_default_set_is_at_most_twelve_billed_metrics_per_instance() {
    let mut agg = Aggregator::new(Duration::from_secs(60), at(0), Totals::default(), &[]);
    let mut history = History::new(Duration::from_secs(300), Duration::from_secs(1));
    // A rising disk, so TimeToFullSeconds is there too; etcd on its own volume.
    for s in 0..40 {
        let snap = snapshot(at(s), 50.0 + s as f64 * 0.1, 2);
        history.record(&snap);
        let plan = decide(
            &snap,
            &history,
            &State::default(),
            &Settings::default(),
            at(s),
        );
        agg.observe(at(s), &plan, &snap, Totals::default(), Extras::default());
    }
    let b = agg.close(at(61), Totals::default());
    let per_instance: BTreeSet<(&str, Scope)> = b
        .datums
        .iter()
        .filter(|d| d.scope != Scope::Cluster)
        .map(|d| (d.name, d.scope))
        .collect();
    assert!(per_instance.contains(&("TimeToFullSeconds", Scope::Volume(Volume::Docker))));
    assert_eq!(per_instance.len(), 12, "{per_instance:#?}");
}

#[test]
fn etcd_on_dockers_filesystem_is_not_published_twice() {
    let mut agg = Aggregator::new(Duration::from_secs(60), at(0), Totals::default(), &[]);
    tick(&mut agg, at(1), 50.0, 1, Totals::default());
    let b = agg.close(at(61), Totals::default());
    assert!(
        b.datums
            .iter()
            .all(|d| d.scope != Scope::Volume(Volume::Etcd))
    );
}

#[test]
fn extra_metrics_only_when_listed() {
    let extras = Extras {
        images_bytes: Some(7.0),
        image_count: Some(3.0),
        container_count: Some(2.0),
        top_writer_bytes: Some(9.0),
    };
    let snap = snapshot(at(1), 50.0, 1);
    let history = History::new(Duration::from_secs(300), Duration::from_secs(1));
    let plan = decide(
        &snap,
        &history,
        &State::default(),
        &Settings::default(),
        at(1),
    );
    let mut plain = Aggregator::new(Duration::from_secs(60), at(0), Totals::default(), &[]);
    plain.observe(at(1), &plan, &snap, Totals::default(), extras);
    assert!(
        plain
            .close(at(61), Totals::default())
            .datums
            .iter()
            .all(|d| d.name != "ImageCount")
    );
    let mut extra = Aggregator::new(
        Duration::from_secs(60),
        at(0),
        Totals::default(),
        &["ImageCount".into(), "EtcdDbBytes".into()],
    );
    extra.observe(at(1), &plan, &snap, Totals::default(), extras);
    let b = extra.close(at(61), Totals::default());
    assert!(b.datums.iter().any(|d| d.name == "ImageCount"));
    assert!(b.datums.iter().any(|d| d.name == "EtcdDbBytes"));
    assert!(b.datums.iter().all(|d| d.name != "ImagesBytes"));
}

#[test]
fn cluster_name_comes_from_the_identity_even_when_ecs_cannot_be_read() {
    let mut agg = Aggregator::new(Duration::from_secs(60), at(0), Totals::default(), &[]);
    let mut snap = snapshot(at(1), 50.0, 1);
    // The ECS agent named the cluster, but DescribeContainerInstances has never answered.
    snap.ecs = None;
    let history = History::new(Duration::from_secs(300), Duration::from_secs(1));
    let plan = decide(
        &snap,
        &history,
        &State::default(),
        &Settings::default(),
        at(1),
    );
    assert_eq!(
        agg.observe(at(1), &plan, &snap, Totals::default(), Extras::default()),
        None
    );
    let b = agg.close(at(60), Totals::default());
    assert_eq!(b.cluster.as_deref(), Some("prod"));
    assert!(
        b.datums.iter().all(|d| d.name != "Draining"),
        "no Draining without a read of the instance"
    );
}

#[test]
fn evictions_go_out_per_task_family_only_for_families_that_caused_one() {
    let mut agg = Aggregator::new(Duration::from_secs(60), at(0), Totals::default(), &[]);
    tick(&mut agg, at(1), 50.0, 1, Totals::default());
    let mut t = Totals::default();
    t.evictions.insert("bad-task".into(), 2);
    t.evictions.insert("web".into(), 1);
    let b = agg.close(at(61), t.clone());
    assert_eq!(
        b.evictions,
        [("bad-task".to_owned(), 2), ("web".to_owned(), 1)]
    );
    t.evictions.insert("web".into(), 2);
    let b = agg.close(at(121), t);
    assert_eq!(
        b.evictions,
        [("web".to_owned(), 1)],
        "only what happened in the interval"
    );
}

#[test]
fn draining_is_not_published_while_the_instance_cannot_be_read() {
    // Read once (DRAINING), then ECS went away or the instance was deregistered: the last
    // value would be a guess, so nothing is published.
    let mut agg = Aggregator::new(Duration::from_secs(60), at(0), Totals::default(), &[]);
    let mut snap = snapshot(at(1), 50.0, 1);
    if let Some(ecs) = snap.ecs.as_mut() {
        ecs.status = EcsStatus::Draining;
        ecs.current = false;
    }
    let history = History::new(Duration::from_secs(300), Duration::from_secs(1));
    let plan = decide(
        &snap,
        &history,
        &State::default(),
        &Settings::default(),
        at(1),
    );
    agg.observe(at(1), &plan, &snap, Totals::default(), Extras::default());
    let b = agg.close(at(60), Totals::default());
    assert!(
        b.datums.iter().all(|d| d.name != "Draining"),
        "no Draining from a view that is no longer current"
    );
}
