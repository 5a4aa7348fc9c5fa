//! The ECS actor's bookkeeping as a pure state machine: an event and `now` go in, the
//! next state and the effects to perform come out. The actor performs each effect (one
//! ECS call, a log line, a counter) and feeds its result back as the next event, so every
//! rule — one action per fresh view, the budget read fresh before a drain and checked
//! again after it, suppressions counted once per episode, retry timing, the re-read and
//! the lifecycle check before giving an instance back — is a table test here.

use std::time::{Duration, Instant, SystemTime};

use crate::aws::Lifecycle;
use crate::backoff::Backoff;
use crate::policy::{BudgetVerdict, DrainingInstance, EcsDecision, budget_room, budget_verdict};
use crate::sample::EcsStatus;

/// After an action, the view is re-read at once and again this much later, when a slower
/// instance's drain has had time to become visible (ECS reads are eventually consistent).
pub const SETTLE: Duration = Duration::from_secs(5);
/// How often the instance and cluster are re-read when nothing happens.
pub const VIEW_EVERY: Duration = Duration::from_secs(60);
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// What one plan asks of ECS, as the machine needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Wish {
    pub decision: EcsDecision,
    /// The Docker volume is at `critical`: drain past the budget, never undo.
    pub critical: bool,
    /// The view generation the decision was made from.
    pub view: Option<u64>,
    /// The task family that filled the disk, when the plan names one.
    pub culprit: Option<String>,
    /// An eviction was decided with this plan: the culprit is named at once.
    pub evicting: bool,
}

/// This instance as a fresh read showed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewFacts {
    pub generation: u64,
    pub status: EcsStatus,
    /// diskguard's mark is on it.
    pub ours: bool,
    /// The culprit attribute's value, if set.
    pub culprit: Option<String>,
}

/// The cluster's ACTIVE and DRAINING instances, counted fresh (all pages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    pub active: u32,
    pub draining: u32,
}

/// The cluster's DRAINING instances with their marks, and how many instances it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drains {
    pub draining: Vec<DrainingInstance>,
    /// ACTIVE + DRAINING.
    pub instances: u32,
}

/// What happened, fed to the machine. Errors are text for the log only: the machine
/// branches on success or failure, never on what a message says.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Plan(Wish),
    RefreshDue,
    View(Result<ViewFacts, String>),
    Count(Result<Count, String>),
    Claimed(Result<(), String>),
    Withdrawn(Result<(), String>),
    Drained(Result<(), String>),
    CulpritSet(Result<(), String>),
    CulpritCleared(Result<(), String>),
    Drains(Result<Drains, String>),
    Lifecycle(Lifecycle),
    Activated(Result<(), String>),
    MarkRemoved(Result<(), String>),
}

/// What the actor is to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    ReadView,
    /// Count the cluster's ACTIVE and DRAINING instances, fresh.
    ReadCount,
    /// Put the mark: a claim on the budget, checked before DRAINING is set.
    Claim,
    /// Remove the mark of a claim that lost to earlier ones.
    Withdraw,
    /// Set DRAINING (the claim won).
    SetDraining,
    /// Put the mark, then set DRAINING: at `critical`, past the budget.
    Drain,
    /// Put `diskguard.culprit` with the task family.
    SetCulprit(String),
    ClearCulprit,
    /// Count an incident caused by this family (the `Evictions` metric).
    CountCulprit(String),
    /// Read the cluster's DRAINING instances and their marks.
    ReadDrains,
    ReadLifecycle,
    /// Set ACTIVE and remove the mark.
    Activate,
    RemoveMark,
    CountSuppressed,
    /// Re-read the view after this long (replacing any earlier schedule).
    RefreshIn(Duration),
    Say(Note),
}

/// Log lines, typed; the actor words them.
#[derive(Debug, Clone, PartialEq)]
pub enum Note {
    Suppressed {
        draining: u32,
        allowed: u32,
    },
    Drained {
        critical: bool,
    },
    Undone {
        rank: u32,
        room: u32,
    },
    LostClaim {
        rank: u32,
        room: u32,
    },
    CulpritNamed(String),
    CulpritCleared,
    Undrained,
    StaleMarkRemoved,
    Leaving(String),
    Observed(EcsDecision),
    Failed {
        what: &'static str,
        error: String,
        retry_in: Duration,
    },
    ViewFailed(String),
    ViewRecovered,
}

