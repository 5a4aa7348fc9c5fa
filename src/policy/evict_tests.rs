//! The escalation as a table: a slow filler drains early and is never evicted; a fast one
//! is evicted, and the drain waits to see whether that was enough; critical drains past
//! the budget; some containers are never stopped.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::tests::{GB, ecs, image, now, snapshot, stats};
use super::*;
use crate::config::Settings;
use crate::sample::{
    ContainerWrites, ECS_CONTAINER_LABEL, EcsStatus, Inventory, KEEP_LABEL, TASK_ARN_LABEL,
    TASK_FAMILY_LABEL,
};

const MB: f64 = 1_000_000.0;

/// History of the Docker volume rising `pct_per_sec` up to `to_pct` now, sampled every
/// `step_ms` for `secs` seconds.
fn history(to_pct: f64, pct_per_sec: f64, secs: u64, step_ms: u64) -> History {
    let mut h = History::new(Duration::from_secs(300), Duration::from_millis(step_ms));
    let steps = secs * 1000 / step_ms;
    for i in 0..=steps {
        let ago_ms = (steps - i) * step_ms;
        let pct = to_pct - pct_per_sec * ago_ms as f64 / 1000.0;
        let mut snap = snapshot(stats(pct, 1.0), None, None);
        snap.at = now() - Duration::from_millis(ago_ms);
        h.record(&snap);
    }
    h
}

fn writer(id: &str, mb_per_s: f64, family: Option<&str>) -> ContainerWrites {
    let mut labels = BTreeMap::new();
    if let Some(f) = family {
        labels.insert(TASK_FAMILY_LABEL.to_owned(), f.to_owned());
        labels.insert(
            TASK_ARN_LABEL.to_owned(),
            format!("arn:aws:ecs:us-east-1:1:task/prod/{id}"),
        );
    }
    ContainerWrites {
        id: id.into(),
        name: id.into(),
        image_id: format!("img-{id}"),
        labels,
        bytes_per_second: mb_per_s * MB,
        peak_bytes_per_second: mb_per_s * MB,
        written_bytes: (mb_per_s * MB * 10.0) as u64,
    }
}

/// A 100 GB volume at `pct` filling at `pct_per_sec` for the last minute, with writers.
fn scene(pct: f64, pct_per_sec: f64, writers: Vec<ContainerWrites>) -> (Snapshot, History) {
    let inventory = Inventory {
        generation: 1,
        images: writers
            .iter()
            .map(|w| image(&w.image_id, Some(&format!("{}:v1", w.name)), GB, 60))
            .collect(),
        containers: Vec::new(),
        build_cache: Some(crate::sample::BuildCache {
            reclaimable_bytes: 0,
        }),
    };
    let mut snap = snapshot(
        stats(pct, 1.0),
        Some(inventory),
        Some(ecs(EcsStatus::Active, false, 10, 0)),
    );
    snap.writers = std::sync::Arc::new(writers);
    (snap, history(pct, pct_per_sec, 60, 100))
}

fn decide_at(snap: &Snapshot, h: &History, state: &State, s: &Settings, at: SystemTime) -> Plan {
    decide(snap, h, state, s, at)
}

fn evicted(plan: &Plan) -> Option<&Eviction> {
    match &plan.evict {
        EvictDecision::Evict(e) => Some(e),
        _ => None,
    }
}

#[test]
fn a_slow_filler_drains_early_and_is_never_evicted() {
    // 1.2 GB a minute at 85 % of 100 GB: full in 12½ minutes — inside drain_lead, far outside
    // evict.lead.
    let (snap, h) = scene(
        85.0,
        1.2 / 60.0,
        vec![writer("logger", 20.0, Some("batch"))],
    );
    let plan = decide_at(&snap, &h, &State::default(), &Settings::default(), now());
    assert_eq!(plan.evict, EvictDecision::None);
    assert!(
        matches!(plan.ecs, EcsDecision::Drain { .. }),
        "{:?}",
        plan.ecs
    );
    assert_eq!(
        plan.culprit.as_deref(),
        Some("batch"),
        "the drain names the writer"
    );
}

