//! The maintenance machine's transitions, as tables: (phase, event, now) → (phase,
//! effects). No etcd, no clock.

// A test sets up the one field its row is about on an otherwise fresh machine.
#![allow(clippy::field_reassign_with_default)]

use super::*;

const WARN: f64 = 80.0;
const MIB: u64 = 1024 * 1024;
const ME: u64 = 7;

fn t(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
}

fn nospace(member: u64) -> EtcdAlarm {
    EtcdAlarm {
        member_id: member,
        alarm: "NOSPACE".into(),
    }
}

/// db / in-use in MiB against a 16 MiB quota.
fn obs(db: u64, in_use: u64, revision: u64, alarms: Vec<EtcdAlarm>) -> Observation {
    Observation {
        db_bytes: db * MIB,
        in_use_bytes: Some(in_use * MIB),
        quota_bytes: 16 * MIB,
        revision,
        member_id: ME,
        alarms,
    }
}

fn kinds(effects: &[Effect]) -> Vec<&'static str> {
    effects
        .iter()
        .map(|e| match e {
            Effect::Compact(_) => "compact",
            Effect::TakeLock => "lock",
            Effect::CheckCluster { lockless: false } => "check",
            Effect::CheckCluster { lockless: true } => "check-lockless",
            Effect::Defragment { .. } => "defrag",
            Effect::Disarm(_) => "disarm",
            Effect::ReleaseLock(_) => "release",
            Effect::Observe => "observe",
            Effect::Info(_) => "info",
            Effect::Warn(_) => "warn",
        })
        .collect()
}

fn healthy(first: bool) -> ClusterCheck {
    ClusterCheck {
        unhealthy: Vec::new(),
        lock_holder: None,
        first_in_line: first,
    }
}

#[test]
fn below_warn_percent_nothing_happens() {
    let mut m = Machine::default();
    for (o, at) in [(obs(12, 3, 10, vec![]), 0), (obs(1, 1, 11, vec![]), 15)] {
        assert!(m.step(Event::Observed(o), WARN, t(at)).is_empty());
        assert_eq!(m.phase, Phase::Idle);
    }
}

#[test]
#[rustfmt::skip]
fn the_whole_sequence_under_nospace_after_keys_are_deleted() {
    let mut m = Machine::default();
    let full = || vec![nospace(ME)];
    let lockless = Phase::CheckingCluster { lease: None, lockless: true };
    let defrag = Phase::Defragmenting { lease: None };
    // (event, now, phase after, effects)
    let rows: Vec<(Event, u64, Phase, Vec<&str>)> = vec![
        (Event::Observed(obs(17, 13, 24, full())), 0, Phase::Compacting, vec!["info", "compact"]),
        (Event::Compacted(24), 1, Phase::Idle, vec!["info", "observe"]),
        // Compacted under NOSPACE: one defragment to learn what it gave back (here only
        // the fragmentation: the data is live).
        (Event::Observed(obs(17, 16, 24, full())), 1, Phase::Locking, vec!["lock"]),
        (Event::LockNoSpace, 1, lockless, vec!["check-lockless"]),
        (Event::Cluster(healthy(true)), 1, defrag, vec!["info", "defrag"]),
        (Event::Defragmented, 2, Phase::Idle, vec!["info", "observe"]),
        // Still over the quota and all live: nothing to gain; said once.
        (Event::Observed(obs(17, 16, 24, full())), 2, Phase::Idle, vec!["info"]),
        (Event::Observed(obs(17, 16, 24, full())), 16, Phase::Idle, vec![]),
        // Keys deleted: under NOSPACE the moved revision is compacted at once, though
        // the in-use size has not moved (no write commits to free the pages).
        (Event::Observed(obs(17, 16, 25, full())), 31, Phase::Compacting, vec!["info", "compact"]),
        (Event::Compacted(25), 31, Phase::Idle, vec!["info", "observe"]),
        (Event::Observed(obs(17, 16, 25, full())), 31, Phase::Locking, vec!["lock"]),
        (Event::LockNoSpace, 31, lockless, vec!["check-lockless"]),
        (Event::Cluster(healthy(true)), 31, defrag, vec!["info", "defrag"]),
        (Event::Defragmented, 32, Phase::Idle, vec!["info", "observe"]),
        (Event::Observed(obs(4, 4, 25, full())), 32, Phase::Disarming, vec!["disarm"]),
        (Event::Disarmed, 32, Phase::Idle, vec!["info", "observe"]),
        (Event::Observed(obs(4, 4, 25, vec![])), 32, Phase::Idle, vec![]),
    ];
    for (i, (event, at, phase, effects)) in rows.into_iter().enumerate() {
        let got = m.step(event.clone(), WARN, t(at));
        assert_eq!((m.phase, kinds(&got)), (phase, effects), "row {i}: {event:?}");
    }
}

