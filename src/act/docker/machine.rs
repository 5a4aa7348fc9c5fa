//! The Docker actor's bookkeeping as a pure state machine: when to re-read the inventory
//! (every `inventory_interval`, soon after an engine event but at most once a second, so
//! a crash-looping container cannot keep it busy), which plan is fresh enough to act on
//! (one made after the last pass, not necessarily from the newest read — an event storm
//! must not starve reclaim), which items to skip (those that failed earlier in the same
//! episode, so one broken item never blocks the ladder), when to cool down, when to
//! measure the top writers, the hourly pass for images past their maximum age, and which
//! evicted containers to try removing again.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::policy::{EvictDecision, Eviction, ReclaimStep};

/// Engine events come in bursts (create, start, …): wait this long for the burst to end.
pub const EVENT_DEBOUNCE: Duration = Duration::from_millis(100);
/// Event-driven re-reads are at least this far apart.
pub const MIN_REFRESH_GAP: Duration = Duration::from_secs(1);
/// How often the top writers are re-measured while the volume stays at `prune` or above.
pub const WRITERS_EVERY: Duration = Duration::from_secs(30);
/// The write meter's cadence at `prune` level and above, and when only armed.
pub const METER_FAST: Duration = Duration::from_millis(250);
pub const METER_SLOW: Duration = Duration::from_secs(1);
/// Images past `max_unused_image_age` are removed at most this often.
pub const EXPIRY_EVERY: Duration = Duration::from_secs(3600);
/// An evicted container that stopped but could not be removed is tried again after this
/// long, doubling up to `REMOVE_RETRY_MAX`: its layer still holds the disk.
pub const REMOVE_RETRY_FIRST: Duration = Duration::from_secs(1);
pub const REMOVE_RETRY_MAX: Duration = Duration::from_secs(300);

/// What one plan asks of Docker.
#[derive(Debug, Clone, PartialEq)]
pub struct Wish {
    /// The Docker volume is at `prune` or above.
    pub wanted: bool,
    pub steps: Vec<ReclaimStep>,
    pub expired: Vec<ReclaimStep>,
    /// The inventory generation the plan was made from.
    pub inventory: Option<u64>,
    /// Whether to stop the container that fills the disk.
    pub evict: EvictDecision,
    /// Near `prune_start` or above: measure the writers.
    pub armed: bool,
}

/// What a pass did, as the machine needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassDone {
    pub removed: usize,
    /// Ids of the items the engine failed to remove (not in use, not gone: failed).
    pub failed: Vec<String>,
    pub expiry: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Plan(Wish),
    /// The inventory was read: its generation, or why not.
    Refreshed(Result<u64, String>),
    /// An engine event said the inventory changed.
    Stale,
    RefreshDue,
    PassDone(PassDone),
    /// How carrying out an eviction (or a later removal) went.
    Evicted(Eviction, Evicted),
}

