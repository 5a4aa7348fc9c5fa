//! The ECS actor's rules as tables: events in, effects out — no ECS, no clock.

use super::*;

const ME: &str = "arn:aws:ecs:us-east-1:1:container-instance/prod/me";
const OTHER: &str = "arn:aws:ecs:us-east-1:1:container-instance/prod/other";

fn t0() -> Instant {
    // Any fixed instant works: the machine only compares and adds.
    static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *T0.get_or_init(Instant::now)
}

/// The wall clock the claims are judged by.
fn wall0() -> SystemTime {
    humantime::parse_rfc3339("2026-11-28T10:00:00Z").expect("time")
}

/// A machine and a clock; `feed` advances nothing, `after` advances both clocks.
struct Table {
    m: Machine,
    now: Duration,
}

impl Table {
    fn new(observe: bool) -> Self {
        Table {
            m: Machine::new(ME, 10.0, 10.0, observe, true, 7, t0()),
            now: Duration::ZERO,
        }
    }

    fn feed(&mut self, event: Event) -> Vec<Effect> {
        self.m.handle(event, t0() + self.now, wall0() + self.now)
    }

    fn after(&mut self, d: Duration) -> &mut Self {
        self.now += d;
        self
    }

    /// The machine has read this instance once (an idle read), in a cluster of `n`.
    fn known(&mut self, status: EcsStatus, mark: bool, n: u32) {
        self.m.idle_at = t0() + self.now;
        let e = self.feed(Event::RefreshDue);
        assert!(matches!(e[..], [Effect::ReadView { .. }]), "{e:?}");
        self.feed(Event::View(Ok(facts(status, mark, Some(n)))));
        // Older than FRESH: a decision reads again.
        self.now += Duration::from_secs(10);
    }

    fn plan(&mut self, intent: EcsIntent) -> Vec<Effect> {
        self.feed(Event::Plan(Wish {
            intent,
            culprit: Some("bad-task".into()),
            evicting: false,
            replace: false,
        }))
    }
}

fn facts(status: EcsStatus, mark: bool, instances: Option<u32>) -> ViewFacts {
    ViewFacts {
        status,
        mark: mark.then(|| "2026-11-28T09:00:00.000Z".into()),
        culprit: None,
        instances,
    }
}

fn drain() -> EcsIntent {
    EcsIntent::Drain { critical: false }
}

fn budget(draining: &[&str], marks: &[(&str, &str)], instances: Option<u32>) -> Event {
    Event::Budget(Ok(Budget {
        instances,
        draining: draining.iter().map(|a| (*a).to_owned()).collect(),
        marks: marks
            .iter()
            .map(|(a, m)| ((*a).to_owned(), (*m).to_owned()))
            .collect(),
    }))
}

/// A drain decided on a fresh read, its claim put and CLAIM_WAIT passed: the budget read
/// is next.
fn claim_checked_next(t: &mut Table, instances: u32) {
    t.known(EcsStatus::Active, false, instances);
    t.plan(drain());
    t.feed(Event::Fresh(Ok(facts(EcsStatus::Active, false, None))));
    t.feed(Event::Claimed(Ok(())));
    t.after(CLAIM_WAIT).feed(Event::RefreshDue);
}

fn has(effects: &[Effect], want: impl Fn(&Effect) -> bool) -> bool {
    effects.iter().any(want)
}

fn is_call(e: &Effect) -> u32 {
    match e {
        Effect::ReadView { instances } | Effect::ReadBudget { instances } => {
            2 + u32::from(*instances)
        }
        Effect::ReadFresh
        | Effect::Claim { .. }
        | Effect::Withdraw
        | Effect::SetDraining
        | Effect::SetCulprit(_)
        | Effect::ClearCulprit
        | Effect::RemoveMark => 1,
        Effect::Drain { .. } | Effect::Activate { .. } => 2,
        _ => 0,
    }
}