#[test]
fn with_the_lock_it_is_released_after_the_defragment() {
    let mut m = Machine::default();
    m.step(Event::Observed(obs(14, 3, 40, vec![])), WARN, t(0));
    m.step(Event::Compacted(40), WARN, t(0));
    let e = m.step(Event::Observed(obs(14, 3, 40, vec![])), WARN, t(0));
    assert_eq!(kinds(&e), vec!["lock"]);
    let e = m.step(Event::LockTaken(99), WARN, t(0));
    assert_eq!(e, vec![Effect::CheckCluster { lockless: false }]);
    let e = m.step(Event::Cluster(healthy(false)), WARN, t(0));
    assert!(
        e.contains(&Effect::Defragment { lease: Some(99) }),
        "first_in_line only matters without the lock: {e:?}"
    );
    let e = m.step(Event::Defragmented, WARN, t(1));
    assert_eq!(kinds(&e), vec!["info", "release", "observe"]);
    assert!(e.contains(&Effect::ReleaseLock(99)));
}

#[test]
fn never_defragments_while_a_member_is_unhealthy_and_gives_the_lock_back() {
    let mut m = Machine::default();
    m.phase = Phase::CheckingCluster {
        lease: Some(5),
        lockless: false,
    };
    let check = ClusterCheck {
        unhealthy: vec!["etcd-3: no answer".into()],
        ..healthy(true)
    };
    let e = m.step(Event::Cluster(check.clone()), WARN, t(0));
    assert_eq!(kinds(&e), vec!["release", "info"]);
    assert_eq!(m.phase, Phase::Idle);
    // The same reason again is not logged again.
    m.phase = Phase::CheckingCluster {
        lease: Some(6),
        lockless: false,
    };
    assert_eq!(
        kinds(&m.step(Event::Cluster(check), WARN, t(15))),
        vec!["release"]
    );
}

#[test]
fn without_the_lock_only_the_first_in_line_goes_and_never_past_a_holder() {
    for (check, defrags) in [
        (healthy(true), true),
        (healthy(false), false),
        (
            ClusterCheck {
                lock_holder: Some("member 3".into()),
                ..healthy(true)
            },
            false,
        ),
    ] {
        let mut m = Machine::default();
        m.phase = Phase::CheckingCluster {
            lease: None,
            lockless: true,
        };
        let e = m.step(Event::Cluster(check.clone()), WARN, t(0));
        assert_eq!(kinds(&e).contains(&"defrag"), defrags, "{check:?}");
    }
}

#[test]
fn a_busy_lock_waits_for_the_next_observation() {
    let mut m = Machine::default();
    m.phase = Phase::Locking;
    let e = m.step(Event::LockBusy("member 1 on host-a".into()), WARN, t(0));
    assert_eq!(kinds(&e), vec!["info"]);
    assert_eq!(m.phase, Phase::Idle);
    // Compacted a moment ago, still fragmented: tries the lock again.
    m.compacted = Some((40, t(0)));
    let e = m.step(Event::Observed(obs(14, 3, 41, vec![])), WARN, t(15));
    assert_eq!(kinds(&e), vec!["lock"]);
}

#[test]
fn while_writes_are_taken_compaction_waits_compact_every() {
    let mut m = Machine::default();
    m.compacted = Some((40, t(0)));
    let live = obs(14, 13, 50, vec![]);
    assert_eq!(
        kinds(&m.step(Event::Observed(live.clone()), WARN, t(60))),
        vec!["info"]
    );
    let at = COMPACT_EVERY.as_secs();
    assert_eq!(
        kinds(&m.step(Event::Observed(live), WARN, t(at))),
        vec!["info", "compact"]
    );
}

