//! One test per row of the policy table and per "never".

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::*;
use crate::config::Settings;
use crate::sample::{
    BuildCache, ContainerInfo, ContainerState, EcsStatus, EcsView, FsStats, ImageInfo, Inventory,
    KEEP_LABEL, VolumeSnapshot,
};

pub(super) const GB: u64 = 1_000_000_000;

pub(super) fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000)
}

pub(super) fn ago(secs: u64) -> SystemTime {
    now() - Duration::from_secs(secs)
}

/// A 100 GB filesystem with `used_pct` of bytes and `inode_pct` of 1M inodes used.
pub(super) fn stats(used_pct: f64, inode_pct: f64) -> FsStats {
    let total = 100 * GB;
    let used = (total as f64 * used_pct / 100.0) as u64;
    FsStats {
        total_bytes: total,
        free_bytes: total - used,
        avail_bytes: total - used,
        total_inodes: 1_000_000,
        free_inodes: 1_000_000 - (10_000.0 * inode_pct) as u64,
        device: 7,
    }
}

pub(super) fn snapshot(
    docker: FsStats,
    inventory: Option<Inventory>,
    ecs: Option<EcsView>,
) -> Snapshot {
    Snapshot {
        at: now(),
        volumes: vec![VolumeSnapshot {
            volume: Volume::Docker,
            path: PathBuf::from("/var/lib/docker"),
            stats: Some(docker),
            error: None,
        }],
        inventory: inventory.map(std::sync::Arc::new),
        reclaim_skip: Default::default(),
        writers: Default::default(),
        cluster: ecs.as_ref().map(|e| e.cluster.clone()),
        ecs,
        etcd: None,
    }
}

pub(super) fn image(id: &str, tag: Option<&str>, size: u64, last_used_ago: u64) -> ImageInfo {
    ImageInfo {
        id: id.into(),
        tags: tag.map(|t| vec![t.to_owned()]).unwrap_or_default(),
        digests: Vec::new(),
        size_bytes: size,
        created: ago(last_used_ago + 86_400),
        last_used: ago(last_used_ago),
        parent: None,
        labels: BTreeMap::new(),
    }
}

pub(super) fn container(
    id: &str,
    image: &str,
    state: ContainerState,
    finished_ago: u64,
) -> ContainerInfo {
    ContainerInfo {
        id: id.into(),
        name: format!("/{id}"),
        image_id: image.into(),
        state,
        created: ago(finished_ago + 600),
        finished_at: state.is_stopped().then(|| ago(finished_ago)),
        labels: BTreeMap::new(),
        size_rw_bytes: Some(GB),
        log_bytes: Some(0),
    }
}

pub(super) fn ecs(status: EcsStatus, ours: bool, active: u32, draining: u32) -> EcsView {
    EcsView {
        cluster: "prod".into(),
        container_instance_arn: "arn:aws:ecs:eu-west-1:1:container-instance/prod/abc".into(),
        status,
        drained_at: ours.then(|| "2026-11-26T04:00:00Z".into()),
        culprit: None,
        cluster_active: active,
        cluster_draining: draining,
        current: true,
    }
}

pub(super) fn settings() -> Settings {
    Settings::default()
}

pub(super) fn plan_for(snap: &Snapshot) -> Plan {
    let history = History::new(Duration::from_secs(300), Duration::from_secs(1));
    decide(snap, &history, &State::default(), &settings(), now())
}

fn ids(plan: &Plan) -> Vec<&str> {
    plan.reclaim.iter().map(|s| s.id.as_str()).collect()
}

/// A rich inventory: every rung has something, and every protection has a candidate.
fn inventory() -> Inventory {
    let mut keep_container = container(
        "c-keep",
        "img-kept-by-container",
        ContainerState::Exited,
        90_000,
    );
    keep_container
        .labels
        .insert(KEEP_LABEL.into(), "true".into());
    let mut keep_image = image("img-keep-label", Some("tools:keep"), 5 * GB, 99_000);
    keep_image.labels.insert(KEEP_LABEL.into(), "true".into());
    Inventory {
        generation: 1,
        images: vec![
            image("img-dangling-new", None, GB, 10),
            image("img-dangling-old", None, GB, 50_000),
            image("img-lru-2", Some("app:v2"), 2 * GB, 20_000),
            image("img-lru-1", Some("app:v1"), 2 * GB, 80_000),
            image("img-young", Some("app:v3"), 2 * GB, 60),
            image("img-running", Some("web:1"), 3 * GB, 90_000),
            image("img-stopped-recent", Some("job:1"), 3 * GB, 90_000),
            image(
                "img-agent",
                Some("amazon/amazon-ecs-agent:latest"),
                3 * GB,
                90_000,
            ),
            image("img-kept-by-container", Some("db:1"), 3 * GB, 90_000),
            keep_image,
        ],
        containers: vec![
            container("c-running", "img-running", ContainerState::Running, 0),
            container(
                "c-recent",
                "img-stopped-recent",
                ContainerState::Exited,
                600,
            ),
            container("c-old", "img-lru-1", ContainerState::Exited, 20_000),
            container("c-created", "img-young", ContainerState::Created, 0),
            keep_container,
        ],
        build_cache: Some(BuildCache {
            reclaimable_bytes: 4 * GB,
        }),
    }
}