/// Drives a drain from the plan to the kept drain, reading this instance first if the
/// machine asks; returns the ECS calls it took
/// (ReadView/ReadBudget counted as their calls: self + size, or DRAINING + marks + size).
fn drain_to_the_end(t: &mut Table) -> u32 {
    let mut calls = 0;
    let mut count = |effects: &[Effect]| {
        for e in effects {
            calls += match e {
                Effect::ReadBudget { instances } => 2 + u32::from(*instances),
                other => is_call(other),
            };
        }
    };
    let mut e = t.plan(drain());
    count(&e);
    if e == vec![Effect::ReadFresh] {
        // What was known does not allow a claim without reading this instance first.
        e = t.feed(Event::Fresh(Ok(facts(EcsStatus::Active, false, None))));
        count(&e);
    }
    assert!(has(&e, |e| matches!(e, Effect::Claim { .. })), "{e:?}");
    let e = t.feed(Event::Claimed(Ok(())));
    assert_eq!(e, vec![Effect::RefreshIn(CLAIM_WAIT)]);
    let e = t.after(CLAIM_WAIT).feed(Event::RefreshDue);
    count(&e);
    assert!(has(&e, |e| matches!(e, Effect::ReadBudget { .. })), "{e:?}");
    let e = t.feed(budget(&[], &[], Some(450)));
    count(&e);
    assert_eq!(e, vec![Effect::SetDraining]);
    let e = t.feed(Event::Drained(Ok(())));
    assert!(has(&e, |e| *e == Effect::RefreshIn(SETTLE)), "{e:?}");
    let e = t.after(SETTLE).feed(Event::RefreshDue);
    count(&e);
    assert_eq!(e, vec![Effect::ReadBudget { instances: false }]);
    let mark = rfc3339(wall0() + t.now - SETTLE - CLAIM_WAIT);
    let e = t.feed(budget(&[ME], &[(ME, &mark)], None));
    assert!(
        !has(&e, |e| matches!(e, Effect::Activate { .. })),
        "kept: {e:?}"
    );
    assert!(t.m.is_idle());
    calls
}

#[test]
fn idle_reads_are_spaced_by_the_cluster_size_and_never_more_than_once_a_minute() {
    // N × 1.1 reads (a tenth of a DescribeClusters each) at 10 % of 20/s.
    assert_eq!(idle_every(20, 10.0), Duration::from_secs(60));
    assert_eq!(idle_every(450, 10.0).as_secs(), 247);
    assert_eq!(idle_every(5_000, 10.0).as_secs(), 2_750);
    // A larger share, shorter waits; never under a minute.
    assert_eq!(idle_every(5_000, 50.0).as_secs(), 550);
    assert_eq!(idle_every(5_000, 100.0).as_secs(), 275);
    assert_eq!(idle_every(1, 100.0), IDLE_MIN);
}

#[test]
fn the_first_read_is_spread_over_the_first_seconds_and_later_ones_jittered() {
    let mut t = Table::new(false);
    let e = t.m.start(t0());
    let [Effect::RefreshIn(first)] = e.as_slice() else {
        panic!("{e:?}")
    };
    assert!(*first < FIRST_READ_SPREAD);
    t.after(*first);
    let e = t.feed(Event::RefreshDue);
    assert_eq!(e, vec![Effect::ReadView { instances: true }]);
    let e = t.feed(Event::View(Ok(facts(EcsStatus::Active, false, Some(450)))));
    let next = e
        .iter()
        .find_map(|e| match e {
            Effect::RefreshIn(d) => Some(*d),
            _ => None,
        })
        .expect("timer");
    // The first read that learns the size lands at a random point of the spacing (so a
    // fleet started together spreads out), never sooner than a minute.
    assert!(
        next >= IDLE_MIN && next < Duration::from_secs(248),
        "{next:?}"
    );
    // The size is known now: the next idle read is of this instance alone, and the one
    // after it spaced by the size with 0–20 % jitter.
    let e = t.after(next).feed(Event::RefreshDue);
    assert_eq!(e, vec![Effect::ReadView { instances: false }]);
    let e = t.feed(Event::View(Ok(facts(EcsStatus::Active, false, None))));
    let next = e
        .iter()
        .find_map(|e| match e {
            Effect::RefreshIn(d) => Some(*d),
            _ => None,
        })
        .expect("timer");
    assert!(
        next >= Duration::from_secs(247) && next < Duration::from_secs(298),
        "{next:?}"
    );
}

#[test]
fn a_healthy_idle_node_makes_no_decision_reads() {
    let mut t = Table::new(false);
    t.known(EcsStatus::Active, false, 20);
    for _ in 0..100 {
        assert!(
            t.after(Duration::from_secs(1))
                .plan(EcsIntent::Recovered)
                .is_empty()
        );
        assert!(t.plan(EcsIntent::Steady).is_empty());
    }
}

#[test]
fn a_drain_and_its_recheck_take_eight_calls_whatever_the_cluster_size() {
    // Known ACTIVE: the claim's DRAINING list is the decision's read of this instance, so
    // nothing is read before the claim, and the size the idle read learned still holds
    // (learned again only when older than COUNT_EVERY) — six calls.
    let mut t = Table::new(false);
    t.known(EcsStatus::Active, false, 450);
    assert_eq!(drain_to_the_end(&mut t), 6);
    // Known DRAINING by someone else (maybe set ACTIVE since): read first — eight.
    let mut t = Table::new(false);
    t.known(EcsStatus::Draining, false, 450);
    t.m.instances = None;
    assert_eq!(drain_to_the_end(&mut t), 8);
}