#[test]
fn a_failure_backs_off_doubling_and_releases_the_lock() {
    let mut m = Machine::default();
    m.phase = Phase::Defragmenting { lease: Some(8) };
    let e = m.step(Event::Failed("etcd http://x: no answer".into()), WARN, t(0));
    assert_eq!(kinds(&e), vec!["release", "warn"]);
    // Held for 30 s: an observation inside it does nothing.
    let o = obs(14, 3, 40, vec![]);
    assert!(m.step(Event::Observed(o.clone()), WARN, t(29)).is_empty());
    assert_eq!(
        kinds(&m.step(Event::Observed(o.clone()), WARN, t(30))),
        vec!["info", "compact"]
    );
    let e = m.step(Event::Failed("again".into()), WARN, t(30));
    assert!(
        matches!(&e[0], Effect::Warn(w) if w.contains("1m")),
        "{e:?}"
    );
}

#[test]
fn only_this_member_s_alarm_is_disarmed_and_only_under_the_quota() {
    let mut m = Machine::default();
    m.compacted = Some((25, t(0)));
    m.defragged = Some(25);
    let other = obs(4, 4, 25, vec![nospace(3)]);
    assert_eq!(
        kinds(&m.step(Event::Observed(other), WARN, t(1))),
        vec!["info"]
    );
    let over = obs(17, 16, 25, vec![nospace(ME)]);
    assert_eq!(
        kinds(&m.step(Event::Observed(over), WARN, t(2))),
        vec!["info"]
    );
    let under = obs(4, 4, 25, vec![nospace(ME), nospace(3)]);
    let e = m.step(Event::Observed(under), WARN, t(3));
    assert_eq!(e, vec![Effect::Disarm(vec![nospace(ME)])]);
}

#[test]
fn outcomes_for_steps_not_asked_for_change_nothing() {
    let mut m = Machine::default();
    assert!(m.step(Event::Defragmented, WARN, t(0)).is_empty());
    assert!(m.step(Event::LockTaken(3), WARN, t(0)).is_empty());
    assert_eq!(m.phase, Phase::Idle);
}

#[test]
fn a_nearly_empty_db_is_not_worth_defragmenting_and_its_alarm_is_disarmed() {
    // Right after a defragment: 20 kB file, 12 kB live — 60 %, but 8 kB to gain.
    assert!(!worth_defragmenting(20_480, Some(12_288), 16 * MIB));
    assert!(worth_defragmenting(17 * MIB, Some(12 * MIB), 16 * MIB));
    assert!(
        !worth_defragmenting(17 * MIB, None, 16 * MIB),
        "3.3: in-use unknown"
    );
    let mut m = Machine::default();
    m.compacted = Some((25, t(0)));
    m.defragged = Some(25);
    let after = Observation {
        db_bytes: 20_480,
        in_use_bytes: Some(12_288),
        ..obs(0, 0, 25, vec![nospace(ME)])
    };
    assert_eq!(
        kinds(&m.step(Event::Observed(after), WARN, t(1))),
        vec!["disarm"]
    );
}

#[test]
#[rustfmt::skip]
fn observe_mode_only_says_what_it_would_do_once_per_set_of_steps() {
    let mut m = Machine::new(true);
    let full = || vec![nospace(ME)];
    // (observation, now, what is said)
    let rows: Vec<(Observation, u64, Vec<&str>)> = vec![
        // Over the warn level, mostly live data: compaction only.
        (obs(14, 13, 10, vec![]), 0, vec!["compact etcd"]),
        // The same steps, a later revision: not said again.
        (obs(14, 13, 11, vec![]), 15, vec![]),
        // NOSPACE, mostly free pages: every step, said once.
        (obs(17, 4, 12, full()), 30, vec!["compact etcd", "defragment this member", "disarm", "NOSPACE is raised"]),
        (obs(17, 4, 12, full()), 45, vec![]),
        // The pressure ends, and comes back: said again.
        (obs(2, 2, 13, vec![]), 60, vec![]),
        (obs(14, 13, 14, vec![]), 75, vec!["compact etcd"]),
    ];
    for (i, (o, at, said)) in rows.into_iter().enumerate() {
        let got = m.step(Event::Observed(o.clone()), WARN, t(at));
        assert_eq!(m.phase, Phase::Idle, "row {i}: nothing is under way");
        if said.is_empty() {
            assert_eq!(got, vec![], "row {i}: {o:?}");
            continue;
        }
        let [Effect::Info(line)] = got.as_slice() else {
            panic!("row {i}: only a line to log, nothing done: {got:?}")
        };
        assert!(line.starts_with("observe mode: "), "{line}");
        for part in said {
            assert!(line.contains(part), "row {i}: {part:?} in {line:?}");
        }
    }
}