/// Where the machine is: idle, or waiting for the answer to one effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Idle,
    /// A view read; what to do once it is in.
    Reading(Then),
    Counting,
    Claiming,
    /// Checking a claim against the cluster's drains and claims.
    CheckingClaim,
    Withdrawing,
    Draining,
    /// Putting the culprit; `verify`: right after a drain, check the budget next.
    NamingCulprit {
        verify: bool,
    },
    ClearingCulprit,
    /// Checking the budget after draining; `settle`: right after the drain.
    Verifying {
        settle: bool,
    },
    AskingLifecycle,
    Activating {
        undo: bool,
    },
    RemovingMark,
}

/// What follows a view read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    Nothing,
    /// Give the instance back if it is still ours, DRAINING and not leaving service.
    Undrain,
    /// Check the budget again while holding a drain below critical.
    Verify,
}

/// The ECS actor's memory.
#[derive(Debug, Clone)]
pub struct Machine {
    phase: Phase,
    /// This container instance's ARN, for ranking the cluster's drains.
    me: String,
    max_draining_percent: f64,
    observe: bool,
    /// The newest view read, and the one last acted on: one action per fresh view.
    view: u64,
    /// The view last acted on, and whether at `critical`: a drain suppressed by the
    /// budget may be tried again on the same view once the disk turns critical.
    acted: Option<(u64, bool)>,
    view_failed: bool,
    retry_at: Option<Instant>,
    backoff: Backoff,
    /// A suppression (before or after draining) was counted in this drain episode.
    suppressed: bool,
    critical: bool,
    observed: Option<EcsDecision>,
    leaving_said: bool,
    /// The culprit the newest plan names, the one the last view showed, and the one last
    /// sent: each family is put once.
    culprit: Option<String>,
    culprit_on: Option<String>,
    culprit_sent: Option<String>,
}

