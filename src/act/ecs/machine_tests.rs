//! The ECS actor's rules as tables: events in, effects out — no ECS, no clock.

use std::time::SystemTime;

use super::*;

const ME: &str = "arn:aws:ecs:us-east-1:1:container-instance/prod/me";

fn t0() -> Instant {
    // Any fixed instant works: the machine only compares and adds.
    static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *T0.get_or_init(Instant::now)
}

fn at(secs: u64) -> Instant {
    t0() + Duration::from_secs(secs)
}

/// The wall clock the claims are judged by: marks in these tables are from ~10:00:00.
fn wall() -> SystemTime {
    humantime::parse_rfc3339("2026-11-28T10:00:05Z").expect("time")
}

fn view(generation: u64, status: EcsStatus, ours: bool) -> Event {
    Event::View(Ok(ViewFacts {
        generation,
        status,
        ours,
        culprit: None,
    }))
}

fn wish(decision: EcsDecision, critical: bool, view: u64) -> Event {
    Event::Plan(Wish {
        decision,
        critical,
        view: Some(view),
        culprit: None,
        evicting: false,
    })
}

fn drain() -> EcsDecision {
    EcsDecision::Drain { over_budget: false }
}

fn count(active: u32, draining: u32) -> Event {
    Event::Count(Ok(Count { active, draining }))
}

fn drains(list: &[(&str, Option<&str>)], instances: u32) -> Event {
    Event::Drains(Ok(Drains {
        draining: list
            .iter()
            .map(|(arn, mark)| DrainingInstance {
                arn: (*arn).to_owned(),
                marked_at: mark.map(str::to_owned),
                draining: true,
            })
            .collect(),
        instances,
    }))
}

/// ACTIVE instances holding diskguard's mark: claims.
fn claims(list: &[(&str, &str)], instances: u32) -> Event {
    Event::Drains(Ok(Drains {
        draining: list
            .iter()
            .map(|(arn, mark)| DrainingInstance {
                arn: (*arn).to_owned(),
                marked_at: Some((*mark).to_owned()),
                draining: false,
            })
            .collect(),
        instances,
    }))
}

/// A machine that has read its first view (generation 1, ACTIVE, no mark).
/// What a drain the budget holds back does: counted, and said with the count it read.
fn suppressed(draining: u32, allowed: u32) -> Vec<Effect> {
    vec![
        Effect::CountSuppressed,
        Effect::Say(Note::Suppressed { draining, allowed }),
    ]
}

fn started(observe: bool) -> Machine {
    let mut m = Machine::new(ME, 10.0, observe);
    assert_eq!(m.start(), vec![Effect::ReadView]);
    assert_eq!(
        m.handle(view(1, EcsStatus::Active, false), at(0), wall()),
        vec![]
    );
    assert!(m.is_idle());
    m
}

/// Feeds each event at its time and checks the effects, row by row.
fn table(m: &mut Machine, rows: Vec<(u64, Event, Vec<Effect>)>) {
    for (i, (secs, event, want)) in rows.into_iter().enumerate() {
        let got = m.handle(event.clone(), at(secs), wall());
        assert_eq!(got, want, "row {i}: {event:?} (phase now {:?})", m.phase());
    }
}