#[test]
fn ok_level_plans_nothing() {
    let plan = plan_for(&snapshot(
        stats(50.0, 10.0),
        Some(inventory()),
        Some(ecs(EcsStatus::Active, false, 10, 0)),
    ));
    assert_eq!(plan.level, Level::Ok);
    assert!(!plan.reclaim_wanted);
    assert!(plan.reclaim.is_empty());
    assert_eq!(plan.ecs, EcsDecision::None);
}

#[test]
fn prune_level_climbs_the_ladder_in_order_with_every_protection() {
    // 99 % used: needs far more than the inventory has, so every eligible item is listed.
    let plan = plan_for(&snapshot(stats(85.0, 10.0), Some(inventory()), None));
    assert_eq!(plan.level, Level::Prune);
    assert!(plan.reclaim_wanted);
    assert_eq!(
        ids(&plan),
        vec![
            "img-dangling-old",
            "img-dangling-new",
            "c-old",
            "img-lru-1", // freed by removing c-old, and the least recently used
            "img-lru-2",
            "build-cache",
        ]
    );
    let rungs: Vec<Rung> = plan.reclaim.iter().map(|s| s.rung).collect();
    assert!(
        rungs.windows(2).all(|w| w[0] <= w[1]),
        "ladder order: {rungs:?}"
    );
}

#[test]
fn prune_stops_once_target_is_reached() {
    // 72 % used, target 70 %: 2 GB needed; the two dangling images (1 GB each) suffice.
    let plan = plan_for(&snapshot(stats(72.0, 1.0), Some(inventory()), None));
    assert_eq!(plan.level, Level::Ok, "72% is below prune_start");
    let plan = plan_for(&snapshot(stats(81.0, 1.0), Some(inventory()), None));
    assert_eq!(plan.reclaim_needed_bytes, Some(11 * GB));
    let total: u64 = plan.reclaim.iter().map(|s| s.bytes).sum();
    assert!(total >= 11 * GB);
    // Without its last step the plan would fall short: it stops as soon as it is enough.
    assert!(total - plan.reclaim.last().map_or(0, |s| s.bytes) < 11 * GB);
    assert_eq!(plan.reclaim.last().map(|s| s.rung), Some(Rung::BuildCache));
}

#[test]
fn never_removes_image_used_by_running_or_recently_stopped_container() {
    // 94 %: drain level, the highest at which minimum ages still hold.
    let plan = plan_for(&snapshot(stats(94.0, 1.0), Some(inventory()), None));
    for never in ["img-running", "img-stopped-recent", "c-running", "c-recent"] {
        assert!(
            !ids(&plan).contains(&never),
            "{never} planned: {:?}",
            ids(&plan)
        );
    }
}

#[test]
fn never_removes_protected_or_keep_labelled_items_even_when_critical() {
    let plan = plan_for(&snapshot(stats(99.0, 1.0), Some(inventory()), None));
    assert_eq!(plan.level, Level::Critical);
    for never in [
        "img-agent",
        "img-keep-label",
        "img-kept-by-container",
        "c-keep",
        "c-created",
        "img-young",
    ] {
        if never == "img-young" {
            continue; // in use by the created container, checked below
        }
        assert!(
            !ids(&plan).contains(&never),
            "{never} planned: {:?}",
            ids(&plan)
        );
    }
    assert!(
        !ids(&plan).contains(&"img-young"),
        "image of a created container is in use"
    );
}

#[test]
fn critical_ignores_minimum_ages_but_not_protections() {
    let mut inv = inventory();
    inv.containers.retain(|c| c.id != "c-created");
    let prune = plan_for(&snapshot(stats(85.0, 1.0), Some(inv.clone()), None));
    assert!(
        !ids(&prune).contains(&"img-young"),
        "young image kept at prune"
    );
    assert!(
        !ids(&prune).contains(&"c-recent"),
        "recently stopped container kept at prune"
    );
    let critical = plan_for(&snapshot(stats(96.0, 1.0), Some(inv), None));
    assert!(ids(&critical).contains(&"img-young"));
    assert!(ids(&critical).contains(&"c-recent"));
    assert!(
        ids(&critical).contains(&"img-stopped-recent"),
        "freed once c-recent goes"
    );
}

#[test]
fn parent_images_are_never_planned() {
    let mut inv = inventory();
    let mut child = image("img-child", Some("child:1"), GB, 90_000);
    child.parent = Some("img-dangling-old".into());
    inv.images.push(child);
    let plan = plan_for(&snapshot(stats(99.0, 1.0), Some(inv), None));
    assert!(!ids(&plan).contains(&"img-dangling-old"));
}

#[test]
fn multi_tagged_image_is_one_step() {
    let mut inv = Inventory::default();
    let mut img = image("img-multi", Some("a:1"), GB, 90_000);
    img.tags.push("b:1".into());
    inv.images.push(img);
    let plan = plan_for(&snapshot(stats(85.0, 1.0), Some(inv), None));
    assert_eq!(ids(&plan), vec!["img-multi", "build-cache"]);
    assert_eq!(plan.reclaim[0].name, "a:1,b:1");
}

