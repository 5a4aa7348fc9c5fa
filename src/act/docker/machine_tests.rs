//! The Docker actor's rules as tables: events in, effects out — no engine, no clock.

use super::*;
use crate::policy::{EvictDecision, Rung};

const INTERVAL: Duration = Duration::from_secs(30);

fn t0() -> Instant {
    static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *T0.get_or_init(Instant::now)
}

fn at(ms: u64) -> Instant {
    t0() + Duration::from_millis(ms)
}

fn step(id: &str) -> ReclaimStep {
    ReclaimStep {
        rung: Rung::UnusedImage,
        id: id.into(),
        name: id.into(),
        bytes: 1,
    }
}

fn steps(ids: &[&str]) -> Vec<ReclaimStep> {
    ids.iter().map(|id| step(id)).collect()
}

fn wish(ids: &[&str], inventory: u64) -> Event {
    Event::Plan(Wish {
        wanted: true,
        steps: steps(ids),
        expired: Vec::new(),
        inventory: Some(inventory),
        evict: EvictDecision::None,
        armed: false,
    })
}

fn idle(inventory: u64) -> Event {
    Event::Plan(Wish {
        wanted: false,
        steps: Vec::new(),
        expired: Vec::new(),
        inventory: Some(inventory),
        evict: EvictDecision::None,
        armed: false,
    })
}

fn pass(ids: &[&str]) -> Effect {
    Effect::Pass {
        steps: steps(ids),
        expiry: false,
    }
}

fn done(removed: usize, failed: &[&str]) -> Event {
    Event::PassDone(PassDone {
        removed,
        failed: failed.iter().map(|s| (*s).to_owned()).collect(),
        expiry: false,
    })
}

/// A machine that has read its first inventory (generation 1) at time 0.
fn started(observe: bool) -> Machine {
    let mut m = Machine::new(INTERVAL, observe);
    assert_eq!(m.start(), vec![Effect::Refresh { sized: false }]);
    assert_eq!(
        m.handle(Event::Refreshed(Ok(1)), at(0)),
        vec![Effect::RefreshIn(INTERVAL)]
    );
    m
}

fn table(m: &mut Machine, rows: Vec<(u64, Event, Vec<Effect>)>) {
    for (i, (ms, event, want)) in rows.into_iter().enumerate() {
        let got = m.handle(event.clone(), at(ms));
        assert_eq!(got, want, "row {i} at {ms} ms: {event:?}");
    }
}

#[test]
fn an_event_storm_reads_at_most_once_a_second_and_never_starves_a_pass() {
    let mut m = started(false);
    table(
        &mut m,
        vec![
            // Events every 300 ms: one read a second, not one per event.
            (
                300,
                Event::Stale,
                vec![Effect::RefreshIn(Duration::from_millis(700))],
            ),
            (600, Event::Stale, vec![]),
            (900, Event::Stale, vec![]),
            (
                1000,
                Event::RefreshDue,
                vec![Effect::Refresh { sized: false }],
            ),
            (
                1050,
                Event::Refreshed(Ok(2)),
                vec![Effect::RefreshIn(INTERVAL)],
            ),
            (
                1200,
                Event::Stale,
                vec![Effect::RefreshIn(Duration::from_millis(850))],
            ),
            (
                2050,
                Event::RefreshDue,
                vec![Effect::Refresh { sized: false }],
            ),
            (
                2100,
                Event::Refreshed(Ok(3)),
                vec![Effect::RefreshIn(INTERVAL)],
            ),
            // The disk crosses prune_start; the plan was made from generation 2, one
            // read behind: still fresh enough, the pass starts.
            (
                2200,
                wish(&["a", "b"], 2),
                vec![
                    Effect::Meter(Some(METER_FAST)),
                    pass(&["a", "b"]),
                    Effect::MeasureWriters,
                ],
            ),
        ],
    );
}