#[test]
fn a_drain_reads_the_budget_fresh_then_checks_it_again_after() {
    let mut m = started(false);
    table(
        &mut m,
        vec![
            (1, wish(drain(), false, 1), vec![Effect::ReadCount]),
            (1, count(10, 0), vec![Effect::Claim]),
            (1, Event::Claimed(Ok(())), vec![Effect::ReadDrains]),
            (
                1,
                claims(&[(ME, "2026-11-28T10:00:00.100Z")], 10),
                vec![Effect::SetDraining],
            ),
            (
                1,
                Event::Drained(Ok(())),
                vec![
                    Effect::Say(Note::Drained { critical: false }),
                    Effect::ReadDrains,
                ],
            ),
            (
                1,
                drains(&[(ME, Some("2026-11-28T10:00:00.100Z"))], 10),
                vec![Effect::ReadView, Effect::RefreshIn(SETTLE)],
            ),
            (1, view(2, EcsStatus::Draining, true), vec![]),
            // SETTLE later: a slower instance's earlier mark is now visible.
            (
                6,
                Event::RefreshDue,
                vec![Effect::RefreshIn(VIEW_EVERY), Effect::ReadView],
            ),
            (
                6,
                view(3, EcsStatus::Draining, true),
                vec![Effect::ReadDrains],
            ),
            (
                6,
                drains(
                    &[
                        ("arn:other", Some("2026-11-28T10:00:00.050Z")),
                        (ME, Some("2026-11-28T10:00:00.100Z")),
                    ],
                    10,
                ),
                vec![
                    Effect::CountSuppressed,
                    Effect::Say(Note::Undone { rank: 1, room: 1 }),
                    Effect::Activate,
                ],
            ),
            (
                6,
                Event::Activated(Ok(())),
                vec![Effect::ReadView, Effect::RefreshIn(SETTLE)],
            ),
            (6, view(4, EcsStatus::Active, false), vec![]),
            // Still full: the fresh count says the budget is spent; not counted twice.
            (7, wish(drain(), false, 4), vec![Effect::ReadCount]),
            (7, count(9, 1), vec![]),
        ],
    );
}

#[test]
fn one_action_per_fresh_view() {
    let mut m = started(false);
    table(
        &mut m,
        vec![
            (1, wish(drain(), false, 1), vec![Effect::ReadCount]),
            (1, count(9, 1), suppressed(1, 1)),
            // Same view: no second count.
            (2, wish(drain(), false, 1), vec![]),
            // A plan made from an older view than the newest: nothing.
            (2, wish(drain(), false, 0), vec![]),
            // Turning critical on the same view: drains past the budget at once.
            (3, wish(drain(), true, 1), vec![Effect::Drain]),
            (
                3,
                Event::Drained(Err("throttled".into())),
                vec![
                    Effect::Say(Note::Failed {
                        what: "drain the container instance",
                        error: "throttled".into(),
                        retry_in: Duration::from_secs(1),
                    }),
                    Effect::RefreshIn(Duration::from_secs(1)),
                ],
            ),
            (5, wish(drain(), true, 1), vec![]),
            (
                60,
                Event::RefreshDue,
                vec![Effect::RefreshIn(VIEW_EVERY), Effect::ReadView],
            ),
            (60, view(2, EcsStatus::Active, false), vec![]),
            (61, wish(drain(), false, 2), vec![Effect::ReadCount]),
        ],
    );
}

#[test]
fn a_suppression_counts_once_per_episode() {
    let mut m = started(false);
    let suppressed = suppressed(1, 1);
    let refresh = |g| {
        vec![
            (
                0,
                Event::RefreshDue,
                vec![Effect::RefreshIn(VIEW_EVERY), Effect::ReadView],
            ),
            (0, view(g, EcsStatus::Active, false), vec![]),
        ]
    };
    let mut rows = vec![
        (1, wish(drain(), false, 1), vec![Effect::ReadCount]),
        (1, count(9, 1), suppressed.clone()),
    ];
    rows.extend(refresh(2));
    rows.extend([
        (2, wish(drain(), false, 2), vec![Effect::ReadCount]),
        (2, count(9, 1), vec![]),
        // The disk recovered: the episode ends.
        (3, wish(EcsDecision::None, false, 2), vec![]),
    ]);
    rows.extend(refresh(3));
    rows.extend([
        (4, wish(drain(), false, 3), vec![Effect::ReadCount]),
        (4, count(9, 1), suppressed),
    ]);
    table(&mut m, rows);
}