impl Machine {
    pub fn new(me: &str, max_draining_percent: f64, observe: bool) -> Self {
        Machine {
            phase: Phase::Idle,
            me: me.to_owned(),
            max_draining_percent,
            observe,
            view: 0,
            acted: None,
            view_failed: false,
            retry_at: None,
            backoff: Backoff::new(RETRY_FIRST, RETRY_MAX),
            suppressed: false,
            critical: false,
            observed: None,
            leaving_said: false,
            culprit: None,
            culprit_on: None,
            culprit_sent: None,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Plans and refreshes are only taken while idle; the actor waits for them then.
    pub fn is_idle(&self) -> bool {
        self.phase == Phase::Idle
    }

    /// The first thing to do: read the view.
    pub fn start(&mut self) -> Vec<Effect> {
        self.read(Then::Nothing)
    }

    /// `now` for timing retries; `wall` (the clock) for judging the age of claims.
    pub fn handle(&mut self, event: Event, now: Instant, wall: SystemTime) -> Vec<Effect> {
        match (self.phase, event) {
            (Phase::Idle, Event::Plan(wish)) => self.plan(wish, now),
            (Phase::Idle, Event::RefreshDue) => {
                // While this instance holds a drain below critical, each fresh view is
                // followed by a check of the budget, until every instance agrees.
                let mut effects = self.read(Then::Verify);
                effects.insert(0, Effect::RefreshIn(VIEW_EVERY));
                effects
            }
            (Phase::Reading(then), Event::View(r)) => self.viewed(then, r, now),
            (Phase::Counting, Event::Count(Ok(c))) => {
                match budget_room(c.draining, c.active + c.draining, self.max_draining_percent) {
                    Ok(()) => self.go(Phase::Claiming, vec![Effect::Claim]),
                    Err((draining, allowed)) => {
                        // Said and counted once per episode: the budget is read again
                        // with every fresh view while the disk stays full.
                        let mut effects = self.count_suppression();
                        if !effects.is_empty() {
                            effects.push(Effect::Say(Note::Suppressed { draining, allowed }));
                        }
                        self.go(Phase::Idle, effects)
                    }
                }
            }
            (Phase::Counting, Event::Count(Err(e))) => {
                self.failed("count the cluster's instances", e, now)
            }
            (Phase::Claiming, Event::Claimed(Ok(()))) => {
                self.go(Phase::CheckingClaim, vec![Effect::ReadDrains])
            }
            (Phase::Claiming, Event::Claimed(Err(e))) => {
                self.failed("claim a share of the drain budget", e, now)
            }
            (Phase::CheckingClaim, Event::Drains(Ok(d))) => {
                match budget_verdict(
                    &self.me,
                    &d.draining,
                    d.instances,
                    self.max_draining_percent,
                    wall,
                ) {
                    BudgetVerdict::Keep => self.go(Phase::Draining, vec![Effect::SetDraining]),
                    BudgetVerdict::Undo { rank, room } => {
                        let mut effects = self.count_suppression();
                        effects.push(Effect::Say(Note::LostClaim { rank, room }));
                        effects.push(Effect::Withdraw);
                        self.go(Phase::Withdrawing, effects)
                    }
                }
            }
            (Phase::CheckingClaim, Event::Drains(Err(e))) => {
                // The claim stays until the stale-mark rule removes it; it holds the budget
                // for at most CLAIM_TTL.
                self.failed("read the cluster's drains", e, now)
            }
            (Phase::Withdrawing, Event::Withdrawn(Ok(()))) => {
                self.succeeded();
                self.go(Phase::Idle, Vec::new())
            }
            (Phase::Withdrawing, Event::Withdrawn(Err(e))) => {
                self.failed("withdraw the claim", e, now)
            }
            (Phase::Draining, Event::Drained(Ok(()))) => {
                self.succeeded();
                let critical = self.critical;
                let mut effects = vec![Effect::Say(Note::Drained { critical })];
                match self.culprit.clone() {
                    Some(family) => {
                        effects.push(Effect::CountCulprit(family.clone()));
                        effects.push(Effect::SetCulprit(family.clone()));
                        self.culprit_sent = Some(family);
                        self.go(Phase::NamingCulprit { verify: true }, effects)
                    }
                    None => {
                        effects.push(Effect::ReadDrains);
                        self.go(Phase::Verifying { settle: true }, effects)
                    }
                }
            }
            (Phase::NamingCulprit { verify }, Event::CulpritSet(result)) => {
                let mut effects = match result {
                    Ok(()) => vec![Effect::Say(Note::CulpritNamed(
                        self.culprit_sent.clone().unwrap_or_default(),
                    ))],
                    // Naming is worth a retry with the next episode, not a stop.
                    Err(e) => {
                        self.culprit_sent = None;
                        vec![Effect::Say(Note::Failed {
                            what: "name the culprit",
                            error: e,
                            retry_in: Duration::ZERO,
                        })]
                    }
                };
                if verify {
                    effects.push(Effect::ReadDrains);
                    self.go(Phase::Verifying { settle: true }, effects)
                } else {
                    effects.push(Effect::RefreshIn(SETTLE));
                    self.go(Phase::Idle, effects)
                }
            }
            (Phase::ClearingCulprit, Event::CulpritCleared(Ok(()))) => {
                self.succeeded();
                self.culprit_sent = None;
                self.after_action(Some(Note::CulpritCleared))
            }
            (Phase::ClearingCulprit, Event::CulpritCleared(Err(e))) => {
                self.failed("remove the culprit", e, now)
            }
            (Phase::Draining, Event::Drained(Err(e))) => {
                self.failed("drain the container instance", e, now)
            }
            (Phase::Verifying { settle }, Event::Drains(Ok(d))) => {
                let verdict = if self.critical {
                    BudgetVerdict::Keep
                } else {
                    budget_verdict(
                        &self.me,
                        &d.draining,
                        d.instances,
                        self.max_draining_percent,
                        wall,
                    )
                };
                match verdict {
                    // Right after the drain, look again once slower drains are visible.
                    BudgetVerdict::Keep if settle => self.after_action(None),
                    BudgetVerdict::Keep => self.go(Phase::Idle, Vec::new()),
                    BudgetVerdict::Undo { rank, room } => {
                        let mut effects = self.count_suppression();
                        effects.push(Effect::Say(Note::Undone { rank, room }));
                        effects.push(Effect::Activate);
                        self.go(Phase::Activating { undo: true }, effects)
                    }
                }
            }
            (Phase::Verifying { .. }, Event::Drains(Err(e))) => {
                self.failed("read the cluster's DRAINING instances", e, now)
            }
            (Phase::AskingLifecycle, Event::Lifecycle(Lifecycle::InService)) => {
                self.leaving_said = false;
                self.go(Phase::Activating { undo: false }, vec![Effect::Activate])
            }
            (Phase::AskingLifecycle, Event::Lifecycle(Lifecycle::Leaving(state))) => {
                self.phase = Phase::Idle;
                if std::mem::replace(&mut self.leaving_said, true) {
                    Vec::new()
                } else {
                    vec![Effect::Say(Note::Leaving(state))]
                }
            }
            (Phase::Activating { undo }, Event::Activated(Ok(()))) => {
                self.succeeded();
                let note = if undo { None } else { Some(Note::Undrained) };
                self.after_action(note)
            }
            (Phase::Activating { .. }, Event::Activated(Err(e))) => {
                self.failed("set the container instance ACTIVE again", e, now)
            }
            (Phase::RemovingMark, Event::MarkRemoved(Ok(()))) => {
                self.succeeded();
                self.after_action(Some(Note::StaleMarkRemoved))
            }
            (Phase::RemovingMark, Event::MarkRemoved(Err(e))) => {
                self.failed("remove the stale drain mark", e, now)
            }
            // An answer to a question no longer asked, or a plan while busy: ignored.
            _ => Vec::new(),
        }
    }

    fn go(&mut self, phase: Phase, effects: Vec<Effect>) -> Vec<Effect> {
        self.phase = phase;
        effects
    }

    fn read(&mut self, then: Then) -> Vec<Effect> {
        self.go(Phase::Reading(then), vec![Effect::ReadView])
    }

    fn plan(&mut self, wish: Wish, now: Instant) -> Vec<Effect> {
        let wants_drain = matches!(
            wish.decision,
            EcsDecision::Drain { .. } | EcsDecision::DrainSuppressed { .. }
        );
        if !wants_drain {
            // The episode is over: the next time the disk fills, a suppression counts again.
            self.suppressed = false;
        }
        self.critical = wish.critical;
        self.culprit = wish.culprit.clone();
        if self.retry_at.is_some_and(|at| now < at) {
            return Vec::new();
        }
        if self.view_failed {
            // The next plan is made from the fresh view.
            return self.read(Then::Nothing);
        }
        // An eviction names the culprit at once, whatever else the plan asks.
        if let Some(family) = wish
            .culprit
            .as_ref()
            .filter(|_| wish.evicting && !self.observe)
        {
            if self.culprit_on.as_ref() != Some(family)
                && self.culprit_sent.as_ref() != Some(family)
            {
                self.culprit_sent = Some(family.clone());
                return self.go(
                    Phase::NamingCulprit { verify: false },
                    vec![Effect::SetCulprit(family.clone())],
                );
            }
        }
        if wish.decision == EcsDecision::None {
            // Nothing asked: whatever is asked next is a new episode, acted on with the
            // view at hand rather than a minute later with the next one.
            self.observed = None;
            self.acted = None;
            return Vec::new();
        }
        let fresh = match self.acted {
            Some((view, critical)) if view == self.view => wish.critical && !critical,
            _ => true,
        };
        if wish.view != Some(self.view) || !fresh {
            return Vec::new();
        }
        if self.observe {
            if self.observed.as_ref() == Some(&wish.decision) {
                return Vec::new();
            }
            self.observed = Some(wish.decision.clone());
            return vec![Effect::Say(Note::Observed(wish.decision))];
        }
        self.acted = Some((self.view, wish.critical));
        match wish.decision {
            EcsDecision::Drain { .. } | EcsDecision::DrainSuppressed { .. } if wish.critical => {
                self.go(Phase::Draining, vec![Effect::Drain])
            }
            EcsDecision::Drain { .. } | EcsDecision::DrainSuppressed { .. } => {
                self.go(Phase::Counting, vec![Effect::ReadCount])
            }
            EcsDecision::Undrain => self.read(Then::Undrain),
            EcsDecision::RemoveStaleMark => self.go(Phase::RemovingMark, vec![Effect::RemoveMark]),
            EcsDecision::ClearCulprit => {
                self.go(Phase::ClearingCulprit, vec![Effect::ClearCulprit])
            }
            EcsDecision::None => Vec::new(),
        }
    }

    fn viewed(
        &mut self,
        then: Then,
        result: Result<ViewFacts, String>,
        now: Instant,
    ) -> Vec<Effect> {
        let facts = match result {
            Ok(f) => f,
            Err(e) => {
                let first = !self.view_failed;
                self.view_failed = true;
                let mut effects = self.back_off(now);
                if first {
                    effects.insert(0, Effect::Say(Note::ViewFailed(e)));
                }
                self.phase = Phase::Idle;
                return effects;
            }
        };
        let mut effects = Vec::new();
        if std::mem::replace(&mut self.view_failed, false) {
            effects.push(Effect::Say(Note::ViewRecovered));
        }
        self.view = facts.generation;
        self.culprit_on = facts.culprit.clone();
        let ours_draining = facts.status == EcsStatus::Draining && facts.ours;
        if then == Then::Undrain {
            // The re-read was this view's action: a plan made from it does not ask again,
            // so an instance left DRAINING is looked at once a minute, not every second.
            self.acted = Some((facts.generation, self.critical));
        }
        let next = match then {
            Then::Undrain if ours_draining => {
                effects.push(Effect::ReadLifecycle);
                Phase::AskingLifecycle
            }
            Then::Verify if ours_draining && !self.critical => {
                effects.push(Effect::ReadDrains);
                Phase::Verifying { settle: false }
            }
            _ => Phase::Idle,
        };
        self.go(next, effects)
    }

    /// A suppression counts once per drain episode.
    fn count_suppression(&mut self) -> Vec<Effect> {
        if std::mem::replace(&mut self.suppressed, true) {
            Vec::new()
        } else {
            vec![Effect::CountSuppressed]
        }
    }

    fn after_action(&mut self, note: Option<Note>) -> Vec<Effect> {
        let mut effects: Vec<Effect> = note.into_iter().map(Effect::Say).collect();
        self.phase = Phase::Reading(Then::Nothing);
        effects.push(Effect::ReadView);
        effects.push(Effect::RefreshIn(SETTLE));
        effects
    }

    fn succeeded(&mut self) {
        self.backoff.succeeded();
        self.retry_at = None;
    }

    fn back_off(&mut self, now: Instant) -> Vec<Effect> {
        let wait = self.backoff.failed();
        self.retry_at = Some(now + wait);
        vec![Effect::RefreshIn(wait)]
    }

    /// A call failed: wait (doubling), then read the view afresh — it shows what the
    /// failed call left behind — and act on the plan made from it.
    fn failed(&mut self, what: &'static str, error: String, now: Instant) -> Vec<Effect> {
        let mut effects = self.back_off(now);
        let retry_in = self.retry_at.map_or(Duration::ZERO, |at| at - now);
        effects.insert(
            0,
            Effect::Say(Note::Failed {
                what,
                error,
                retry_in,
            }),
        );
        self.go(Phase::Idle, effects)
    }
}

/// Retrying the search for this instance's identity (the ECS agent often starts after
/// diskguard): 1 s doubling to 10 s, and a log line only when what is seen changes.
#[derive(Debug, Clone)]
pub struct Search<T> {
    last: Option<T>,
    backoff: Backoff,
}

impl<T: PartialEq> Search<T> {
    pub fn new() -> Self {
        Search {
            last: None,
            backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(10)),
        }
    }

    /// Another miss: whether it is worth a log line, and how long to wait.
    pub fn missed(&mut self, seen: T) -> (bool, Duration) {
        let changed = self.last.as_ref() != Some(&seen);
        self.last = Some(seen);
        (changed, self.backoff.failed())
    }
}

impl<T: PartialEq> Default for Search<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
