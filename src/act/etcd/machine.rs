//! When to maintain etcd, decided purely: an observation or the outcome of a step goes
//! in with `now`, the next phase and the effects to perform come out (zincati's update
//! agent is the model). The actor performs the effects and feeds their outcomes back;
//! nothing here does I/O or reads a clock, so every transition is a table row below.
//!
//! The sequence: compact to the current revision (cluster-wide, cheap, at most every
//! `COMPACT_EVERY`), look again, and when the db is mostly free pages take the lock,
//! check that every member is healthy, defragment this member, give the lock back, look
//! again, and disarm this member's NOSPACE alarm once its db is under the quota. In
//! observe mode none of it: the machine only says, once per episode, what it would do.

use std::time::{Duration, SystemTime};

use crate::sample::{EtcdAlarm, EtcdView};

/// Defragment only when live data fills at most this share of the db file: below it,
/// a defragment gives back at least a fifth of the file …
pub const FRAGMENTED_RATIO: f64 = 0.8;
/// … and at least this share of the quota: a nearly empty db is always "mostly free
/// pages", and defragmenting it gains nothing.
pub const MIN_GAIN_OF_QUOTA: f64 = 0.05;

/// Whether defragmenting a member with these numbers is worth blocking it.
pub fn worth_defragmenting(db_bytes: u64, in_use_bytes: Option<u64>, quota_bytes: u64) -> bool {
    in_use_bytes.is_some_and(|u| {
        let free = db_bytes.saturating_sub(u) as f64;
        (u as f64) <= db_bytes as f64 * FRAGMENTED_RATIO
            && free >= quota_bytes as f64 * MIN_GAIN_OF_QUOTA
    })
}
/// Compacting discards every older revision (watchers that lag must re-list), so while
/// etcd still takes writes it is compacted at most this often. Under NOSPACE only deletes
/// move the revision, and a moved revision is compacted at once: that is how deleted keys
/// become free pages.
pub const COMPACT_EVERY: Duration = Duration::from_secs(300);
const BACKOFF_FIRST: Duration = Duration::from_secs(30);
const BACKOFF_MAX: Duration = Duration::from_secs(600);

/// What one read of etcd says, as the machine needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub db_bytes: u64,
    pub in_use_bytes: Option<u64>,
    pub quota_bytes: u64,
    pub revision: u64,
    pub member_id: u64,
    pub alarms: Vec<EtcdAlarm>,
}

impl Observation {
    /// From a readable view that has this member's status; `None` otherwise.
    pub fn from_view(view: &EtcdView) -> Option<Observation> {
        Some(Observation {
            db_bytes: view.db_bytes?,
            in_use_bytes: view.in_use_bytes,
            quota_bytes: view.quota_bytes?,
            revision: view.revision?,
            member_id: view.member_id?,
            alarms: view.alarms.clone(),
        })
        .filter(|_| view.is_readable())
    }

    fn quota_percent(&self) -> f64 {
        self.db_bytes as f64 * 100.0 / self.quota_bytes.max(1) as f64
    }

    fn nospace(&self) -> bool {
        self.alarms.iter().any(|a| a.alarm == "NOSPACE")
    }

    /// This member's own NOSPACE alarms: the ones its defragment can answer for.
    fn own_nospace(&self) -> Vec<EtcdAlarm> {
        self.alarms
            .iter()
            .filter(|a| a.alarm == "NOSPACE" && a.member_id == self.member_id)
            .cloned()
            .collect()
    }

    /// Enough of the db file is free pages for a defragment to be worth it.
    pub fn fragmented(&self) -> bool {
        worth_defragmenting(self.db_bytes, self.in_use_bytes, self.quota_bytes)
    }
}

/// What the cluster looked like just before a defragment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterCheck {
    /// Members that did not answer, know no leader, or have not started: `name: why`.
    pub unhealthy: Vec<String>,
    /// Who holds the lock, when it is held by someone (read without writing).
    pub lock_holder: Option<String>,
    /// This member has the lowest id of the members whose db is at or above
    /// `quota_warn_percent`: without the lock, members go one after another in id order,
    /// each waiting until the ones before it are back under the warn level.
    pub first_in_line: bool,
}

/// Outcomes fed back to the machine.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Observed(Observation),
    Compacted(u64),
    LockTaken(u64),
    LockBusy(String),
    /// The lock's lease or key was refused: NOSPACE stops every write.
    LockNoSpace,
    Cluster(ClusterCheck),
    Defragmented,
    Disarmed,
    Failed(String),
}

/// What the actor must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Compact(u64),
    TakeLock,
    /// `lockless`: the lock could not be written, so also read who holds it and whether
    /// this member is first in line.
    CheckCluster {
        lockless: bool,
    },
    /// Defragment this member, keeping the lock's lease alive meanwhile.
    Defragment {
        lease: Option<u64>,
    },
    Disarm(Vec<EtcdAlarm>),
    ReleaseLock(u64),
    /// Read etcd again now rather than at the next 15 s tick.
    Observe,
    Info(String),
    Warn(String),
}