/// An operator drained this instance and the idle view has not seen it: the claim's budget
/// read shows it, the claim is withdrawn (again, until it is) and nothing is drained.
#[test]
fn an_unseen_operators_drain_gets_the_claim_withdrawn_never_drained() {
    let mut t = Table::new(false);
    t.known(EcsStatus::Active, false, 20);
    let e = t.plan(drain());
    assert!(has(&e, |e| matches!(e, Effect::Claim { .. })), "{e:?}");
    t.feed(Event::Claimed(Ok(())));
    t.after(CLAIM_WAIT).feed(Event::RefreshDue);
    let mark = rfc3339(wall0() + t.now - CLAIM_WAIT);
    let e = t.feed(budget(&[ME], &[(ME, &mark)], Some(20)));
    assert!(has(&e, |e| *e == Effect::Withdraw), "{e:?}");
    assert!(!has(&e, |e| *e == Effect::SetDraining), "{e:?}");
    assert!(has(&e, |e| *e == Effect::Say(Note::DrainedBySomeoneElse)));
    // The withdrawal fails: it is retried before anything else, however the disk asks.
    t.feed(Event::Withdrawn(Err(Failure::new("connection reset"))));
    let retry = t.m.retry_at.expect("a retry") - (t0() + t.now);
    let e = t.after(retry).plan(EcsIntent::Drain { critical: true });
    assert_eq!(e, vec![Effect::Withdraw]);
    t.feed(Event::Withdrawn(Ok(())));
    // Then the status is known as read: DRAINING by someone else, read again before acting.
    let e = t.after(Duration::from_secs(70)).plan(drain());
    assert_eq!(e, vec![Effect::ReadFresh]);
}

/// A drain whose SetDraining failed may have half happened: the retry reads this instance
/// before claiming again, whatever was known.
#[test]
fn a_failed_drain_below_critical_is_retried_on_a_new_read() {
    let mut t = Table::new(false);
    claim_checked_next(&mut t, 10);
    let e = t.feed(budget(&[], &[], Some(10)));
    assert_eq!(e, vec![Effect::SetDraining]);
    t.feed(Event::Drained(Err(Failure::new("connection reset"))));
    let retry = t.m.retry_at.expect("a retry") - (t0() + t.now);
    let e = t.after(retry).feed(Event::RefreshDue);
    assert_eq!(e, vec![Effect::ReadFresh]);
}

#[test]
fn a_stale_view_of_someone_elses_drain_does_not_stop_a_drain() {
    // An operator drained this instance and set it ACTIVE again; the idle view still
    // says DRAINING. The crossing reads fresh and drains.
    let mut t = Table::new(false);
    t.known(EcsStatus::Draining, false, 20);
    let e = t.after(Duration::from_secs(30)).plan(drain());
    assert_eq!(e, vec![Effect::ReadFresh]);
    let e = t.feed(Event::Fresh(Ok(facts(EcsStatus::Active, false, None))));
    assert!(has(&e, |e| matches!(e, Effect::Claim { .. })), "{e:?}");
}

#[test]
fn critical_past_a_stale_view_drains_at_once_past_the_budget() {
    let mut t = Table::new(false);
    t.known(EcsStatus::Draining, false, 20);
    t.after(Duration::from_secs(30));
    assert_eq!(
        t.plan(EcsIntent::Drain { critical: true }),
        vec![Effect::ReadFresh]
    );
    let e = t.feed(Event::Fresh(Ok(facts(EcsStatus::Active, false, None))));
    assert!(
        has(
            &e,
            |e| matches!(e, Effect::Drain { culprit: Some(f), .. } if f == "bad-task")
        ),
        "{e:?}"
    );
    let e = t.feed(Event::Drained(Ok(())));
    assert!(
        !has(&e, |e| matches!(e, Effect::ReadBudget { .. })),
        "never undone at critical: {e:?}"
    );
}

#[test]
fn an_operators_drain_is_never_claimed() {
    let mut t = Table::new(false);
    // Seen DRAINING without the mark by a read: no claim, said once, looked at again a
    // minute later, not every second.
    t.known(EcsStatus::Draining, false, 20);
    assert_eq!(t.plan(drain()), vec![Effect::ReadFresh]);
    let e = t.feed(Event::Fresh(Ok(facts(EcsStatus::Draining, false, None))));
    assert!(!has(&e, |e| matches!(e, Effect::Claim { .. })), "{e:?}");
    assert!(has(&e, |e| *e == Effect::Say(Note::DrainedBySomeoneElse)));
    for _ in 0..50 {
        assert!(t.after(Duration::from_secs(1)).plan(drain()).is_empty());
    }
    assert_eq!(
        t.after(Duration::from_secs(30)).plan(drain()),
        vec![Effect::ReadFresh]
    );
}