#[test]
fn critical_drains_past_the_budget_and_never_undoes() {
    let mut m = started(false);
    table(
        &mut m,
        vec![
            (1, wish(drain(), true, 1), vec![Effect::Drain]),
            (
                1,
                Event::Drained(Ok(())),
                vec![
                    Effect::Say(Note::Drained { critical: true }),
                    Effect::ReadDrains,
                ],
            ),
            (
                1,
                drains(
                    &[
                        ("arn:first", Some("2026-11-28T10:00:00Z")),
                        (ME, Some("2026-11-28T10:00:01Z")),
                    ],
                    10,
                ),
                vec![Effect::ReadView, Effect::RefreshIn(SETTLE)],
            ),
            (1, view(2, EcsStatus::Draining, true), vec![]),
            // No re-check of the budget while critical.
            (
                6,
                Event::RefreshDue,
                vec![Effect::RefreshIn(VIEW_EVERY), Effect::ReadView],
            ),
            (6, view(3, EcsStatus::Draining, true), vec![]),
        ],
    );
}

#[test]
fn giving_back_rereads_the_instance_and_asks_whether_it_is_leaving_service() {
    let mut m = started(false);
    table(
        &mut m,
        vec![
            (
                0,
                Event::RefreshDue,
                vec![Effect::RefreshIn(VIEW_EVERY), Effect::ReadView],
            ),
            (
                0,
                view(2, EcsStatus::Draining, true),
                vec![Effect::ReadDrains],
            ),
            (0, drains(&[(ME, Some("2026-11-28T10:00:00Z"))], 10), vec![]),
            (
                1,
                wish(EcsDecision::Undrain, false, 2),
                vec![Effect::ReadView],
            ),
            (
                1,
                view(3, EcsStatus::Draining, true),
                vec![Effect::ReadLifecycle],
            ),
            (
                1,
                Event::Lifecycle(Lifecycle::Leaving("Terminated".into())),
                vec![Effect::Say(Note::Leaving("Terminated".into()))],
            ),
            // Not again from the view the re-read made: once a minute, with the next.
            (2, wish(EcsDecision::Undrain, false, 3), vec![]),
            (
                60,
                Event::RefreshDue,
                vec![Effect::RefreshIn(VIEW_EVERY), Effect::ReadView],
            ),
            (
                60,
                view(4, EcsStatus::Draining, true),
                vec![Effect::ReadDrains],
            ),
            (
                60,
                drains(&[(ME, Some("2026-11-28T10:00:00Z"))], 10),
                vec![],
            ),
            (
                61,
                wish(EcsDecision::Undrain, false, 4),
                vec![Effect::ReadView],
            ),
            (
                61,
                view(5, EcsStatus::Draining, true),
                vec![Effect::ReadLifecycle],
            ),
            // Asked again, said no more.
            (
                61,
                Event::Lifecycle(Lifecycle::Leaving("Terminated".into())),
                vec![],
            ),
        ],
    );
    // In service: given back.
    let mut m = started(false);
    table(
        &mut m,
        vec![
            (
                1,
                wish(EcsDecision::Undrain, false, 1),
                vec![Effect::ReadView],
            ),
            (
                1,
                view(2, EcsStatus::Draining, true),
                vec![Effect::ReadLifecycle],
            ),
            (
                1,
                Event::Lifecycle(Lifecycle::InService),
                vec![Effect::Activate],
            ),
            (
                1,
                Event::Activated(Ok(())),
                vec![
                    Effect::Say(Note::Undrained),
                    Effect::ReadView,
                    Effect::RefreshIn(SETTLE),
                ],
            ),
        ],
    );
}

#[test]
fn giving_back_stops_when_the_fresh_read_shows_someone_else_took_over() {
    for (status, ours) in [(EcsStatus::Draining, false), (EcsStatus::Active, false)] {
        let mut m = started(false);
        table(
            &mut m,
            vec![
                (
                    1,
                    wish(EcsDecision::Undrain, false, 1),
                    vec![Effect::ReadView],
                ),
                (1, view(2, status.clone(), ours), vec![]),
            ],
        );
        assert!(m.is_idle());
    }
}