/// Where the machine is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    #[default]
    Idle,
    Compacting,
    Locking,
    CheckingCluster {
        lease: Option<u64>,
        lockless: bool,
    },
    Defragmenting {
        lease: Option<u64>,
    },
    Disarming,
}

/// The machine's memory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Machine {
    pub phase: Phase,
    /// The latest observation.
    last: Option<Observation>,
    /// The last compaction: its revision and when.
    compacted: Option<(u64, SystemTime)>,
    /// The compacted revision this member was last defragmented after.
    defragged: Option<u64>,
    /// After a failure: not before this.
    hold_until: Option<SystemTime>,
    failures: u32,
    /// The last "waiting" message, so each is logged once per episode.
    said: Option<String>,
    /// Observe mode: nothing is changed in etcd, what would be done is said.
    observe: bool,
    /// Observe mode: the steps last said to be due, so each set is said once per episode.
    would: Option<String>,
}

fn backoff(failures: u32) -> Duration {
    BACKOFF_FIRST
        .saturating_mul(1 << failures.min(10))
        .min(BACKOFF_MAX)
}

impl Machine {
    /// A machine that maintains etcd, or with `observe`, only says what it would do.
    pub fn new(observe: bool) -> Self {
        Machine {
            observe,
            ..Machine::default()
        }
    }

    /// The quota as last observed.
    pub fn quota_bytes(&self) -> Option<u64> {
        self.last.as_ref().map(|o| o.quota_bytes)
    }

    /// One transition. `warn_percent` is `etcd.quota_warn_percent`.
    pub fn step(&mut self, event: Event, warn_percent: f64, now: SystemTime) -> Vec<Effect> {
        match (self.phase, event) {
            (_, Event::Failed(why)) => self.fail(why, now),
            (Phase::Idle, Event::Observed(o)) => self.observed(o, warn_percent, now),
            (_, Event::Observed(o)) => {
                self.last = Some(o);
                Vec::new()
            }
            (Phase::Compacting, Event::Compacted(revision)) => {
                self.compacted = Some((revision, now));
                self.phase = Phase::Idle;
                vec![
                    Effect::Info(format!("compacted etcd to revision {revision}")),
                    Effect::Observe,
                ]
            }
            (Phase::Locking, Event::LockTaken(lease)) => {
                self.phase = Phase::CheckingCluster {
                    lease: Some(lease),
                    lockless: false,
                };
                vec![Effect::CheckCluster { lockless: false }]
            }
            (Phase::Locking, Event::LockBusy(holder)) => {
                self.phase = Phase::Idle;
                self.say(format!(
                    "etcd maintenance waits: the lock is held by {holder}"
                ))
            }
            (Phase::Locking, Event::LockNoSpace) => {
                self.phase = Phase::CheckingCluster {
                    lease: None,
                    lockless: true,
                };
                vec![Effect::CheckCluster { lockless: true }]
            }
            (Phase::CheckingCluster { lease, lockless }, Event::Cluster(c)) => {
                self.cluster_checked(lease, lockless, c)
            }
            (Phase::Defragmenting { lease }, Event::Defragmented) => {
                self.phase = Phase::Idle;
                self.failures = 0;
                self.defragged = self.compacted.map(|(rev, _)| rev);
                let mut effects = vec![Effect::Info("defragmented this etcd member".into())];
                effects.extend(lease.map(Effect::ReleaseLock));
                effects.push(Effect::Observe);
                effects
            }
            (Phase::Disarming, Event::Disarmed) => {
                self.phase = Phase::Idle;
                self.failures = 0;
                vec![
                    Effect::Info("disarmed etcd's NOSPACE alarm: writes are accepted again".into()),
                    Effect::Observe,
                ]
            }
            // An outcome for a step not asked for: the phase stands.
            _ => Vec::new(),
        }
    }