/// How an eviction went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evicted {
    /// Stopped and removed, or already gone, or its removal already under way.
    Removed,
    /// It writes no more, but removing it failed (why): its layer still holds the disk.
    NotRemoved(String),
    /// It could not be stopped (why): it may still write.
    NotStopped(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Read the inventory; `sized`: with the sizes of stopped containers (at `prune`
    /// level only: the engine walks their layers).
    Refresh {
        sized: bool,
    },
    /// The next read is due after this long (replacing any earlier schedule).
    RefreshIn(Duration),
    Pass {
        steps: Vec<ReclaimStep>,
        expiry: bool,
    },
    Observe {
        steps: Vec<ReclaimStep>,
        expiry: bool,
    },
    MeasureWriters,
    /// Measure what each running container writes this often, or stop (`None`): once a
    /// second when armed (near `prune_start`), four times a second at `prune` and above,
    /// where the eviction rule reads it — armed, a writer is known before the crossing.
    Meter(Option<Duration>),
    /// Stop and remove the container filling the disk.
    Evict(Eviction),
    /// Try again to remove an evicted container that stopped but was not removed.
    RemoveEvicted(Eviction),
    /// Observe mode: say what would be evicted.
    ObserveEviction(Eviction),
    /// The items to leave out of plans for the rest of the episode changed: tell the
    /// policy, so that it plans past them.
    Skip(Vec<String>),
    Say(Note),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Note {
    InventoryFailed(String),
    InventoryRecovered,
    /// Items that failed earlier in this episode are left out of the next pass.
    Skipping(usize),
}

#[derive(Debug, Clone)]
pub struct Machine {
    observe: bool,
    inventory_interval: Duration,
    sized: bool,
    /// Plans made from inventories older than this were made before the last pass.
    after_pass: u64,
    awaiting_read_after_pass: bool,
    last_pass: Option<(Instant, usize)>,
    last_read: Option<Instant>,
    read_at: Option<Instant>,
    read_backoff: Backoff,
    failing: bool,
    failed_items: HashSet<String>,
    skipping_said: usize,
    observed: Vec<String>,
    observed_expired: Vec<String>,
    writers_at: Option<Instant>,
    expiry_at: Option<Instant>,
    metering: Option<Duration>,
    /// Containers evicted (or, observing, named) in this episode: each at most once.
    evicted: HashSet<String>,
    /// Evicted containers that stopped but are not removed yet, kept across episodes.
    unremoved: BTreeMap<String, Unremoved>,
}

/// An evicted container whose removal is to be tried again.
#[derive(Debug, Clone)]
struct Unremoved {
    eviction: Eviction,
    backoff: Backoff,
    /// When to try next; `None` while a try is under way.
    due: Option<Instant>,
}

impl Machine {
    pub fn new(inventory_interval: Duration, observe: bool) -> Self {
        Machine {
            observe,
            inventory_interval,
            sized: false,
            after_pass: 0,
            awaiting_read_after_pass: false,
            last_pass: None,
            last_read: None,
            read_at: None,
            read_backoff: Backoff::new(Duration::from_secs(1), inventory_interval),
            failing: false,
            failed_items: HashSet::new(),
            skipping_said: 0,
            observed: Vec::new(),
            observed_expired: Vec::new(),
            writers_at: None,
            expiry_at: None,
            metering: None,
            evicted: HashSet::new(),
            unremoved: BTreeMap::new(),
        }
    }

    /// The first thing to do: read the inventory.
    pub fn start(&mut self) -> Vec<Effect> {
        vec![Effect::Refresh { sized: false }]
    }

    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Effect> {
        match event {
            Event::Plan(wish) => self.plan(wish, now),
            Event::Refreshed(result) => self.refreshed(result, now),
            Event::Stale => self.stale(now),
            Event::Evicted(e, outcome) => self.eviction_done(e, outcome, now),
            Event::RefreshDue => {
                self.read_at = None;
                vec![Effect::Refresh { sized: self.sized }]
            }
            Event::PassDone(done) => {
                if !done.expiry {
                    self.last_pass = Some((now, done.removed));
                }
                let before = self.failed_items.len();
                self.failed_items.extend(done.failed);
                let mut effects = Vec::new();
                if self.failed_items.len() > before {
                    effects.push(self.skip_effect());
                }
                // Whatever the pass changed shows in the next read; plans made before
                // it are stale from now on.
                self.awaiting_read_after_pass = true;
                effects.push(Effect::Refresh { sized: self.sized });
                effects
            }
        }
    }

    /// The inventory changed: read it again soon, but not sooner than the gap allows.
    fn stale(&mut self, now: Instant) -> Vec<Effect> {
        let soonest = now + EVENT_DEBOUNCE;
        let want = self
            .last_read
            .map_or(soonest, |at| (at + MIN_REFRESH_GAP).max(soonest));
        if self.read_at.is_some_and(|at| at <= want) {
            return Vec::new();
        }
        self.read_at = Some(want);
        vec![Effect::RefreshIn(want - now)]
    }

    /// An eviction's outcome: a container that stopped but stayed is removed later; one
    /// that could not be stopped may be asked for again while the policy still names it.
    fn eviction_done(&mut self, e: Eviction, outcome: Evicted, now: Instant) -> Vec<Effect> {
        let id = e.container_id.clone();
        match outcome {
            Evicted::Removed => {
                self.unremoved.remove(&id);
            }
            Evicted::NotRemoved(_) => {
                let entry = self.unremoved.entry(id).or_insert_with(|| Unremoved {
                    eviction: e,
                    backoff: Backoff::new(REMOVE_RETRY_FIRST, REMOVE_RETRY_MAX),
                    due: None,
                });
                entry.due = Some(now + entry.backoff.failed());
            }
            Evicted::NotStopped(_) => {
                self.evicted.remove(&id);
            }
        }
        // Whatever it changed shows in the next read.
        self.stale(now)
    }

    fn refreshed(&mut self, result: Result<u64, String>, now: Instant) -> Vec<Effect> {
        let mut effects = Vec::new();
        let next = match result {
            Ok(generation) => {
                if std::mem::take(&mut self.awaiting_read_after_pass) {
                    self.after_pass = generation;
                }
                if std::mem::take(&mut self.failing) {
                    effects.push(Effect::Say(Note::InventoryRecovered));
                }
                self.read_backoff.succeeded();
                self.last_read = Some(now);
                self.inventory_interval
            }
            Err(e) => {
                // The last inventory stays: a plan made from it can only fail harmlessly
                // (the engine answers 404 or 409), never remove wrongly.
                if !std::mem::replace(&mut self.failing, true) {
                    effects.push(Effect::Say(Note::InventoryFailed(e)));
                }
                self.read_backoff.failed()
            }
        };
        self.read_at = Some(now + next);
        effects.push(Effect::RefreshIn(next));
        effects
    }

    fn plan(&mut self, wish: Wish, now: Instant) -> Vec<Effect> {
        let mut effects = Vec::new();
        if !wish.wanted && !self.failed_items.is_empty() {
            // The episode is over: failed items get another chance next time.
            self.failed_items.clear();
            effects.push(self.skip_effect());
        }
        if !wish.wanted {
            self.skipping_said = 0;
            self.sized = false;
            self.writers_at = None;
            self.evicted.clear();
        }
        let meter = if wish.wanted {
            Some(METER_FAST)
        } else if wish.armed {
            Some(METER_SLOW)
        } else {
            None
        };
        if meter != self.metering {
            self.metering = meter;
            effects.push(Effect::Meter(meter));
        }
        // Eviction before anything else: the disk fills faster than a pass helps. Removals
        // that failed come first: those containers no longer write, but hold the disk.
        for u in self.unremoved.values_mut() {
            if u.due.is_some_and(|due| now >= due) {
                u.due = None;
                effects.push(Effect::RemoveEvicted(u.eviction.clone()));
            }
        }
        if let EvictDecision::Evict(e) = &wish.evict {
            if self.evicted.insert(e.container_id.clone()) {
                effects.push(if self.observe {
                    Effect::ObserveEviction(e.clone())
                } else {
                    Effect::Evict(e.clone())
                });
            }
        }
        let fresh =
            !self.awaiting_read_after_pass && wish.inventory.is_some_and(|g| g >= self.after_pass);
        // The top writers are measured after the pass, never before it: the size walk
        // must not compete with the removals for the engine.
        let mut writers = Vec::new();
        if wish.wanted {
            self.sized = true;
            if self.writers_at.is_none_or(|at| now >= at + WRITERS_EVERY) {
                self.writers_at = Some(now);
                writers.push(Effect::MeasureWriters);
            }
        }
        if fresh {
            self.act(wish, now, &mut effects);
        }
        effects.extend(writers);
        effects
    }

    /// What a fresh plan asks for: a pass down the ladder (or its log in observe mode),
    /// else the hourly pass for expired images.
    fn act(&mut self, wish: Wish, now: Instant, effects: &mut Vec<Effect>) {
        let steps: Vec<ReclaimStep> = wish
            .steps
            .into_iter()
            .filter(|s| !self.failed_items.contains(&s.id))
            .collect();
        let skipped = self.failed_items.len();
        if wish.wanted && !steps.is_empty() {
            if skipped > self.skipping_said {
                self.skipping_said = skipped;
                effects.push(Effect::Say(Note::Skipping(skipped)));
            }
            if self.observe {
                let ids: Vec<String> = steps.iter().map(|s| s.id.clone()).collect();
                if ids != self.observed {
                    self.observed = ids;
                    effects.push(Effect::Observe {
                        steps,
                        expiry: false,
                    });
                }
                return;
            }
            if self.cooled_down(now) {
                effects.push(Effect::Pass {
                    steps,
                    expiry: false,
                });
                return;
            }
        }
        if !wish.expired.is_empty() && self.expiry_at.is_none_or(|at| now >= at + EXPIRY_EVERY) {
            let ids: Vec<String> = wish.expired.iter().map(|s| s.id.clone()).collect();
            if self.observe {
                if ids != self.observed_expired {
                    self.observed_expired = ids;
                    effects.push(Effect::Observe {
                        steps: wish.expired,
                        expiry: true,
                    });
                }
            } else {
                self.expiry_at = Some(now);
                effects.push(Effect::Pass {
                    steps: wish.expired,
                    expiry: true,
                });
            }
        }
    }

    fn skip_effect(&self) -> Effect {
        let mut ids: Vec<String> = self.failed_items.iter().cloned().collect();
        ids.sort();
        Effect::Skip(ids)
    }

    /// After a pass that removed nothing, wait an inventory interval before trying again,
    /// so an engine that refuses everything does not get asked every second.
    fn cooled_down(&self, now: Instant) -> bool {
        match self.last_pass {
            Some((at, 0)) => now >= at + self.inventory_interval,
            _ => true,
        }
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