#[test]
fn a_fast_filler_is_evicted_and_the_drain_waits_for_it() {
    // 1 %/s = 1 GB/s at 82 %: full in 18 s — sooner than any drain helps.
    let s = Settings::default();
    let (snap, h) = scene(
        82.0,
        1.0,
        vec![
            writer("bad", 1000.0, Some("bad-task")),
            writer("calm", 1.0, Some("web")),
        ],
    );
    let plan = decide_at(&snap, &h, &State::default(), &s, now());
    let e = evicted(&plan).expect("evicted");
    assert_eq!(e.container_id, "bad");
    assert_eq!(e.task_family.as_deref(), Some("bad-task"));
    assert!(e.task_arn.is_some());
    assert!(!e.kill, "18 s to full: a graceful stop still fits");
    assert_eq!(plan.culprit.as_deref(), Some("bad-task"));
    assert_eq!(plan.ecs, EcsDecision::None, "the eviction may be enough");
    assert_eq!(plan.next.eviction.as_ref().map(|(at, _)| *at), Some(now()));

    // Five seconds later the disk still reads 90 %: the drain waits out the settling,
    // and no second container is stopped.
    let (snap, h) = scene(90.0, 0.0, vec![writer("calm", 1.0, Some("web"))]);
    let later = now() + Duration::from_secs(5);
    let plan = decide_at(&snap, &h, &plan.next, &s, later);
    assert_eq!(plan.evict, EvictDecision::None);
    assert_eq!(plan.ecs, EcsDecision::None);
    // Once settled, a disk that sits at `drain` drains.
    let plan = decide_at(&snap, &h, &plan.next, &s, now() + EVICT_SETTLE);
    assert!(
        matches!(plan.ecs, EcsDecision::Drain { .. }),
        "{:?}",
        plan.ecs
    );
}

#[test]
fn sooner_to_full_than_the_stop_grace_is_killed() {
    // 5 %/s at 80 %: full in 4 s.
    let (snap, h) = scene(80.0, 5.0, vec![writer("bad", 5000.0, Some("bad-task"))]);
    let plan = decide_at(&snap, &h, &State::default(), &Settings::default(), now());
    assert!(evicted(&plan).expect("evicted").kill);
}

#[test]
fn at_critical_with_nothing_to_reclaim_the_writer_goes_and_the_instance_drains() {
    // Flat history (no forecast), 96 %, nothing on the ladder; a writer at 2 MB/s.
    let (snap, h) = scene(96.0, 0.0, vec![writer("slow", 2.0, Some("etl"))]);
    let plan = decide_at(&snap, &h, &State::default(), &Settings::default(), now());
    assert_eq!(
        evicted(&plan).map(|e| e.container_id.as_str()),
        Some("slow")
    );
    assert!(
        matches!(plan.ecs, EcsDecision::Drain { .. }),
        "critical drains whatever an eviction may do: {:?}",
        plan.ecs
    );
}