#[test]
fn a_drain_by_someone_else_between_the_read_and_the_claim_is_left_to_them() {
    let mut t = Table::new(false);
    t.known(EcsStatus::Active, false, 20);
    t.plan(drain());
    t.feed(Event::Fresh(Ok(facts(EcsStatus::Active, false, None))));
    t.feed(Event::Claimed(Ok(())));
    t.after(CLAIM_WAIT).feed(Event::RefreshDue);
    let mark = rfc3339(wall0());
    let e = t.feed(budget(&[ME], &[(ME, &mark)], Some(20)));
    assert!(has(&e, |e| *e == Effect::Withdraw), "{e:?}");
    assert!(!has(&e, |e| *e == Effect::SetDraining), "{e:?}");
}

#[test]
fn the_budget_is_checked_again_once_after_draining_never_on_later_refreshes() {
    let mut t = Table::new(false);
    t.known(EcsStatus::Active, false, 10);
    drain_to_the_end(&mut t);
    // A scale-in later drains other instances: nothing is undone.
    for _ in 0..5 {
        t.after(Duration::from_secs(90));
        t.m.idle_at = t0() + t.now;
        let e = t.feed(Event::RefreshDue);
        assert!(
            !has(&e, |e| matches!(e, Effect::ReadBudget { .. })),
            "{e:?}"
        );
        let e = t.feed(Event::View(Ok(facts(EcsStatus::Draining, true, None))));
        assert!(!has(&e, |e| matches!(e, Effect::Activate { .. })), "{e:?}");
        let e = t.plan(drain());
        assert_eq!(e.iter().map(is_call).sum::<u32>(), 0, "{e:?}");
    }
}

#[test]
fn a_lost_claim_is_withdrawn_and_counted_once_and_retried_with_a_room_check_first() {
    let mut t = Table::new(false);
    claim_checked_next(&mut t, 10);
    // Someone else drained another instance: the budget of 1 is spent.
    let e = t.feed(budget(&[OTHER], &[], Some(10)));
    assert!(has(&e, |e| *e == Effect::Withdraw), "{e:?}");
    assert!(has(&e, |e| *e == Effect::CountSuppressed), "{e:?}");
    t.feed(Event::Withdrawn(Ok(())));
    // Retried a minute or so later, on a fresh read; no claim while there is no room,
    // and the suppression is not counted again.
    assert!(t.after(Duration::from_secs(30)).plan(drain()).is_empty());
    // The room check's DRAINING list is the decision's read of this instance.
    let e = t.after(Duration::from_secs(50)).plan(drain());
    assert!(!has(&e, |e| *e == Effect::ReadFresh), "{e:?}");
    assert_eq!(e.last(), Some(&Effect::ReadBudget { instances: false }));
    let e = t.feed(budget(&[OTHER], &[], None));
    assert!(!has(&e, |e| matches!(e, Effect::Claim { .. })), "{e:?}");
    assert!(!has(&e, |e| *e == Effect::CountSuppressed), "{e:?}");
}

#[test]
fn an_earlier_claim_wins_even_when_a_lagging_read_hides_this_ones() {
    let mut t = Table::new(false);
    claim_checked_next(&mut t, 10);
    // Another instance claimed a second before; this one's own claim is not visible yet.
    let claimed = wall0() + t.now - CLAIM_WAIT;
    let earlier = rfc3339(claimed - Duration::from_secs(1));
    let e = t.feed(budget(&[], &[(OTHER, &earlier)], Some(10)));
    assert!(has(&e, |e| *e == Effect::Withdraw), "{e:?}");
    // And the later claim loses to this one.
    let mut t = Table::new(false);
    claim_checked_next(&mut t, 10);
    let claimed = wall0() + t.now - CLAIM_WAIT;
    let later = rfc3339(claimed + Duration::from_secs(1));
    let e = t.feed(budget(&[], &[(OTHER, &later)], Some(10)));
    assert_eq!(e, vec![Effect::SetDraining]);
}