#[test]
fn plans_made_before_the_last_pass_are_not_acted_on() {
    let mut m = started(false);
    table(
        &mut m,
        vec![
            (
                100,
                wish(&["a"], 1),
                vec![
                    Effect::Meter(Some(METER_FAST)),
                    pass(&["a"]),
                    Effect::MeasureWriters,
                ],
            ),
            (200, done(1, &[]), vec![Effect::Refresh { sized: true }]),
            // The loop's plan still shows generation 1 and the read after the pass is
            // not in: nothing.
            (300, wish(&["a"], 1), vec![]),
            (
                400,
                Event::Refreshed(Ok(2)),
                vec![Effect::RefreshIn(INTERVAL)],
            ),
            (500, wish(&["a"], 1), vec![]),
            (600, wish(&["b"], 2), vec![pass(&["b"])]),
        ],
    );
}

#[test]
fn an_item_that_failed_is_skipped_for_the_episode_and_the_ladder_goes_on() {
    let mut m = started(false);
    table(
        &mut m,
        vec![
            (
                100,
                wish(&["bad", "a"], 1),
                vec![
                    Effect::Meter(Some(METER_FAST)),
                    pass(&["bad", "a"]),
                    Effect::MeasureWriters,
                ],
            ),
            (
                200,
                done(1, &["bad"]),
                vec![
                    Effect::Skip(vec!["bad".into()]),
                    Effect::Refresh { sized: true },
                ],
            ),
            (
                300,
                Event::Refreshed(Ok(2)),
                vec![Effect::RefreshIn(INTERVAL)],
            ),
            (
                400,
                wish(&["bad", "b", "c"], 2),
                vec![Effect::Say(Note::Skipping(1)), pass(&["b", "c"])],
            ),
            (500, done(2, &[]), vec![Effect::Refresh { sized: true }]),
            (
                600,
                Event::Refreshed(Ok(3)),
                vec![Effect::RefreshIn(INTERVAL)],
            ),
            // Only the failed item is left: nothing to do this episode.
            (700, wish(&["bad"], 3), vec![]),
            // The disk recovered; next time the item is tried again.
            (
                800,
                idle(3),
                vec![Effect::Skip(Vec::new()), Effect::Meter(None)],
            ),
            (
                900,
                wish(&["bad"], 3),
                vec![
                    Effect::Meter(Some(METER_FAST)),
                    pass(&["bad"]),
                    Effect::MeasureWriters,
                ],
            ),
        ],
    );
}

#[test]
fn a_pass_that_removed_nothing_waits_an_inventory_interval() {
    let mut m = started(false);
    table(
        &mut m,
        vec![
            (
                100,
                wish(&["a"], 1),
                vec![
                    Effect::Meter(Some(METER_FAST)),
                    pass(&["a"]),
                    Effect::MeasureWriters,
                ],
            ),
            (200, done(0, &[]), vec![Effect::Refresh { sized: true }]),
            (
                300,
                Event::Refreshed(Ok(2)),
                vec![Effect::RefreshIn(INTERVAL)],
            ),
            (1_000, wish(&["a"], 2), vec![]),
            (
                30_200,
                wish(&["a"], 2),
                vec![pass(&["a"]), Effect::MeasureWriters],
            ),
        ],
    );
}

#[test]
fn a_failing_read_is_said_once_and_retried_sooner_than_the_interval() {
    let mut m = started(false);
    table(
        &mut m,
        vec![
            (
                30_000,
                Event::RefreshDue,
                vec![Effect::Refresh { sized: false }],
            ),
            (
                30_010,
                Event::Refreshed(Err("no answer".into())),
                vec![
                    Effect::Say(Note::InventoryFailed("no answer".into())),
                    Effect::RefreshIn(Duration::from_secs(1)),
                ],
            ),
            (
                31_010,
                Event::RefreshDue,
                vec![Effect::Refresh { sized: false }],
            ),
            (
                31_020,
                Event::Refreshed(Err("no answer".into())),
                vec![Effect::RefreshIn(Duration::from_secs(2))],
            ),
            (
                33_020,
                Event::RefreshDue,
                vec![Effect::Refresh { sized: false }],
            ),
            (
                33_030,
                Event::Refreshed(Ok(2)),
                vec![
                    Effect::Say(Note::InventoryRecovered),
                    Effect::RefreshIn(INTERVAL),
                ],
            ),
        ],
    );
}