#[test]
fn the_agent_pause_protected_and_kept_containers_are_passed_over_with_a_reason() {
    let mut agent = writer("ecs-agent", 900.0, None);
    agent.name = "ecs-agent".into();
    let mut pause = writer("pause", 800.0, Some("web"));
    pause.labels.insert(
        ECS_CONTAINER_LABEL.to_owned(),
        "~internal~ecs~pause".to_owned(),
    );
    let mut kept = writer("db", 700.0, Some("db"));
    kept.labels.insert(KEEP_LABEL.to_owned(), "true".to_owned());
    let protected = writer("mine", 600.0, Some("mine"));
    let next = writer("app", 500.0, Some("app"));
    let (mut snap, h) = scene(82.0, 1.0, vec![agent, pause, kept, protected, next]);
    let mut s = Settings::default();
    s.docker
        .protect
        .push(glob::Pattern::new("mine:*").expect("pattern"));
    let plan = decide_at(&snap, &h, &State::default(), &s, now());
    let e = evicted(&plan).expect("the next one goes");
    assert_eq!(e.container_id, "app");
    for why in [
        "the ECS agent",
        "pause container",
        "diskguard.keep=true",
        "image is protected",
    ] {
        assert!(e.why.contains(why), "{why} in {:?}", e.why);
    }

    // Without the last one, nothing may go: said, and the drain is not held.
    let writers: Vec<ContainerWrites> = snap.writers.iter().take(4).cloned().collect();
    snap.writers = std::sync::Arc::new(writers);
    let plan = decide_at(&snap, &h, &State::default(), &s, now());
    let EvictDecision::NoCandidate { why } = &plan.evict else {
        panic!("{:?}", plan.evict)
    };
    assert!(why.contains("ecs-agent (the ECS agent)"), "{why}");
    assert!(
        plan.findings
            .iter()
            .any(|f| f.message.contains("nothing may be evicted"))
    );
}

#[test]
fn eviction_can_be_turned_off() {
    let mut s = Settings::default();
    s.evict.enabled = crate::config::Toggle::Off;
    let (snap, h) = scene(82.0, 1.0, vec![writer("bad", 1000.0, Some("bad-task"))]);
    let plan = decide_at(&snap, &h, &State::default(), &s, now());
    assert_eq!(plan.evict, EvictDecision::None);
}

#[test]
fn a_quiet_disk_at_prune_evicts_nobody() {
    let (snap, h) = scene(85.0, 0.0, vec![writer("web", 50.0, Some("web"))]);
    let plan = decide_at(&snap, &h, &State::default(), &Settings::default(), now());
    assert_eq!(plan.evict, EvictDecision::None);
}

#[test]
fn the_short_window_sees_a_burst_the_long_window_averages_away() {
    // Flat for five minutes, then 3 s at 1 %/s: the 5-minute least-squares slope is tiny,
    // the 3-second one is the real rate.
    let mut h = History::new(Duration::from_secs(300), Duration::from_millis(100));
    for i in 0..=3000u64 {
        let ago_ms = (3000 - i) * 100;
        let pct = if ago_ms > 3000 {
            79.0
        } else {
            82.0 - ago_ms as f64 / 1000.0
        };
        let mut snap = snapshot(stats(pct, 1.0), None, None);
        snap.at = now() - Duration::from_millis(ago_ms);
        h.record(&snap);
    }
    let r = recent(h.points(Volume::Docker), &stats(82.0, 1.0)).expect("rate");
    assert!(
        (r.bytes_per_second - 1e9).abs() < 0.05e9,
        "{}",
        r.bytes_per_second
    );
    let long = forecast(h.points(Volume::Docker), &stats(82.0, 1.0));
    assert!(long.bytes_per_second.expect("slope") < 0.2e9);
}

#[test]
fn on_a_disk_already_full_the_writer_of_the_last_half_minute_goes() {
    // Everyone's writes stopped against the full disk; "bad" wrote 300 MB/s until then.
    let mut bad = writer("bad", 0.0, Some("bad-task"));
    bad.peak_bytes_per_second = 300.0 * MB;
    let mut web = writer("web", 0.0, Some("web"));
    web.peak_bytes_per_second = 2.0 * MB;
    let (snap, h) = scene(99.9, 0.0, vec![web, bad]);
    let plan = decide_at(&snap, &h, &State::default(), &Settings::default(), now());
    let e = evicted(&plan).expect("evicted");
    assert_eq!(e.container_id, "bad");
    assert!(e.why.contains("in the last 30 s"), "{}", e.why);
}