#[test]
fn an_undo_after_draining_removes_the_mark_at_once_and_keeps_the_culprit() {
    let mut t = Table::new(false);
    claim_checked_next(&mut t, 10);
    t.feed(budget(&[], &[], Some(10)));
    t.feed(Event::Drained(Ok(())));
    t.after(SETTLE).feed(Event::RefreshDue);
    // Another instance drained a second earlier and shows up now.
    let mine = rfc3339(wall0());
    let earlier = rfc3339(wall0() - Duration::from_secs(1));
    let e = t.feed(budget(
        &[ME, OTHER],
        &[(ME, &mine), (OTHER, &earlier)],
        None,
    ));
    assert!(
        has(&e, |e| *e == Effect::Activate { keep_culprit: true }),
        "{e:?}"
    );
    let e = t.feed(Event::Activated(Ok(())));
    let shown = e.iter().find_map(|e| match e {
        Effect::Show(k) => Some(k.clone()),
        _ => None,
    });
    let shown = shown.expect("shown");
    assert_eq!(shown.status, EcsStatus::Active);
    assert_eq!(
        shown.mark, None,
        "no mark left that looks like a live claim"
    );
}

#[test]
fn the_culprit_is_put_with_the_claim_whatever_the_view_predicted() {
    let mut t = Table::new(false);
    // The view predicted a suppression (the budget spent); a fresh read allows the drain.
    t.known(EcsStatus::Active, false, 10);
    let e = t.plan(drain());
    assert!(
        has(
            &e,
            |e| matches!(e, Effect::Claim { culprit: Some(f), .. } if f == "bad-task")
        ),
        "{e:?}"
    );
}

#[test]
fn a_throttled_decision_read_delays_the_drain_counted_and_retried_never_decided() {
    let mut t = Table::new(false);
    // Known DRAINING by someone else: a drain must read this instance first.
    t.known(EcsStatus::Draining, false, 10);
    t.plan(drain());
    let e = t.feed(Event::Fresh(Err(Failure::throttled("Rate exceeded"))));
    assert!(has(&e, |e| *e == Effect::CountDelayed), "{e:?}");
    assert!(
        has(
            &e,
            |e| matches!(e, Effect::Say(Note::Delayed { error, .. }) if error.throttled)
        ),
        "{e:?}"
    );
    assert!(!has(&e, |e| matches!(
        e,
        Effect::Claim { .. } | Effect::Drain { .. }
    )));
    // Not before the backoff; then on a fresh read.
    assert!(t.plan(drain()).is_empty());
    let wait = match e.last() {
        Some(Effect::RefreshIn(d)) => *d,
        other => panic!("{other:?}"),
    };
    assert!(wait <= Duration::from_secs(1), "{wait:?}");
    let e = t.after(wait).feed(Event::RefreshDue);
    assert_eq!(e, vec![Effect::ReadFresh]);
}

#[test]
fn recovery_gives_back_only_after_a_fresh_read_and_a_good_lifecycle_read() {
    let mut t = Table::new(false);
    t.known(EcsStatus::Draining, true, 10);
    assert_eq!(t.plan(EcsIntent::Recovered), vec![Effect::ReadFresh]);
    let e = t.feed(Event::Fresh(Ok(facts(EcsStatus::Draining, true, None))));
    assert_eq!(e.last(), Some(&Effect::ReadLifecycle));
    // IMDS failing is not "in service".
    let e = t.feed(Event::Lifecycle(Err(Failure::new("IMDS timed out"))));
    assert!(!has(&e, |e| matches!(e, Effect::Activate { .. })), "{e:?}");
    let wait = match e.last() {
        Some(Effect::RefreshIn(d)) => *d,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        t.after(wait).feed(Event::RefreshDue),
        vec![Effect::ReadFresh]
    );
    t.feed(Event::Fresh(Ok(facts(EcsStatus::Draining, true, None))));
    let e = t.feed(Event::Lifecycle(Ok(Lifecycle::InService)));
    assert_eq!(
        e,
        vec![Effect::Activate {
            keep_culprit: false
        }]
    );
}

#[test]
fn recovery_leaves_alone_an_instance_an_operator_drained() {
    let mut t = Table::new(false);
    // The idle view said ours; a fresh read shows the operator re-drained it by hand.
    t.known(EcsStatus::Draining, true, 10);
    t.plan(EcsIntent::Recovered);
    let e = t.feed(Event::Fresh(Ok(facts(EcsStatus::Draining, false, None))));
    assert!(!has(&e, |e| matches!(
        e,
        Effect::ReadLifecycle | Effect::Activate { .. }
    )));
}