#[test]
fn build_cache_is_skipped_when_disabled() {
    let mut s = settings();
    s.docker.prune_build_cache = false;
    let history = History::new(Duration::from_secs(300), Duration::from_secs(1));
    let plan = decide(
        &snapshot(stats(99.0, 1.0), Some(inventory()), None),
        &history,
        &State::default(),
        &s,
        now(),
    );
    assert!(!ids(&plan).contains(&"build-cache"));
}

#[test]
fn build_cache_of_unknown_size_is_the_last_rung_with_no_estimate() {
    let mut inv = inventory();
    inv.build_cache = None;
    let plan = plan_for(&snapshot(stats(99.0, 1.0), Some(inv.clone()), None));
    let last = plan.reclaim.last().expect("steps");
    assert_eq!((last.rung, last.bytes), (Rung::BuildCache, 0));
    inv.build_cache = Some(BuildCache {
        reclaimable_bytes: 0,
    });
    let plan = plan_for(&snapshot(stats(99.0, 1.0), Some(inv), None));
    assert!(
        !ids(&plan).contains(&"build-cache"),
        "known to be empty: skipped"
    );
}

#[test]
fn reclaim_without_inventory_is_a_finding_not_a_plan() {
    let plan = plan_for(&snapshot(stats(85.0, 1.0), None, None));
    assert!(plan.reclaim_wanted);
    assert!(plan.reclaim.is_empty());
    assert!(
        plan.findings
            .iter()
            .any(|f| f.message.contains("have not been read"))
    );
}

#[test]
fn inodes_drive_the_level_and_lift_the_byte_goal() {
    let plan = plan_for(&snapshot(stats(10.0, 92.0), Some(inventory()), None));
    assert_eq!(plan.level, Level::Drain);
    assert_eq!(plan.volumes[0].driven_by, Driver::Inodes);
    assert_eq!(plan.reclaim_needed_bytes, None);
    assert!(
        ids(&plan).contains(&"build-cache"),
        "every eligible rung when inodes drive"
    );
}

#[test]
fn etcd_on_the_docker_filesystem_is_a_finding() {
    let mut snap = snapshot(stats(50.0, 1.0), None, None);
    snap.volumes.push(VolumeSnapshot {
        volume: Volume::Etcd,
        path: PathBuf::from("/var/lib/etcd"),
        stats: Some(stats(50.0, 1.0)),
        error: None,
    });
    let plan = plan_for(&snap);
    assert!(
        plan.findings
            .iter()
            .any(|f| f.message.contains("same filesystem"))
    );
}

#[test]
fn unreadable_volume_is_a_finding_and_does_not_set_the_level() {
    let mut snap = snapshot(stats(50.0, 1.0), None, None);
    snap.volumes[0].stats = None;
    snap.volumes[0].error = Some("/var/lib/docker does not exist".into());
    let plan = plan_for(&snap);
    assert!(plan.has_unreadable_volume());
    assert_eq!(plan.level, Level::Ok);
    assert!(
        plan.findings
            .iter()
            .any(|f| f.message.contains("does not exist"))
    );
}

#[test]
fn levels_are_remembered_for_hysteresis() {
    let s = settings();
    let history = History::new(Duration::from_secs(300), Duration::from_secs(1));
    let first = decide(
        &snapshot(stats(81.0, 1.0), None, None),
        &history,
        &State::default(),
        &s,
        now(),
    );
    let second = decide(
        &snapshot(stats(79.0, 1.0), None, None),
        &history,
        &first.next,
        &s,
        now(),
    );
    assert_eq!(second.level, Level::Prune);
}

#[test]
fn a_watched_filesystem_at_drain_asks_for_a_drain_and_reclaims_nothing() {
    let mut snap = snapshot(stats(50.0, 1.0), Some(inventory()), None);
    let ecs = Volume::watch("ecs");
    snap.volumes.push(VolumeSnapshot {
        volume: ecs,
        path: PathBuf::from("/var/lib/ecs"),
        stats: Some(FsStats {
            device: 9,
            ..stats(91.0, 1.0)
        }),
        error: None,
    });
    let plan = plan_for(&snap);
    assert_eq!(plan.level, Level::Drain);
    assert_eq!(plan.ecs_intent, EcsIntent::Drain { critical: false });
    assert_eq!(plan.ecs_volume, Some(ecs));
    assert!(plan.reclaim.is_empty(), "Docker's volume is at 50 %");
    // Etcd's volume never drains the instance.
    let mut snap = snapshot(stats(50.0, 1.0), None, None);
    snap.volumes.push(VolumeSnapshot {
        volume: Volume::Etcd,
        path: PathBuf::from("/var/lib/etcd"),
        stats: Some(FsStats {
            device: 9,
            ..stats(91.0, 1.0)
        }),
        error: None,
    });
    let plan = plan_for(&snap);
    assert_eq!(plan.ecs_intent, EcsIntent::Steady);
    assert_eq!(plan.ecs_volume, Some(Volume::Docker));
}