#[test]
fn an_eviction_is_asked_for_again_until_the_container_is_gone() {
    let s = Settings::default();
    let (snap, h) = scene(82.0, 1.0, vec![writer("bad", 1000.0, Some("bad-task"))]);
    let first = decide_at(&snap, &h, &State::default(), &s, now());
    let e = evicted(&first).expect("evicted").clone();
    // A second later the container still runs (the actor missed the plan): asked again,
    // the same one, and the settling time does not restart.
    let later = now() + Duration::from_secs(1);
    let again = decide_at(&snap, &h, &first.next, &s, later);
    assert_eq!(evicted(&again), Some(&e));
    assert_eq!(again.next.eviction.as_ref().map(|(at, _)| *at), Some(now()));
    // Gone: nothing more is asked while it settles.
    let (gone, h) = scene(85.0, 0.0, vec![writer("calm", 1.0, Some("web"))]);
    let after = decide_at(&gone, &h, &again.next, &s, later);
    assert_eq!(after.evict, EvictDecision::None);
}

#[test]
fn a_writer_whose_image_is_not_in_the_inventory_is_spared_with_a_reason() {
    // The sized read timed out, or the image was pulled after the last read: whether it
    // is protected cannot be told, so it is not stopped.
    let (mut snap, h) = scene(
        82.0,
        1.0,
        vec![
            writer("unknown", 900.0, Some("unknown")),
            writer("known", 500.0, Some("known")),
        ],
    );
    let mut inventory = snap.inventory.as_deref().cloned().expect("inventory");
    inventory.images.retain(|i| i.id != "img-unknown");
    snap.inventory = Some(std::sync::Arc::new(inventory));
    let s = Settings::default();
    let plan = decide_at(&snap, &h, &State::default(), &s, now());
    let e = evicted(&plan).expect("the writer whose image is known goes");
    assert_eq!(e.container_id, "known");
    assert!(
        e.why.contains("unknown (its image is not in the inventory"),
        "{}",
        e.why
    );

    // No inventory at all: nobody can be checked, nobody goes, and it says why.
    snap.inventory = None;
    let plan = decide_at(&snap, &h, &State::default(), &s, now());
    let EvictDecision::NoCandidate { why } = &plan.evict else {
        panic!("{:?}", plan.evict)
    };
    assert!(why.contains("not in the inventory"), "{why}");
}

#[test]
fn at_critical_or_sooner_to_full_than_the_settle_the_next_writer_goes_at_once() {
    // (usage %, %/s over the last minute, whether the second writer goes 1 s after the
    // first was removed).
    let rows = [
        // Critical with nothing to reclaim: waiting 10 s is how the disk fills.
        (96.0, 0.0, true),
        // 18 GB left at 3 GB/s: full in 6 s, sooner than the settle.
        (82.0, 3.0, true),
        // Full in 18 s: the first eviction may have been enough; wait and see.
        (82.0, 1.0, false),
    ];
    let s = Settings::default();
    for (pct, rate, goes) in rows {
        let both = vec![writer("a", 100.0, Some("a")), writer("b", 100.0, Some("b"))];
        let (snap, h) = scene(pct, rate, both);
        let first = decide_at(&snap, &h, &State::default(), &s, now());
        assert_eq!(
            evicted(&first).map(|e| e.container_id.as_str()),
            Some("a"),
            "{pct}% at {rate}%/s"
        );
        let (snap, h) = scene(pct, rate, vec![writer("b", 100.0, Some("b"))]);
        let later = now() + Duration::from_secs(1);
        let second = decide_at(&snap, &h, &first.next, &s, later);
        assert_eq!(
            evicted(&second).map(|e| e.container_id.as_str()),
            goes.then_some("b"),
            "{pct}% at {rate}%/s"
        );
        let settling_since = second.next.eviction.as_ref().map(|(at, _)| *at);
        assert_eq!(
            settling_since,
            Some(if goes { later } else { now() }),
            "{pct}% at {rate}%/s: the settle restarts with the new eviction"
        );
    }
}