#[test]
fn observe_mode_logs_each_new_plan_once_and_removes_nothing() {
    let mut m = started(true);
    let observe = |ids: &[&str]| Effect::Observe {
        steps: steps(ids),
        expiry: false,
    };
    table(
        &mut m,
        vec![
            (
                100,
                wish(&["a"], 1),
                vec![
                    Effect::Meter(Some(METER_FAST)),
                    observe(&["a"]),
                    Effect::MeasureWriters,
                ],
            ),
            (200, wish(&["a"], 1), vec![]),
            (300, wish(&["a", "b"], 1), vec![observe(&["a", "b"])]),
        ],
    );
}

#[test]
fn images_past_their_maximum_age_go_at_most_once_an_hour_and_never_before_the_ladder() {
    let mut m = started(false);
    let expiring = |inventory| {
        Event::Plan(Wish {
            wanted: false,
            steps: Vec::new(),
            expired: steps(&["old"]),
            inventory: Some(inventory),
            evict: EvictDecision::None,
            armed: false,
        })
    };
    let expiry_pass = Effect::Pass {
        steps: steps(&["old"]),
        expiry: true,
    };
    table(
        &mut m,
        vec![
            (100, expiring(1), vec![expiry_pass.clone()]),
            (
                200,
                Event::PassDone(PassDone {
                    removed: 1,
                    failed: Vec::new(),
                    expiry: true,
                }),
                vec![Effect::Refresh { sized: false }],
            ),
            (
                300,
                Event::Refreshed(Ok(2)),
                vec![Effect::RefreshIn(INTERVAL)],
            ),
            (400, expiring(2), vec![]),
            (3_600_100, expiring(2), vec![expiry_pass]),
        ],
    );
}

#[test]
fn the_top_writers_are_measured_every_thirty_seconds_while_reclaim_is_wanted() {
    let mut m = started(true);
    table(
        &mut m,
        vec![
            (
                0,
                wish(&[], 1),
                vec![Effect::Meter(Some(METER_FAST)), Effect::MeasureWriters],
            ),
            (10_000, wish(&[], 1), vec![]),
            (30_000, wish(&[], 1), vec![Effect::MeasureWriters]),
            (31_000, idle(1), vec![Effect::Meter(None)]),
            (
                32_000,
                wish(&[], 1),
                vec![Effect::Meter(Some(METER_FAST)), Effect::MeasureWriters],
            ),
        ],
    );
}

fn eviction(id: &str) -> Eviction {
    Eviction {
        container_id: id.into(),
        name: id.into(),
        image: "bad:v1".into(),
        task_family: Some("bad-task".into()),
        task_arn: None,
        bytes_per_second: 1e8,
        written_bytes: 1e9 as u64,
        kill: true,
        why: "writing the most".into(),
    }
}

fn evicting(id: &str, inventory: u64) -> Event {
    Event::Plan(Wish {
        wanted: true,
        steps: Vec::new(),
        expired: Vec::new(),
        inventory: Some(inventory),
        evict: EvictDecision::Evict(eviction(id)),
        armed: true,
    })
}

#[test]
fn a_container_is_evicted_once_and_before_anything_else() {
    let mut m = started(false);
    table(
        &mut m,
        vec![
            (
                0,
                evicting("bad", 1),
                vec![
                    Effect::Meter(Some(METER_FAST)),
                    Effect::Evict(eviction("bad")),
                    Effect::MeasureWriters,
                ],
            ),
            // The plan still names it until the next read shows it gone: not again.
            (100, evicting("bad", 1), vec![]),
            (
                200,
                evicting("worse", 1),
                vec![Effect::Evict(eviction("worse"))],
            ),
        ],
    );
    let mut m = started(true);
    table(
        &mut m,
        vec![
            (
                0,
                evicting("bad", 1),
                vec![
                    Effect::Meter(Some(METER_FAST)),
                    Effect::ObserveEviction(eviction("bad")),
                    Effect::MeasureWriters,
                ],
            ),
            (100, evicting("bad", 1), vec![]),
        ],
    );
}