#[test]
fn failures_wait_doubling_and_plans_wait_for_the_retry() {
    let mut m = started(false);
    let failed = |retry| {
        vec![
            Effect::Say(Note::Failed {
                what: "drain the container instance",
                error: "throttled".into(),
                retry_in: Duration::from_secs(retry),
            }),
            Effect::RefreshIn(Duration::from_secs(retry)),
        ]
    };
    table(
        &mut m,
        vec![
            (10, wish(drain(), true, 1), vec![Effect::Drain]),
            (10, Event::Drained(Err("throttled".into())), failed(1)),
            (10, wish(drain(), true, 1), vec![]),
            (
                11,
                Event::RefreshDue,
                vec![Effect::RefreshIn(VIEW_EVERY), Effect::ReadView],
            ),
            (11, view(2, EcsStatus::Active, false), vec![]),
            (11, wish(drain(), true, 2), vec![Effect::Drain]),
            (11, Event::Drained(Err("throttled".into())), failed(2)),
            (12, wish(drain(), true, 2), vec![]),
        ],
    );
}

#[test]
fn a_failing_view_is_said_once_and_its_recovery_once() {
    let mut m = Machine::new(ME, 10.0, false);
    m.start();
    table(
        &mut m,
        vec![
            (
                0,
                Event::View(Err("endpoint down".into())),
                vec![
                    Effect::Say(Note::ViewFailed("endpoint down".into())),
                    Effect::RefreshIn(Duration::from_secs(1)),
                ],
            ),
            (
                1,
                Event::RefreshDue,
                vec![Effect::RefreshIn(VIEW_EVERY), Effect::ReadView],
            ),
            (
                1,
                Event::View(Err("endpoint down".into())),
                vec![Effect::RefreshIn(Duration::from_secs(2))],
            ),
            (
                3,
                Event::RefreshDue,
                vec![Effect::RefreshIn(VIEW_EVERY), Effect::ReadView],
            ),
            (
                3,
                view(1, EcsStatus::Active, false),
                vec![Effect::Say(Note::ViewRecovered)],
            ),
        ],
    );
}

#[test]
fn observe_mode_says_each_new_decision_once_and_calls_nothing() {
    let mut m = started(true);
    table(
        &mut m,
        vec![
            (
                1,
                wish(drain(), false, 1),
                vec![Effect::Say(Note::Observed(drain()))],
            ),
            (2, wish(drain(), false, 1), vec![]),
            (3, wish(EcsDecision::None, false, 1), vec![]),
            (
                4,
                wish(drain(), true, 1),
                vec![Effect::Say(Note::Observed(drain()))],
            ),
        ],
    );
}

#[test]
fn a_stale_mark_is_removed_and_the_view_read_again() {
    let mut m = started(false);
    table(
        &mut m,
        vec![
            (
                1,
                wish(EcsDecision::RemoveStaleMark, false, 1),
                vec![Effect::RemoveMark],
            ),
            (
                1,
                Event::MarkRemoved(Ok(())),
                vec![
                    Effect::Say(Note::StaleMarkRemoved),
                    Effect::ReadView,
                    Effect::RefreshIn(SETTLE),
                ],
            ),
        ],
    );
}

#[test]
fn answers_to_questions_not_asked_are_ignored() {
    let mut m = started(false);
    assert_eq!(m.handle(count(1, 0), at(1), wall()), vec![]);
    assert_eq!(m.handle(Event::Drained(Ok(())), at(1), wall()), vec![]);
    assert!(m.is_idle());
}

#[test]
fn the_identity_search_logs_only_what_changes_and_backs_off_to_ten_seconds() {
    let mut s = Search::new();
    let seen: Vec<(bool, u64)> = ["refused", "refused", "404", "404", "404", "404", "404"]
        .into_iter()
        .map(|what| {
            let (say, wait) = s.missed(what);
            (say, wait.as_secs())
        })
        .collect();
    assert_eq!(
        seen,
        [
            (true, 1),
            (false, 2),
            (true, 4),
            (false, 8),
            (false, 10),
            (false, 10),
            (false, 10)
        ]
    );
}

