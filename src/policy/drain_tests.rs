//! The ECS rows of the policy table: drain, the budget, the forecast, recovery and
//! ownership.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::tests::{ago, ecs, now, plan_for, settings, snapshot, stats};
use super::*;
use crate::config::Settings;
use crate::sample::{EcsStatus, EcsView};

#[test]
fn drain_level_drains_an_active_instance_within_budget() {
    let plan = plan_for(&snapshot(
        stats(91.0, 1.0),
        None,
        Some(ecs(EcsStatus::Active, false, 10, 0)),
    ));
    assert_eq!(plan.level, Level::Drain);
    assert_eq!(plan.ecs, EcsDecision::Drain { over_budget: false });
}

#[test]
fn drain_is_suppressed_when_budget_is_spent_below_critical() {
    // 1 of 10 already DRAINING by someone else, 10 % budget → 1 allowed.
    let plan = plan_for(&snapshot(
        stats(91.0, 1.0),
        None,
        Some(ecs(EcsStatus::Active, false, 9, 1)),
    ));
    assert_eq!(
        plan.ecs,
        EcsDecision::DrainSuppressed {
            draining: 1,
            allowed: 1
        }
    );
}

#[test]
fn critical_drains_past_the_budget() {
    let plan = plan_for(&snapshot(
        stats(96.0, 1.0),
        None,
        Some(ecs(EcsStatus::Active, false, 9, 1)),
    ));
    assert_eq!(plan.ecs, EcsDecision::Drain { over_budget: true });
}

#[test]
fn budget_is_at_least_one_instance() {
    assert_eq!(drain_budget(10.0, 3), 1);
    assert_eq!(drain_budget(10.0, 10), 1);
    assert_eq!(drain_budget(10.0, 25), 2);
    assert_eq!(drain_budget(0.0, 100), 1);
    assert_eq!(drain_budget(50.0, 9), 4);
}

#[test]
fn prune_level_does_not_drain() {
    let plan = plan_for(&snapshot(
        stats(85.0, 1.0),
        None,
        Some(ecs(EcsStatus::Active, false, 10, 0)),
    ));
    assert_eq!(plan.ecs, EcsDecision::None);
}

fn rising_history(from_pct: f64, pct_per_sec: f64, secs: u64) -> History {
    let mut h = History::new(Duration::from_secs(300), Duration::from_secs(1));
    for s in 0..=secs {
        let st = stats(from_pct + pct_per_sec * s as f64, 1.0);
        let mut snap = snapshot(st, None, None);
        snap.at = now() - Duration::from_secs(secs - s);
        h.record(&snap);
    }
    h
}

#[test]
fn forecast_drains_before_the_threshold_when_filling_fast() {
    // 0.01 %/s = 1 GB/100 s … at 85 % with 15 GB left: full in 1500 s = 25 min. Too slow.
    let slow = rising_history(83.8, 0.01, 120);
    let view = Some(ecs(EcsStatus::Active, false, 10, 0));
    let s = settings();
    let plan = decide(
        &snapshot(stats(85.0, 1.0), None, view.clone()),
        &slow,
        &State::default(),
        &s,
        now(),
    );
    assert_eq!(plan.level, Level::Prune);
    // 0.02 %/s: full in 750 s = 12.5 min < 15 min lead.
    let fast = rising_history(82.6, 0.02, 120);
    let plan = decide(
        &snapshot(stats(85.0, 1.0), None, view),
        &fast,
        &State::default(),
        &s,
        now(),
    );
    assert_eq!(plan.level, Level::Drain);
    assert_eq!(plan.volumes[0].driven_by, Driver::Forecast);
    assert_eq!(plan.ecs, EcsDecision::Drain { over_budget: false });
}

#[test]
fn forecast_alone_never_drains_below_prune_start() {
    let fast = rising_history(60.0, 0.1, 120);
    let plan = decide(
        &snapshot(stats(72.0, 1.0), None, None),
        &fast,
        &State::default(),
        &settings(),
        now(),
    );
    assert_eq!(plan.level, Level::Ok);
    assert!(plan.volumes[0].time_to_full.is_some());
}

#[test]
fn flat_disk_at_88_percent_does_not_drain() {
    let flat = rising_history(88.0, 0.0, 120);
    let view = Some(ecs(EcsStatus::Active, false, 10, 0));
    let plan = decide(
        &snapshot(stats(88.0, 1.0), None, view),
        &flat,
        &State::default(),
        &settings(),
        now(),
    );
    assert_eq!(plan.level, Level::Prune);
    assert_eq!(plan.ecs, EcsDecision::None);
    assert_eq!(plan.volumes[0].time_to_full, None);
}