#[test]
fn the_meter_runs_slow_when_armed_fast_at_prune_and_not_at_all_below() {
    let mut m = started(false);
    let plan = |wanted: bool, armed: bool| {
        Event::Plan(Wish {
            wanted,
            steps: Vec::new(),
            expired: Vec::new(),
            inventory: Some(1),
            evict: EvictDecision::None,
            armed,
        })
    };
    table(
        &mut m,
        vec![
            (0, plan(false, true), vec![Effect::Meter(Some(METER_SLOW))]),
            (100, plan(false, true), vec![]),
            (
                200,
                plan(true, true),
                vec![Effect::Meter(Some(METER_FAST)), Effect::MeasureWriters],
            ),
            (300, plan(false, false), vec![Effect::Meter(None)]),
        ],
    );
}

/// Only what the rows are about: the evictions and removals asked for.
fn evictions(effects: Vec<Effect>) -> Vec<Effect> {
    effects
        .into_iter()
        .filter(|e| matches!(e, Effect::Evict(_) | Effect::RemoveEvicted(_)))
        .collect()
}

#[test]
fn a_stopped_container_that_was_not_removed_is_removed_later_even_after_the_episode() {
    let mut m = started(false);
    let not_removed = |id: &str| {
        Event::Evicted(
            eviction(id),
            Evicted::NotRemoved("driver \"overlay2\" failed to remove root filesystem".into()),
        )
    };
    let rows = vec![
        (0, evicting("bad", 1), vec![Effect::Evict(eviction("bad"))]),
        (500, not_removed("bad"), vec![]),
        // Stopped, it is no longer a writer: the plan stops naming it.
        (1_000, wish(&[], 1), vec![]),
        (
            1_500,
            wish(&[], 1),
            vec![Effect::RemoveEvicted(eviction("bad"))],
        ),
        // Under way: not asked twice.
        (1_600, wish(&[], 1), vec![]),
        // Failed again: twice as long.
        (2_000, not_removed("bad"), vec![]),
        (3_500, wish(&[], 1), vec![]),
        // The disk recovered meanwhile: the episode is over, the layer still to be freed.
        (4_000, idle(1), vec![Effect::RemoveEvicted(eviction("bad"))]),
        (
            4_100,
            Event::Evicted(eviction("bad"), Evicted::Removed),
            vec![],
        ),
        (60_000, idle(1), vec![]),
    ];
    for (i, (ms, event, want)) in rows.into_iter().enumerate() {
        let got = evictions(m.handle(event.clone(), at(ms)));
        assert_eq!(got, want, "row {i} at {ms} ms: {event:?}");
    }
}

#[test]
fn an_eviction_whose_stop_failed_is_tried_again_and_one_that_stopped_is_not() {
    let mut m = started(false);
    let rows = vec![
        (0, evicting("bad", 1), vec![Effect::Evict(eviction("bad"))]),
        (
            100,
            Event::Evicted(eviction("bad"), Evicted::NotStopped("timeout".into())),
            vec![],
        ),
        // Still running, so still named: stopped again.
        (
            200,
            evicting("bad", 1),
            vec![Effect::Evict(eviction("bad"))],
        ),
        (
            300,
            Event::Evicted(eviction("bad"), Evicted::Removed),
            vec![],
        ),
        (400, evicting("bad", 1), vec![]),
    ];
    for (i, (ms, event, want)) in rows.into_iter().enumerate() {
        let got = evictions(m.handle(event.clone(), at(ms)));
        assert_eq!(got, want, "row {i} at {ms} ms: {event:?}");
    }
}