    fn observed(&mut self, o: Observation, warn_percent: f64, now: SystemTime) -> Vec<Effect> {
        let pressure = o.nospace() || o.quota_percent() >= warn_percent;
        let last_compacted = self.compacted;
        self.last = Some(o.clone());
        if !pressure {
            self.said = None;
            self.would = None;
            return Vec::new();
        }
        if self.observe {
            return self.would_do(&o);
        }
        if self.hold_until.is_some_and(|t| now < t) {
            return Vec::new();
        }
        let compact_due = last_compacted.is_none_or(|(rev, at)| {
            o.revision > rev
                && (o.nospace() || now.duration_since(at).unwrap_or_default() >= COMPACT_EVERY)
        });
        if compact_due {
            self.phase = Phase::Compacting;
            return vec![
                Effect::Info(format!(
                    "etcd's database is at {:.0}% of its quota: compacting to revision {}",
                    o.quota_percent(),
                    o.revision
                )),
                Effect::Compact(o.revision),
            ];
        }
        // Under NOSPACE no write commits, so the pages a compaction freed stay "pending"
        // and the in-use size hardly moves: one defragment after each compaction is the
        // only way to learn what it gave back (and the member takes no writes anyway).
        let compacted_since_defrag = self
            .compacted
            .is_some_and(|(rev, _)| self.defragged.is_none_or(|d| d < rev));
        if o.fragmented() || (o.nospace() && compacted_since_defrag) {
            self.phase = Phase::Locking;
            return vec![Effect::TakeLock];
        }
        let own = o.own_nospace();
        if !own.is_empty() && o.db_bytes < o.quota_bytes {
            self.phase = Phase::Disarming;
            return vec![Effect::Disarm(own)];
        }
        self.say(format!(
            "etcd's database is at {:.0}% of its quota and {} of it is live data: compacting and defragmenting cannot help; delete keys or raise --quota-backend-bytes",
            o.quota_percent(),
            o.in_use_bytes
                .map_or("all".to_owned(), |u| format!("{:.0}%", u as f64 * 100.0 / o.db_bytes.max(1) as f64))
        ))
    }

    fn cluster_checked(
        &mut self,
        lease: Option<u64>,
        lockless: bool,
        c: ClusterCheck,
    ) -> Vec<Effect> {
        self.phase = Phase::Idle;
        let mut effects: Vec<Effect> = lease.map(Effect::ReleaseLock).into_iter().collect();
        let why_not = if !c.unhealthy.is_empty() {
            Some(format!(
                "not defragmenting while another member is unhealthy: {}",
                c.unhealthy.join("; ")
            ))
        } else if lockless && c.lock_holder.is_some() {
            Some(format!(
                "etcd maintenance waits: the lock is held by {}",
                c.lock_holder.unwrap_or_default()
            ))
        } else if lockless && !c.first_in_line {
            Some("etcd is over its quota and the lock cannot be written: waiting for the members with lower ids to defragment first".into())
        } else {
            None
        };
        if let Some(why) = why_not {
            effects.extend(self.say(why));
            return effects;
        }
        self.phase = Phase::Defragmenting { lease };
        let (db, in_use) = self
            .last
            .as_ref()
            .map_or((0, None), |o| (o.db_bytes, o.in_use_bytes));
        vec![
            Effect::Info(format!(
                "defragmenting this etcd member (db {db} bytes, {} in use{}); it answers nothing until done",
                in_use.map_or("?".to_owned(), |u| u.to_string()),
                if lockless {
                    ", without the lock: NOSPACE refuses it"
                } else {
                    ", holding the lock"
                }
            )),
            Effect::Defragment { lease },
        ]
    }

    fn fail(&mut self, why: String, now: SystemTime) -> Vec<Effect> {
        let lease = match self.phase {
            Phase::CheckingCluster { lease, .. } | Phase::Defragmenting { lease } => lease,
            _ => None,
        };
        let wait = backoff(self.failures);
        self.failures += 1;
        self.hold_until = Some(now + wait);
        self.phase = Phase::Idle;
        let mut effects: Vec<Effect> = lease.map(Effect::ReleaseLock).into_iter().collect();
        effects.push(Effect::Warn(format!(
            "etcd maintenance failed: {why}; trying again in {}",
            humantime::format_duration(wait)
        )));
        effects
    }

    /// Observe mode: the steps maintenance would take under this pressure, said once per
    /// set of steps and episode. Compaction always (nothing here compacts); a defragment
    /// when the db is mostly free pages already (a compaction may free more); disarming
    /// when this member has raised NOSPACE.
    fn would_do(&mut self, o: &Observation) -> Vec<Effect> {
        let mut steps = vec!["compact etcd to its current revision".to_owned()];
        if o.fragmented() {
            steps.push("defragment this member".to_owned());
        }
        if !o.own_nospace().is_empty() {
            steps.push(
                "disarm this member's NOSPACE alarm once its db is under the quota".to_owned(),
            );
        }
        let key = steps.join(", ");
        if self.would.as_ref() == Some(&key) {
            return Vec::new();
        }
        self.would = Some(key.clone());
        vec![Effect::Info(format!(
            "observe mode: etcd's database is at {:.0}% of its quota{}; maintenance would {key} (changing nothing)",
            o.quota_percent(),
            if o.nospace() {
                " and NOSPACE is raised"
            } else {
                ""
            }
        ))]
    }

    /// A waiting message, once until it changes or the pressure ends.
    fn say(&mut self, message: String) -> Vec<Effect> {
        if self.said.as_ref() == Some(&message) {
            return Vec::new();
        }
        self.said = Some(message.clone());
        vec![Effect::Info(message)]
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