fn recovery(view: EcsView, usage: f64, since: Option<SystemTime>, s: &Settings) -> Plan {
    let state = State {
        levels: BTreeMap::new(),
        recover_since: since,
        eviction: None,
        stuck_since: None,
    };
    let history = History::new(Duration::from_secs(300), Duration::from_secs(1));
    decide(
        &snapshot(stats(usage, 1.0), None, Some(view)),
        &history,
        &state,
        s,
        now(),
    )
}

#[test]
fn recovery_undrains_only_after_recover_after_below_recover() {
    let s = settings();
    let ours = ecs(EcsStatus::Draining, true, 9, 1);
    let first = recovery(ours.clone(), 60.0, None, &s);
    assert_eq!(first.ecs, EcsDecision::None, "just went below recover");
    assert_eq!(first.next.recover_since, Some(now()));
    let later = recovery(ours.clone(), 60.0, Some(ago(299)), &s);
    assert_eq!(later.ecs, EcsDecision::None);
    let done = recovery(ours.clone(), 60.0, Some(ago(300)), &s);
    assert_eq!(done.ecs, EcsDecision::Undrain);
    let bounced = recovery(ours, 76.0, Some(ago(1_000)), &s);
    assert_eq!(bounced.ecs, EcsDecision::None);
    assert_eq!(
        bounced.next.recover_since, None,
        "the clock restarts after a bounce"
    );
}

#[test]
fn never_undrains_an_instance_drained_by_someone_else() {
    let plan = recovery(
        ecs(EcsStatus::Draining, false, 9, 1),
        10.0,
        Some(ago(100_000)),
        &settings(),
    );
    assert_eq!(plan.ecs, EcsDecision::None);
}

#[test]
fn never_undrains_when_undrain_is_off() {
    let mut s = settings();
    s.ecs.undrain = false;
    let plan = recovery(
        ecs(EcsStatus::Draining, true, 9, 1),
        10.0,
        Some(ago(100_000)),
        &s,
    );
    assert_eq!(plan.ecs, EcsDecision::None);
}

#[test]
fn instance_reactivated_by_an_operator_only_loses_the_stale_mark() {
    let plan = recovery(ecs(EcsStatus::Active, true, 10, 0), 85.0, None, &settings());
    assert_eq!(plan.ecs, EcsDecision::RemoveStaleMark);
}

#[test]
fn other_ecs_states_are_left_alone() {
    let plan = recovery(
        ecs(EcsStatus::Other("DEREGISTERING".into()), true, 10, 0),
        99.0,
        None,
        &settings(),
    );
    assert_eq!(plan.ecs, EcsDecision::None);
}

#[test]
fn history_points_use_the_sampled_values() {
    let h = rising_history(50.0, 0.0, 5);
    let p: Vec<&crate::sample::Point> = h.points(Volume::Docker).collect();
    assert_eq!(p.len(), 6);
}

fn inst(arn: &str, mark: Option<&str>) -> DrainingInstance {
    DrainingInstance {
        arn: arn.into(),
        marked_at: mark.map(str::to_owned),
        draining: true,
    }
}

/// Marks are taken on 2026-11-28 around 10:00 UTC; the verdict is read a second later.
fn read_at() -> SystemTime {
    humantime::parse_rfc3339("2026-11-28T10:00:02Z").expect("time")
}

#[test]
fn budget_verdict_keeps_the_earliest_marks_and_undoes_the_rest() {
    let t = |s: &str| Some(format!("2026-11-28T10:00:{s}Z"));
    let draining = [
        inst("arn:c", t("01.200").as_deref()),
        inst("arn:a", t("01.500").as_deref()),
        inst("arn:b", t("01.500").as_deref()),
        inst("arn:d", t("00").as_deref()),
    ];
    // (me, instances, percent) → verdict; 10 instances at 10 % allow one.
    let table = [
        ("arn:d", 10, 10.0, BudgetVerdict::Keep),
        ("arn:c", 10, 10.0, BudgetVerdict::Undo { rank: 1, room: 1 }),
        ("arn:a", 10, 10.0, BudgetVerdict::Undo { rank: 2, room: 1 }),
        // Same time: the ARN breaks the tie.
        ("arn:b", 10, 10.0, BudgetVerdict::Undo { rank: 3, room: 1 }),
        ("arn:c", 20, 10.0, BudgetVerdict::Keep),
        ("arn:a", 20, 10.0, BudgetVerdict::Undo { rank: 2, room: 2 }),
        ("arn:b", 40, 10.0, BudgetVerdict::Keep),
        // Not visible in the read yet: nothing to judge.
        ("arn:z", 10, 10.0, BudgetVerdict::Keep),
    ];
    for (me, n, pct, want) in table {
        assert_eq!(
            budget_verdict(me, &draining, n, pct, read_at()),
            want,
            "{me} of {n} at {pct}%"
        );
    }
}