#[test]
fn observe_mode_reads_and_says_but_never_claims_drains_or_gives_back() {
    let mut t = Table::new(true);
    t.known(EcsStatus::Active, false, 10);
    t.plan(drain());
    let e = t.feed(Event::Fresh(Ok(facts(EcsStatus::Active, false, None))));
    assert!(has(&e, |e| *e == Effect::Say(Note::Observed(EcsAction::Drain))));
    assert!(!has(&e, |e| matches!(
        e,
        Effect::Claim { .. } | Effect::Drain { .. }
    )));
    // An instance carrying diskguard's mark from an earlier enforce run is not given back.
    let mut t = Table::new(true);
    t.known(EcsStatus::Draining, true, 10);
    t.plan(EcsIntent::Recovered);
    let e = t.feed(Event::Fresh(Ok(facts(EcsStatus::Draining, true, None))));
    assert!(!has(&e, |e| matches!(
        e,
        Effect::ReadLifecycle | Effect::Activate { .. }
    )));
}

#[test]
fn an_idle_read_that_fails_marks_the_status_unknown_and_says_so_once() {
    let mut t = Table::new(false);
    t.known(EcsStatus::Active, false, 10);
    for i in 0..3 {
        t.m.idle_at = t0() + t.now;
        t.feed(Event::RefreshDue);
        let e = t.feed(Event::View(Err(Failure::new("connection refused"))));
        let said = has(&e, |e| matches!(e, Effect::Say(Note::ViewFailed(_))));
        assert_eq!(said, i == 0, "{e:?}");
    }
    t.m.idle_at = t0() + t.now;
    t.feed(Event::RefreshDue);
    let e = t.feed(Event::View(Ok(facts(EcsStatus::Active, false, None))));
    assert!(has(&e, |e| *e == Effect::Say(Note::ViewRecovered)));
}

#[test]
fn an_eviction_names_the_culprit_at_once_and_once() {
    let mut t = Table::new(false);
    t.known(EcsStatus::Active, false, 10);
    let wish = Wish {
        intent: EcsIntent::Steady,
        culprit: Some("bad-task".into()),
        evicting: true,
        replace: false,
    };
    let e = t.feed(Event::Plan(wish.clone()));
    assert_eq!(e, vec![Effect::SetCulprit("bad-task".into())]);
    t.feed(Event::CulpritSet(Ok(())));
    assert!(t.feed(Event::Plan(wish)).is_empty());
}

#[test]
fn search_logs_only_when_what_it_sees_changes() {
    let mut s = Search::new();
    assert!(s.missed("a").0);
    assert!(!s.missed("a").0);
    assert!(s.missed("b").0);
}

/// After a failed action the read before it no longer says what is there: read again.
#[test]
fn a_retry_after_a_failed_action_reads_again_however_young_the_read() {
    let mut t = Table::new(false);
    t.known(EcsStatus::Active, false, 10);
    t.plan(EcsIntent::Drain { critical: true });
    let e = t.feed(Event::Fresh(Ok(facts(EcsStatus::Active, false, None))));
    assert!(has(&e, |e| matches!(e, Effect::Drain { .. })), "{e:?}");
    t.feed(Event::Drained(Err(Failure::new("connection reset"))));
    let retry = t.m.retry_at.expect("a retry") - (t0() + t.now);
    let e = t.after(retry).feed(Event::RefreshDue);
    assert_eq!(e, vec![Effect::ReadFresh]);
}

fn throttled() -> Failure {
    Failure::throttled("ThrottlingException: Rate exceeded")
}

fn refresh_in(e: &[Effect]) -> Duration {
    match e.last() {
        Some(Effect::RefreshIn(d)) => *d,
        other => panic!("a timer last: {other:?}"),
    }
}

/// A throttled budget read keeps the claim (its time is its place in the queue) and reads
/// again after the backoff, spending no other call; never a drain on the failed read.
#[test]
fn a_throttled_budget_read_is_retried_on_the_kept_claim_spending_no_other_call() {
    let mut t = Table::new(false);
    claim_checked_next(&mut t, 10);
    let e = t.feed(Event::Budget(Err(throttled())));
    assert!(has(&e, |e| *e == Effect::CountDelayed), "{e:?}");
    assert!(
        !has(&e, |e| matches!(e, Effect::Withdraw | Effect::SetDraining)),
        "{e:?}"
    );
    let e = t.after(refresh_in(&e)).feed(Event::RefreshDue);
    assert!(matches!(e[..], [Effect::ReadBudget { .. }]), "{e:?}");
    let e = t.feed(budget(&[], &[], None));
    assert_eq!(e, vec![Effect::SetDraining]);
}