#[test]
fn a_claim_that_lost_to_an_earlier_one_is_withdrawn_and_counted_once() {
    let mut m = started(false);
    let earlier = Event::Drains(Ok(Drains {
        draining: vec![
            DrainingInstance {
                arn: "arn:other".into(),
                marked_at: Some("2026-11-28T10:00:00.050Z".into()),
                draining: false,
            },
            DrainingInstance {
                arn: ME.into(),
                marked_at: Some("2026-11-28T10:00:00.100Z".into()),
                draining: false,
            },
        ],
        instances: 10,
    }));
    table(
        &mut m,
        vec![
            (1, wish(drain(), false, 1), vec![Effect::ReadCount]),
            (1, count(10, 0), vec![Effect::Claim]),
            (1, Event::Claimed(Ok(())), vec![Effect::ReadDrains]),
            (
                1,
                earlier,
                vec![
                    Effect::CountSuppressed,
                    Effect::Say(Note::LostClaim { rank: 1, room: 1 }),
                    Effect::Withdraw,
                ],
            ),
            (1, Event::Withdrawn(Ok(())), vec![]),
        ],
    );
    assert!(m.is_idle());
}

fn naming(decision: EcsDecision, critical: bool, view: u64, evicting: bool) -> Event {
    Event::Plan(Wish {
        decision,
        critical,
        view: Some(view),
        culprit: Some("bad-task".into()),
        evicting,
    })
}

#[test]
fn the_culprit_is_named_on_an_eviction_at_once_and_after_a_drain_and_cleared_after() {
    let mut m = started(false);
    table(
        &mut m,
        vec![
            // An eviction: named at once, once.
            (
                1,
                naming(EcsDecision::None, false, 1, true),
                vec![Effect::SetCulprit("bad-task".into())],
            ),
            (
                1,
                Event::CulpritSet(Ok(())),
                vec![
                    Effect::Say(Note::CulpritNamed("bad-task".into())),
                    Effect::RefreshIn(SETTLE),
                ],
            ),
            (2, naming(EcsDecision::None, false, 1, true), vec![]),
            // A drain at critical: counted for the family and named with it.
            (3, naming(drain(), true, 1, false), vec![Effect::Drain]),
            (
                3,
                Event::Drained(Ok(())),
                vec![
                    Effect::Say(Note::Drained { critical: true }),
                    Effect::CountCulprit("bad-task".into()),
                    Effect::SetCulprit("bad-task".into()),
                ],
            ),
            (
                3,
                Event::CulpritSet(Ok(())),
                vec![
                    Effect::Say(Note::CulpritNamed("bad-task".into())),
                    Effect::ReadDrains,
                ],
            ),
            (
                3,
                drains(&[(ME, Some("2026-11-28T10:00:03Z"))], 10),
                vec![Effect::ReadView, Effect::RefreshIn(SETTLE)],
            ),
            (3, view(2, EcsStatus::Active, false), vec![]),
            // Recovered without a drain to undo: the culprit goes.
            (
                400,
                wish(EcsDecision::ClearCulprit, false, 2),
                vec![Effect::ClearCulprit],
            ),
            (
                400,
                Event::CulpritCleared(Ok(())),
                vec![
                    Effect::Say(Note::CulpritCleared),
                    Effect::ReadView,
                    Effect::RefreshIn(SETTLE),
                ],
            ),
        ],
    );
}

#[test]
fn a_new_episode_acts_on_the_view_at_hand() {
    let mut m = started(false);
    table(
        &mut m,
        vec![
            (1, wish(drain(), false, 1), vec![Effect::ReadCount]),
            (1, count(9, 1), suppressed(1, 1)),
            (2, wish(drain(), false, 1), vec![]),
            // The disk recovered, then filled again before the next periodic view.
            (3, wish(EcsDecision::None, false, 1), vec![]),
            (4, wish(drain(), false, 1), vec![Effect::ReadCount]),
        ],
    );
}