#[test]
fn drains_by_someone_else_take_budget_first_and_are_never_ranked() {
    let draining = [
        inst("arn:operator", None),
        inst("arn:me", Some("2026-11-28T10:00:00Z")),
    ];
    assert_eq!(
        budget_verdict("arn:me", &draining, 10, 10.0, read_at()),
        BudgetVerdict::Undo { rank: 0, room: 0 }
    );
    assert_eq!(
        budget_verdict("arn:me", &draining, 20, 10.0, read_at()),
        BudgetVerdict::Keep
    );
}

#[test]
fn a_mark_with_seconds_ranks_by_time_not_by_text() {
    // "…00Z" sorts after "…00.5Z" as text, but is half a second earlier.
    let draining = [
        inst("arn:b", Some("2026-11-28T10:00:00.500Z")),
        inst("arn:a", Some("2026-11-28T10:00:00Z")),
    ];
    assert_eq!(
        budget_verdict("arn:a", &draining, 10, 10.0, read_at()),
        BudgetVerdict::Keep
    );
}

#[test]
fn budget_room_counts_the_fresh_draining_number() {
    assert_eq!(budget_room(0, 10, 10.0), Ok(()));
    assert_eq!(budget_room(1, 10, 10.0), Err((1, 1)));
    assert_eq!(budget_room(1, 20, 10.0), Ok(()));
    assert_eq!(budget_room(2, 20, 10.0), Err((2, 2)));
}

#[test]
fn a_claim_counts_after_drains_and_a_stale_claim_not_at_all() {
    let claim = |arn: &str, mark: &str| DrainingInstance {
        arn: arn.into(),
        marked_at: Some(mark.into()),
        draining: false,
    };
    // An older claim still ranks after a drain already made.
    let list = [
        claim("arn:claim", "2026-11-28T10:00:00Z"),
        inst("arn:drained", Some("2026-11-28T10:00:01Z")),
    ];
    assert_eq!(
        budget_verdict("arn:claim", &list, 10, 10.0, read_at()),
        BudgetVerdict::Undo { rank: 1, room: 1 }
    );
    // Two fresh claims: the earlier wins, whoever reads.
    let list = [
        claim("arn:b", "2026-11-28T10:00:01.200Z"),
        claim("arn:a", "2026-11-28T10:00:01.300Z"),
    ];
    assert_eq!(
        budget_verdict("arn:b", &list, 10, 10.0, read_at()),
        BudgetVerdict::Keep
    );
    assert_eq!(
        budget_verdict("arn:a", &list, 10, 10.0, read_at()),
        BudgetVerdict::Undo { rank: 1, room: 1 }
    );
    // A claim left on an ACTIVE instance a minute ago is a stale mark: it holds nothing.
    let later = read_at() + CLAIM_TTL;
    assert_eq!(
        budget_verdict("arn:a", &list, 10, 10.0, later),
        BudgetVerdict::Keep
    );
}

/// `[escalate]`: drained by diskguard, at `drain` or above with nothing left to reclaim,
/// for `escalate.after` continuously — then `replace`. Never for someone else's drain,
/// never before Docker's inventory was read, and the clock restarts below `drain`.
#[test]
fn a_node_drained_by_diskguard_and_stuck_full_asks_for_replacement_after_escalate_after() {
    let s = settings();
    let history = History::new(Duration::from_secs(300), Duration::from_secs(1));
    let plan =
        |usage: f64, view: EcsView, inventory: bool, since: Option<SystemTime>, s: &Settings| {
            let state = State {
                stuck_since: since,
                ..State::default()
            };
            let inventory = inventory.then(Inventory::default);
            decide(
                &snapshot(stats(usage, 1.0), inventory, Some(view)),
                &history,
                &state,
                s,
                now(),
            )
        };
    let ours = ecs(EcsStatus::Draining, true, 9, 1);
    let first = plan(92.0, ours.clone(), true, None, &s);
    assert_eq!(first.next.stuck_since, Some(now()));
    assert!(!first.replace);
    assert!(!plan(92.0, ours.clone(), true, Some(ago(899)), &s).replace);
    assert!(plan(92.0, ours.clone(), true, Some(ago(900)), &s).replace);
    let below = plan(85.0, ours.clone(), true, Some(ago(5_000)), &s);
    assert_eq!((below.replace, below.next.stuck_since), (false, None));
    let unread = plan(92.0, ours.clone(), false, Some(ago(5_000)), &s);
    assert_eq!((unread.replace, unread.next.stuck_since), (false, None));
    let theirs = plan(
        92.0,
        ecs(EcsStatus::Draining, false, 9, 1),
        true,
        Some(ago(5_000)),
        &s,
    );
    assert_eq!((theirs.replace, theirs.next.stuck_since), (false, None));
    let mut off = settings();
    off.escalate.enabled = crate::config::Toggle::Off;
    assert!(!plan(92.0, ours, true, Some(ago(5_000)), &off).replace);
}