/// Throttled past CLAIM_KEEP: the claim is withdrawn, never drained on; the retry claims
/// again at once (a failed read says nothing about room, so no room check first).
#[test]
fn a_claim_throttled_past_claim_keep_is_withdrawn_and_never_drained_on() {
    let mut t = Table::new(false);
    claim_checked_next(&mut t, 10);
    let claimed = t.now - CLAIM_WAIT;
    let mut tries = 0;
    let e = loop {
        let e = t.feed(Event::Budget(Err(throttled())));
        assert!(has(&e, |e| *e == Effect::CountDelayed), "{e:?}");
        assert!(!has(&e, |e| *e == Effect::SetDraining), "{e:?}");
        if has(&e, |e| *e == Effect::Withdraw) {
            break e;
        }
        tries += 1;
        let e = t.after(refresh_in(&e)).feed(Event::RefreshDue);
        assert!(matches!(e[..], [Effect::ReadBudget { .. }]), "{e:?}");
    };
    assert!(tries >= 3, "kept through {tries} backoffs: {e:?}");
    assert!(t.now - claimed < CLAIM_KEEP, "{:?}", t.now - claimed);
    t.feed(Event::Withdrawn(Ok(())));
    let retry = t.m.retry_at.expect("a retry") - (t0() + t.now);
    let e = t.after(retry).feed(Event::RefreshDue);
    assert!(has(&e, |e| matches!(e, Effect::Claim { .. })), "{e:?}");
}

/// At critical a claim waiting on a throttled budget read is not waited for; the drain
/// rests on a new read of this instance, and a throttled one is never drained on.
#[test]
fn critical_does_not_wait_for_a_throttled_claim_and_drains_only_on_a_new_read() {
    let mut t = Table::new(false);
    claim_checked_next(&mut t, 1000);
    t.feed(Event::Budget(Err(throttled())));
    let critical = EcsIntent::Drain { critical: true };
    let e = t.after(Duration::from_millis(300)).plan(critical);
    assert_eq!(e, vec![Effect::ReadFresh]);
    t.feed(Event::Fresh(Err(throttled())));
    let retry = t.m.retry_at.expect("a retry") - (t0() + t.now);
    let e = t.after(retry).plan(critical);
    assert_eq!(e, vec![Effect::ReadFresh], "never on the failed read");
    let e = t.feed(Event::Fresh(Ok(facts(EcsStatus::Active, false, None))));
    assert!(has(&e, |e| matches!(e, Effect::Drain { .. })), "{e:?}");
}

fn replace_wish() -> Event {
    Event::Plan(Wish {
        intent: drain(),
        culprit: None,
        evicting: false,
        replace: true,
    })
}

fn replace_facts(status: EcsStatus, mark: bool, tasks: u32, draining: u32) -> Event {
    Event::ReplaceRead(Ok(super::super::events::ReplaceFacts {
        status,
        mark: mark.then(|| "2026-11-28T09:00:00.000Z".into()),
        tasks,
        ec2_instance_id: Some("i-0abc".into()),
        instances: 10,
        draining,
    }))
}

/// Drained by diskguard, no task left, the cluster within its share: one replacement, and
/// the plan asking again does not ask the group again.
#[test]
fn a_stuck_drained_node_is_replaced_once() {
    let mut t = Table::new(false);
    t.known(EcsStatus::Draining, true, 10);
    assert_eq!(t.feed(replace_wish()), vec![Effect::ReadForReplacement]);
    let e = t.feed(replace_facts(EcsStatus::Draining, true, 0, 1));
    assert_eq!(
        e,
        vec![Effect::Replace {
            ec2_instance_id: "i-0abc".into(),
            respect_grace_period: true
        }]
    );
    let e = t.feed(Event::Replaced(Ok(Some("ecs-nodes".into()))));
    assert!(has(&e, |e| *e == Effect::CountReplaced), "{e:?}");
    for _ in 0..7 {
        let e = t.after(Duration::from_secs(120)).feed(replace_wish());
        assert!(
            !has(&e, |e| matches!(e, Effect::ReadForReplacement)),
            "{e:?}"
        );
        t.feed(Event::Fresh(Ok(facts(EcsStatus::Draining, true, None))));
    }
    // Still there 15 minutes on (the call fell in the group's grace period): asked again.
    let e = t.after(Duration::from_secs(60)).feed(replace_wish());
    assert!(
        has(&e, |e| matches!(e, Effect::ReadForReplacement)),
        "{e:?}"
    );
}

/// Never for a drain that is not diskguard's; not while tasks run; not past the fleet's
/// share — each reason said once, looked at again after RECHECK.
#[test]
fn a_replacement_waits_for_its_tasks_and_the_fleet_share_and_never_takes_others_drains() {
    let mut t = Table::new(false);
    t.known(EcsStatus::Draining, false, 10);
    t.feed(replace_wish());
    let e = t.feed(replace_facts(EcsStatus::Draining, false, 0, 1));
    assert!(!has(&e, |e| matches!(e, Effect::Replace { .. })), "{e:?}");
    assert!(!has(&e, |e| matches!(e, Effect::Say(_))), "{e:?}");
    let e = t.after(Duration::from_secs(30)).feed(replace_wish());
    assert!(
        !has(&e, |e| matches!(e, Effect::ReadForReplacement)),
        "{e:?}"
    );

    let mut t = Table::new(false);
    t.known(EcsStatus::Draining, true, 10);
    t.feed(replace_wish());
    let e = t.feed(replace_facts(EcsStatus::Draining, true, 2, 1));
    assert!(
        has(
            &e,
            |e| matches!(e, Effect::Say(Note::ReplaceWaits(w)) if w.contains("2 task"))
        ),
        "{e:?}"
    );
    let e = t.after(Duration::from_secs(30)).feed(replace_wish());
    assert!(
        !has(&e, |e| matches!(e, Effect::ReadForReplacement)),
        "{e:?}"
    );
    t.feed(Event::Fresh(Ok(facts(EcsStatus::Draining, true, None))));
    let e = t.after(Duration::from_secs(45)).feed(replace_wish());
    assert_eq!(e, vec![Effect::ReadForReplacement]);
    // 3 of 10 DRAINING: over 20 % (2 of 10).
    let e = t.feed(replace_facts(EcsStatus::Draining, true, 0, 3));
    assert!(
        has(
            &e,
            |e| matches!(e, Effect::Say(Note::ReplaceWaits(w)) if w.contains("3 of the cluster's 10"))
        ),
        "{e:?}"
    );
    assert!(!has(&e, |e| matches!(e, Effect::Replace { .. })), "{e:?}");
}

/// Observe mode says it would, once, and asks nothing of Auto Scaling.
#[test]
fn observe_mode_only_says_it_would_replace() {
    let mut t = Table::new(true);
    t.known(EcsStatus::Draining, true, 10);
    t.feed(replace_wish());
    let e = t.feed(replace_facts(EcsStatus::Draining, true, 0, 1));
    assert_eq!(e, vec![Effect::Say(Note::WouldReplace)]);
    let e = t.after(Duration::from_secs(120)).feed(replace_wish());
    assert!(
        !has(&e, |e| matches!(e, Effect::ReadForReplacement)),
        "{e:?}"
    );
}

/// A throttled SetInstanceHealth is retried (on a new read); a denied one is said once and
/// not asked again this episode; neither is counted as done.
#[test]
fn a_throttled_replacement_is_retried_a_denied_one_said_once_neither_counted() {
    let mut t = Table::new(false);
    t.known(EcsStatus::Draining, true, 10);
    t.feed(replace_wish());
    t.feed(replace_facts(EcsStatus::Draining, true, 0, 1));
    let e = t.feed(Event::Replaced(Err(Failure::throttled("Rate exceeded"))));
    assert!(!has(&e, |e| *e == Effect::CountReplaced), "{e:?}");
    let retry = t.m.retry_at.expect("a retry") - (t0() + t.now);
    let e = t.after(retry).feed(replace_wish());
    assert_eq!(e, vec![Effect::ReadForReplacement]);
    // Denied (the group is not tagged for diskguard): said once, not asked again.
    t.feed(replace_facts(EcsStatus::Draining, true, 0, 1));
    let e = t.feed(Event::Replaced(Err(Failure::new("AccessDenied"))));
    assert!(
        has(
            &e,
            |e| matches!(e, Effect::Say(Note::ReplaceUnavailable(w)) if w.contains("AccessDenied"))
        ),
        "{e:?}"
    );
    let e = t.after(Duration::from_secs(600)).feed(replace_wish());
    assert!(
        !has(&e, |e| matches!(e, Effect::ReadForReplacement)),
        "{e:?}"
    );
}

/// A disk that no longer asks for a drain by the time its claim is checked (reclaim or an
/// eviction freed it while a throttled read was retried) gets the claim withdrawn.
#[test]
fn a_claim_checked_after_the_disk_recovered_is_withdrawn_not_drained() {
    let mut t = Table::new(false);
    claim_checked_next(&mut t, 10);
    let e = t.feed(Event::Budget(Err(throttled())));
    t.after(Duration::from_millis(300)).plan(EcsIntent::Steady);
    let e = t.after(refresh_in(&e)).feed(Event::RefreshDue);
    assert!(matches!(e[..], [Effect::ReadBudget { .. }]), "{e:?}");
    let e = t.feed(budget(&[], &[], None));
    assert_eq!(e, vec![Effect::Withdraw]);
}
