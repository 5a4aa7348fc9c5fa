//! The ECS actor's rules as a pure state machine: an event and `now` go in, the next
//! state and the effects to perform come out. The driver performs each effect (one or a
//! few ECS calls, a log line, a counter) and feeds its result back as the next event, so
//! every rule is a table test here, and the fleet simulation runs this very code.
//!
//! The rules, by what they cost the account's ECS request quota:
//! - Idle, this instance is read alone, spaced so that the whole fleet stays under a share
//!   of ECS's sustained read rate ([`idle_every`]), with jitter. Idle reads are for
//!   display; no decision rests on them.
//! - A decision reads this instance fresh ([`FRESH`]) before acting: drain, suppression,
//!   undrain, "drained by someone else". A drain below critical claims a share of the
//!   budget (the mark, with the culprit, in one call), waits for ECS's eventual
//!   consistency ([`CLAIM_WAIT`]), reads the cluster's size, DRAINING instances and marks
//!   (three calls, whatever the size; the DRAINING list is also its fresh read of this
//!   instance, so a claim on a known ACTIVE status reads nothing before it), drains if the
//!   claim holds and this instance is not DRAINING by someone else's hand, and checks once
//!   more [`SETTLE`] later: seven calls in all, eight when the status had to be read first.
//! - A failed read never yields a drain or an undrain: the decision waits (counted and
//!   logged as delayed) and is tried again with backoff; reclaim and eviction go on.

use std::time::{Duration, Instant, SystemTime};

pub use super::events::{Budget, Effect, Event, Failure, Known, Note, ViewFacts, Wish};
pub use super::search::Search;
use crate::aws::Lifecycle;
use crate::backoff::Backoff;
use crate::ecs::rfc3339;
use crate::policy::{EcsAction, EcsIntent, ecs_action};
use crate::sample::EcsStatus;

/// A decision acts on this instance's status read at most this long before.
pub const FRESH: Duration = Duration::from_secs(5);
/// After a claim, this long before reading the others' claims: ECS reads are eventually
/// consistent (typically well under a second); a claim made this long before ours is
/// visible by then, so two instances judge the same set of earlier claims.
pub const CLAIM_WAIT: Duration = Duration::from_secs(3);
/// After a drain below critical, the budget is checked once more this much later, when a
/// drain made at the same time elsewhere has become visible.
pub const SETTLE: Duration = Duration::from_secs(5);
/// A claim whose budget read is throttled is kept and checked again for this long after
/// it was put, then withdrawn: well inside [`crate::policy::CLAIM_TTL`], after which the
/// others no longer count it.
pub const CLAIM_KEEP: Duration = Duration::from_secs(10);
/// While the disk keeps asking for a drain that the budget suppressed, or that waits on
/// someone else's drain, the decision is taken again this often (with jitter).
pub const RECHECK: Duration = Duration::from_secs(60);
/// Idle reads of this instance are never more often than this.
pub const IDLE_MIN: Duration = Duration::from_secs(60);
/// The first idle read after start comes within this long (at random).
pub const FIRST_READ_SPREAD: Duration = Duration::from_secs(15);
/// The cluster's size is learned again this often while idle (one DescribeClusters), or
/// every [`COUNT_READS`] idle reads when those are further apart.
pub const COUNT_EVERY: Duration = Duration::from_secs(30 * 60);
pub const COUNT_READS: u32 = 10;
/// ECS's sustained rate for cluster resource reads, per account and Region (API reference,
/// "Request throttling for the Amazon ECS API"): what the read budget is a share of.
pub const ECS_SUSTAINED_READS_PER_SECOND: f64 = 20.0;
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// A failed re-check after a drain is tried this often before the drain is simply kept.
const VERIFY_TRIES: u32 = 5;

/// How long an agent waits between idle reads: long enough that `instances` agents reading
/// one instance each stay under `share_percent` of ECS's sustained read rate, and never
/// less than [`IDLE_MIN`]. The jitter (× 1.0–1.2) is added by the machine.
pub fn idle_every(instances: u32, share_percent: f64) -> Duration {
    let fleet_rate = ECS_SUSTAINED_READS_PER_SECOND * share_percent / 100.0;
    // Each idle read costs 1 call, plus a tenth of a DescribeClusters (the size is learned
    // again every COUNT_READS-th read at most).
    let per_read = 1.0 + 1.0 / f64::from(COUNT_READS);
    let spaced = f64::from(instances.max(1)) * per_read / fleet_rate.max(f64::MIN_POSITIVE);
    IDLE_MIN.max(Duration::from_secs_f64(spaced.min(86_400.0)))
}

/// Where the machine is: idle, or waiting for the answer to one effect or for its timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Idle,
    /// An idle read.
    Viewing,
    /// A decision's read of this instance.
    Reading,
    /// Before a claim retried after a suppression: is there room at all?
    Prechecking,
    Claiming,
    /// The claim is put; waiting [`CLAIM_WAIT`] before checking it.
    ClaimWait,
    CheckingClaim,
    Withdrawing,
    Draining {
        critical: bool,
    },
    NamingCulprit,
    ClearingCulprit,
    /// Drained below critical; waiting [`SETTLE`] (or a retry) before the re-check.
    Settling,
    Verifying,
    AskingLifecycle,
    Activating {
        undo: bool,
    },
    RemovingMark,
    /// A replacement's fresh read.
    ReplaceReading,
    Replacing,
}

/// The decision last taken: for which intent, when, and whether it needs taking again
/// after [`RECHECK`] while the intent holds (a suppressed drain, someone else's drain, an
/// instance leaving service) or is settled (drained, given back, nothing to do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Decided {
    intent: EcsIntent,
    at: Instant,
    settled: bool,
}

/// The ECS actor's memory.
#[derive(Debug, Clone)]
pub struct Machine {
    phase: Phase,
    /// This container instance's ARN, for ranking the cluster's drains.
    me: String,
    max_draining_percent: f64,
    idle_read_percent: f64,
    observe: bool,
    undrain: bool,
    rng: fastrand::Rng,
    /// What the last read or action showed of this instance, and when.
    known: Option<(ViewFacts, Instant)>,
    /// ACTIVE + DRAINING, and when counted.
    instances: Option<(u32, Instant)>,
    /// DRAINING, at the last budget read.
    draining: u32,
    /// The newest plan's intent and culprit.
    intent: EcsIntent,
    culprit: Option<String>,
    decided: Option<Decided>,
    /// A drain episode's first claim was made: later tries check for room first.
    claimed_once: bool,
    /// A suppression was counted in this drain episode.
    suppressed: bool,
    /// "Drained by someone else" was said in this episode.
    someone_else_said: bool,
    leaving_said: bool,
    observed: Option<EcsAction>,
    view_failed: bool,
    /// The value of the mark this instance put last (a claim or a drain).
    mark: Option<String>,
    /// The culprit last sent, so each family is put once.
    culprit_sent: Option<String>,
    backoff: Backoff,
    retry_at: Option<Instant>,
    verify_tries: u32,
    /// When the next idle read is due.
    idle_at: Instant,
    /// An action failed since the last read of this instance: what was read may no longer
    /// be what is there, so the next decision reads it whatever it decides.
    suspect: bool,
    /// A withdrawal of this machine's claim failed: retried before any other decision.
    withdraw_due: bool,
    /// When the current claim was put.
    claim_at: Option<Instant>,
    /// `[escalate]`: asking the Auto Scaling group to replace this instance.
    replacement: Replacement,
}

/// The machine's memory for `[escalate]` (rules in `machine_replace.rs`).
#[derive(Debug, Clone)]
struct Replacement {
    /// `escalate.max_percent` and `escalate.respect_grace_period`.
    max_percent: f64,
    respect_grace_period: bool,
    /// Asked for (or found impossible) in this episode; asked again only after `again_at`.
    done: bool,
    again_at: Option<Instant>,
    /// The last reason a replacement waited, said once.
    said: Option<String>,
    /// The EC2 instance the last read named.
    ec2_instance_id: Option<String>,
}

impl Replacement {
    /// The episode is over: the next one counts afresh.
    fn reset(&mut self) {
        self.done = false;
        self.again_at = None;
        self.said = None;
    }
}

impl Machine {
    /// `seed` drives the jitter of the idle reads (deterministic for tests and the
    /// simulation; random in the daemon).
    pub fn new(
        me: &str,
        max_draining_percent: f64,
        idle_read_percent: f64,
        observe: bool,
        undrain: bool,
        seed: u64,
        now: Instant,
    ) -> Self {
        Machine {
            phase: Phase::Idle,
            me: me.to_owned(),
            max_draining_percent,
            idle_read_percent,
            observe,
            undrain,
            rng: fastrand::Rng::with_seed(seed),
            known: None,
            instances: None,
            draining: 0,
            intent: EcsIntent::Steady,
            culprit: None,
            decided: None,
            claimed_once: false,
            suppressed: false,
            someone_else_said: false,
            leaving_said: false,
            observed: None,
            view_failed: false,
            mark: None,
            culprit_sent: None,
            backoff: Backoff::new(RETRY_FIRST, RETRY_MAX).jittered(),
            retry_at: None,
            verify_tries: 0,
            idle_at: now,
            suspect: false,
            withdraw_due: false,
            claim_at: None,
            replacement: Replacement {
                max_percent: 20.0,
                respect_grace_period: true,
                done: false,
                again_at: None,
                said: None,
                ec2_instance_id: None,
            },
        }
    }

    /// `[escalate]`'s `max_percent` and `respect_grace_period` (default 20 %, true).
    pub fn with_replacement(mut self, max_percent: f64, respect_grace_period: bool) -> Self {
        self.replacement.max_percent = max_percent;
        self.replacement.respect_grace_period = respect_grace_period;
        self
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Plans are only taken while idle; the driver offers them then.
    pub fn is_idle(&self) -> bool {
        self.phase == Phase::Idle
    }

    /// The first thing to do: an idle read spread over the first [`FIRST_READ_SPREAD`], so
    /// that a fleet started by one Auto Scaling event does not read in the same second.
    pub fn start(&mut self, now: Instant) -> Vec<Effect> {
        let first = FIRST_READ_SPREAD.mul_f64(self.rng.f64());
        self.idle_at = now + first;
        vec![Effect::RefreshIn(first)]
    }

    /// `now` for timing; `wall` (the clock) for the marks' values and ages.
    pub fn handle(&mut self, event: Event, now: Instant, wall: SystemTime) -> Vec<Effect> {
        match (self.phase, event) {
            (Phase::Idle, Event::Plan(wish)) => self.plan(wish, now, wall),
            (Phase::Idle, Event::RefreshDue) => self.due(now, wall),
            (Phase::Viewing, Event::View(r)) => self.viewed(r, now),
            (Phase::Reading, Event::Fresh(Ok(facts))) => {
                self.suspect = false;
                self.decide(facts, now, now, wall)
            }
            (Phase::Reading, Event::Fresh(Err(e))) => {
                self.delayed("read this instance's ECS status", e, now)
            }
            (Phase::Prechecking, Event::Budget(Ok(b))) => self.prechecked(&b, now, wall),
            (Phase::Prechecking, Event::Budget(Err(e))) => {
                self.delayed("read the cluster's drains", e, now)
            }
            (Phase::Claiming, Event::Claimed(Ok(()))) => {
                self.claim_at = Some(now);
                self.go(Phase::ClaimWait, vec![Effect::RefreshIn(CLAIM_WAIT)])
            }
            // The newest intent is kept: a disk that no longer asks for a drain by the time
            // the claim is checked gets its claim withdrawn, not a drain. At critical a claim
            // waiting on a throttled budget read is not waited for.
            (Phase::ClaimWait, Event::Plan(wish)) => {
                self.intent = wish.intent;
                self.culprit = wish.culprit;
                if !self.critical() {
                    return Vec::new();
                }
                self.decided = None;
                self.go(Phase::Reading, vec![Effect::ReadFresh])
            }
            (Phase::Claiming, Event::Claimed(Err(e))) => {
                self.delayed("claim a share of the drain budget", e, now)
            }
            (Phase::ClaimWait, Event::RefreshDue) => {
                let instances = self.needs_count(now);
                self.go(Phase::CheckingClaim, vec![Effect::ReadBudget { instances }])
            }
            (Phase::CheckingClaim, Event::Budget(Ok(b))) => self.check_claim(&b, now, wall),
            (Phase::CheckingClaim, Event::Budget(Err(e))) => {
                // Never a drain on a failed read. The claim is kept and checked again after
                // the backoff while it is young (its place in the queue is its time, so
                // under throttling the first to cross drain first, and no read is spent on
                // claiming again); past CLAIM_KEEP it is withdrawn (or expires after
                // CLAIM_TTL) and the decision tried again from the start.
                let (mut effects, retry_in) = self.delay_note("read the cluster's drains", e);
                let kept = self
                    .claim_at
                    .is_some_and(|at| (now + retry_in).duration_since(at) < CLAIM_KEEP);
                if kept {
                    effects.push(Effect::RefreshIn(retry_in));
                    return self.go(Phase::ClaimWait, effects);
                }
                self.retry_at = Some(now + retry_in);
                // A failed read says nothing about room: the retry claims without a room
                // check first.
                self.claimed_once = false;
                effects.extend(self.rest(now));
                effects.push(Effect::Withdraw);
                self.go(Phase::Withdrawing, effects)
            }
            (Phase::Withdrawing, Event::Withdrawn(Ok(()))) => {
                self.withdraw_due = false;
                self.forget_mark();
                let effects = self.rest(now);
                self.go(Phase::Idle, effects)
            }
            (Phase::Withdrawing, Event::Withdrawn(Err(e))) => {
                // A claim left on an instance someone else drained would make their drain
                // look like diskguard's: withdrawn again before anything else is decided.
                self.withdraw_due = true;
                self.failed("withdraw the claim on the drain budget", e, now)
            }
            (Phase::Draining { critical }, Event::Drained(Ok(()))) => self.drained(critical, now),
            (Phase::Draining { .. }, Event::Drained(Err(e))) => {
                self.read_before_action(now);
                self.delayed("drain the container instance", e, now)
            }
            (Phase::Settling, Event::RefreshDue) => {
                let instances = self.needs_count(now);
                self.go(Phase::Verifying, vec![Effect::ReadBudget { instances }])
            }
            (Phase::Verifying, Event::Budget(Ok(b))) => self.verify(&b, now, wall),
            (Phase::Verifying, Event::Budget(Err(error))) => self.verify_failed(error, now),
            (Phase::NamingCulprit, Event::CulpritSet(result)) => {
                let effects = match result {
                    Ok(()) => {
                        let family = self.culprit_sent.clone().unwrap_or_default();
                        if let Some((facts, _)) = self.known.as_mut() {
                            facts.culprit = Some(family.clone());
                        }
                        vec![Effect::Say(Note::CulpritNamed(family)), self.show()]
                    }
                    // Naming is worth a retry with the next eviction, not a stop.
                    Err(error) => {
                        self.culprit_sent = None;
                        vec![Effect::Say(Note::Failed {
                            what: "name the culprit",
                            error,
                            retry_in: Duration::ZERO,
                        })]
                    }
                };
                self.go(Phase::Idle, effects)
            }
            (Phase::ClearingCulprit, Event::CulpritCleared(Ok(()))) => {
                self.succeeded();
                self.culprit_sent = None;
                if let Some((facts, _)) = self.known.as_mut() {
                    facts.culprit = None;
                }
                self.settle_decision(now, true);
                let mut effects = vec![Effect::Say(Note::CulpritCleared), self.show()];
                effects.extend(self.rest(now));
                self.go(Phase::Idle, effects)
            }
            (Phase::ClearingCulprit, Event::CulpritCleared(Err(e))) => {
                self.failed("remove the culprit", e, now)
            }
            (Phase::AskingLifecycle, Event::Lifecycle(Ok(Lifecycle::InService))) => {
                self.leaving_said = false;
                self.go(
                    Phase::Activating { undo: false },
                    vec![Effect::Activate {
                        keep_culprit: false,
                    }],
                )
            }
            (Phase::AskingLifecycle, Event::Lifecycle(Ok(Lifecycle::Leaving(state)))) => {
                self.settle_decision(now, false);
                let mut effects = if std::mem::replace(&mut self.leaving_said, true) {
                    Vec::new()
                } else {
                    vec![Effect::Say(Note::Leaving(state))]
                };
                effects.extend(self.rest(now));
                self.go(Phase::Idle, effects)
            }
            (Phase::AskingLifecycle, Event::Lifecycle(Err(e))) => {
                self.failed("read the Auto Scaling lifecycle state", e, now)
            }
            (Phase::Activating { undo }, Event::Activated(Ok(()))) => {
                self.succeeded();
                self.forget_mark();
                if let Some((facts, _)) = self.known.as_mut() {
                    facts.status = EcsStatus::Active;
                    if !undo {
                        facts.culprit = None;
                    }
                }
                if !undo {
                    self.culprit_sent = None;
                    self.settle_decision(now, true);
                }
                let mut effects: Vec<Effect> = (!undo)
                    .then_some(Effect::Say(Note::Undrained))
                    .into_iter()
                    .collect();
                effects.push(self.show());
                effects.extend(self.rest(now));
                self.go(Phase::Idle, effects)
            }
            (Phase::Activating { .. }, Event::Activated(Err(e))) => {
                self.failed("set the container instance ACTIVE again", e, now)
            }
            (Phase::RemovingMark, Event::MarkRemoved(Ok(()))) => {
                self.succeeded();
                self.forget_mark();
                self.settle_decision(now, true);
                let mut effects = vec![Effect::Say(Note::StaleMarkRemoved), self.show()];
                effects.extend(self.rest(now));
                self.go(Phase::Idle, effects)
            }
            (Phase::RemovingMark, Event::MarkRemoved(Err(e))) => {
                self.failed("remove the stale drain mark", e, now)
            }
            (Phase::ReplaceReading, Event::ReplaceRead(Ok(facts))) => {
                self.replacement.ec2_instance_id = facts.ec2_instance_id.clone();
                self.replace_read(facts, now)
            }
            (Phase::ReplaceReading, Event::ReplaceRead(Err(e))) => self.failed(
                "read the instance before asking for its replacement",
                e,
                now,
            ),
            (Phase::Replacing, Event::Replaced(Ok(group))) => {
                let id = self.replacement.ec2_instance_id.clone().unwrap_or_default();
                self.replaced(group, id, now)
            }
            (Phase::Replacing, Event::Replaced(Err(e))) => self.replace_failed(e, now),
            // An answer to a question no longer asked, or a plan while busy: ignored.
            _ => Vec::new(),
        }
    }

    fn go(&mut self, phase: Phase, effects: Vec<Effect>) -> Vec<Effect> {
        self.phase = phase;
        effects
    }

    fn critical(&self) -> bool {
        matches!(self.intent, EcsIntent::Drain { critical: true })
    }

    fn plan(&mut self, wish: Wish, now: Instant, wall: SystemTime) -> Vec<Effect> {
        if !matches!(wish.intent, EcsIntent::Drain { .. }) {
            // The episode is over: the next time the disk fills, it all counts again.
            self.suppressed = false;
            self.claimed_once = false;
            self.someone_else_said = false;
        }
        if !wish.replace {
            self.replacement.reset();
        }
        if wish.intent != self.intent {
            // A new episode (or a step within one) is decided afresh, even when it asks
            // what an earlier episode's last decision was about.
            self.decided = None;
        }
        self.intent = wish.intent;
        self.culprit = wish.culprit.clone();
        if self.retry_at.is_some_and(|at| now < at) {
            return Vec::new();
        }
        if self.withdraw_due {
            self.retry_at = None;
            return self.go(Phase::Withdrawing, vec![Effect::Withdraw]);
        }
        // An eviction names the culprit at once, whatever else the plan asks.
        if let Some(family) = wish
            .culprit
            .as_ref()
            .filter(|_| wish.evicting && !self.observe)
        {
            let on = self.known.as_ref().and_then(|(f, _)| f.culprit.as_ref());
            if on != Some(family) && self.culprit_sent.as_ref() != Some(family) {
                self.culprit_sent = Some(family.clone());
                return self.go(
                    Phase::NamingCulprit,
                    vec![Effect::SetCulprit(family.clone())],
                );
            }
        }
        if self.wants_replacement(wish.replace, now) {
            return self.go(Phase::ReplaceReading, vec![Effect::ReadForReplacement]);
        }
        if !self.wants_decision(now) {
            return Vec::new();
        }
        self.decide_on_fresh(now, wall)
    }

    /// Decides on what is known if it was read less than [`FRESH`] ago (as good as a new
    /// read), else reads this instance first.
    ///
    /// A drain below critical on a known ACTIVE status needs no read first: its claim (or,
    /// after a suppression, its room check) reads the DRAINING instances, which show this
    /// instance's status afresh, and nothing is drained before that read says ACTIVE. The
    /// read is skipped only while no action of this machine's failed since the last read
    /// (a failed drain may have half happened), and never in observe mode (which says what
    /// it would do on what it read).
    fn decide_on_fresh(&mut self, now: Instant, wall: SystemTime) -> Vec<Effect> {
        match &self.known {
            Some((facts, at)) if now.duration_since(*at) < FRESH || self.claim_reads(facts) => {
                let (facts, at) = (facts.clone(), *at);
                self.decide(facts, at, now, wall)
            }
            _ => self.go(Phase::Reading, vec![Effect::ReadFresh]),
        }
    }

    /// Whether the budget read of a claim is this decision's fresh read of this instance.
    fn claim_reads(&self, facts: &ViewFacts) -> bool {
        self.intent == EcsIntent::Drain { critical: false }
            && !self.observe
            && !self.suspect
            && facts.status == EcsStatus::Active
            && facts.mark.is_none()
    }

    /// Whether the newest intent calls for a decision now.
    fn wants_decision(&self, now: Instant) -> bool {
        let again = |d: &Decided| d.intent != self.intent || (!d.settled && now >= d.at + RECHECK);
        match self.intent {
            EcsIntent::Steady | EcsIntent::Recovered => {
                // Only when what is known asks for an action: a healthy idle node reads
                // nothing more than its idle reads.
                let Some((facts, _)) = &self.known else {
                    return false;
                };
                let action = ecs_action(
                    self.intent,
                    &facts.status,
                    facts.mark.is_some(),
                    facts.culprit.is_some(),
                    self.undrain,
                );
                action != EcsAction::None && self.decided.as_ref().is_none_or(again)
            }
            EcsIntent::Drain { .. } => self.decided.as_ref().is_none_or(again),
        }
    }

    /// A fresh read is in: act on it.
    /// `read_at`: when `facts` were read — kept, so that a read is never made fresher by
    /// being decided on again.
    fn decide(
        &mut self,
        facts: ViewFacts,
        read_at: Instant,
        now: Instant,
        wall: SystemTime,
    ) -> Vec<Effect> {
        let mut effects = self.recovered_view();
        self.known = Some((facts.clone(), read_at));
        if let Some(n) = facts.instances {
            self.instances = Some((n, read_at));
        }
        effects.push(self.show());
        let action = ecs_action(
            self.intent,
            &facts.status,
            facts.mark.is_some(),
            facts.culprit.is_some(),
            self.undrain,
        );
        if self.observe {
            self.settle_decision(now, true);
            if action != EcsAction::None && self.observed != Some(action) {
                effects.push(Effect::Say(Note::Observed(action)));
            }
            self.observed = Some(action);
            return self.go(Phase::Idle, effects);
        }
        let drained_by_us = facts.status == EcsStatus::Draining && facts.mark.is_some();
        match action {
            EcsAction::None => {
                let someone_else = matches!(self.intent, EcsIntent::Drain { .. })
                    && facts.status == EcsStatus::Draining
                    && !drained_by_us;
                if someone_else {
                    effects.extend(self.someone_else(now));
                    return self.go(Phase::Idle, effects);
                }
                self.settle_decision(now, true);
                effects.extend(self.rest(now));
                self.go(Phase::Idle, effects)
            }
            EcsAction::Drain if self.critical() => {
                let mark = rfc3339(wall);
                self.mark = Some(mark.clone());
                let culprit = self.culprit_to_send();
                effects.push(Effect::Drain { mark, culprit });
                self.go(Phase::Draining { critical: true }, effects)
            }
            EcsAction::Drain if self.claimed_once => {
                // A retry after a suppression: claim only if there is room at all.
                let instances = self.needs_count(now);
                effects.push(Effect::ReadBudget { instances });
                self.go(Phase::Prechecking, effects)
            }
            EcsAction::Drain => {
                let mut claim = self.claim(now, wall);
                effects.append(&mut claim);
                effects
            }
            EcsAction::Undrain => {
                effects.push(Effect::ReadLifecycle);
                self.go(Phase::AskingLifecycle, effects)
            }
            EcsAction::RemoveStaleMark => {
                effects.push(Effect::RemoveMark);
                self.go(Phase::RemovingMark, effects)
            }
            EcsAction::ClearCulprit => {
                effects.push(Effect::ClearCulprit);
                self.go(Phase::ClearingCulprit, effects)
            }
        }
    }

    /// The culprit to put with a claim or drain, once per family.
    fn culprit_to_send(&mut self) -> Option<String> {
        let family = self.culprit.clone()?;
        let on = self.known.as_ref().and_then(|(f, _)| f.culprit.clone());
        if on.as_ref() == Some(&family) || self.culprit_sent.as_ref() == Some(&family) {
            // Already named: counted again as an incident when the drain is made.
            self.culprit_sent = Some(family);
            return None;
        }
        self.culprit_sent = Some(family.clone());
        Some(family)
    }

    /// The instance is DRAINING without diskguard's mark: never touched. Said once per
    /// episode; the decision is taken again after RECHECK in case it is set ACTIVE.
    fn someone_else(&mut self, now: Instant) -> Vec<Effect> {
        self.settle_decision(now, false);
        let mut effects = Vec::new();
        if !std::mem::replace(&mut self.someone_else_said, true) {
            effects.push(Effect::Say(Note::DrainedBySomeoneElse));
        }
        effects.extend(self.rest(now));
        self.phase = Phase::Idle;
        effects
    }

    fn settle_decision(&mut self, now: Instant, settled: bool) {
        // A RECHECK is spread by jitter, so that instances suppressed together do not
        // retry in the same second.
        let at = if settled {
            now
        } else {
            now - RECHECK + RECHECK.mul_f64(1.0 + 0.2 * self.rng.f64())
        };
        self.decided = Some(Decided {
            intent: self.intent,
            at,
            settled,
        });
    }

    /// The timer's due: an idle read, or a retry.
    fn due(&mut self, now: Instant, wall: SystemTime) -> Vec<Effect> {
        if now >= self.idle_at {
            let instances = self.needs_count(now);
            return self.go(Phase::Viewing, vec![Effect::ReadView { instances }]);
        }
        if self.retry_at.is_some_and(|at| now >= at) {
            self.retry_at = None;
            if self.withdraw_due {
                return self.go(Phase::Withdrawing, vec![Effect::Withdraw]);
            }
            // The decision is taken again with the newest intent, on a fresh read: the one
            // made before a throttled budget read still counts if it is young enough, so
            // that a retry under throttling spends no read it does not need.
            self.decided = None;
            if self.wants_decision(now) {
                return self.decide_on_fresh(now, wall);
            }
        }
        self.rest(now)
    }

    fn viewed(&mut self, result: Result<ViewFacts, Failure>, now: Instant) -> Vec<Effect> {
        let mut effects = Vec::new();
        // The first read that learns the cluster's size puts this agent at a random point
        // of its spacing: a fleet started together then reads evenly, not in waves.
        let first_size = self.instances.is_none();
        match result {
            Ok(facts) => {
                self.suspect = false;
                effects.extend(self.recovered_view());
                if let Some(n) = facts.instances {
                    self.instances = Some((n, now));
                }
                let changed = self.known.as_ref().is_none_or(|(k, _)| {
                    (&k.status, &k.mark, &k.culprit) != (&facts.status, &facts.mark, &facts.culprit)
                });
                if changed {
                    // Someone changed this instance: the decision is taken again.
                    self.decided = None;
                }
                self.known = Some((facts, now));
                effects.push(self.show());
            }
            Err(e) => {
                if !std::mem::replace(&mut self.view_failed, true) {
                    effects.push(Effect::Say(Note::ViewFailed(e)));
                }
            }
        }
        // Spaced by the cluster's size as now known, with jitter.
        let every = idle_every(self.instances.map_or(1, |(n, _)| n), self.idle_read_percent);
        let wait = if first_size && self.instances.is_some() {
            every.mul_f64(self.rng.f64()).max(IDLE_MIN)
        } else {
            every.mul_f64(1.0 + 0.2 * self.rng.f64())
        };
        self.idle_at = now + wait;
        effects.extend(self.rest(now));
        self.go(Phase::Idle, effects)
    }

    fn recovered_view(&mut self) -> Vec<Effect> {
        if std::mem::replace(&mut self.view_failed, false) {
            vec![Effect::Say(Note::ViewRecovered)]
        } else {
            Vec::new()
        }
    }

    /// Whether a read should learn the cluster's size again.
    fn needs_count(&self, now: Instant) -> bool {
        self.instances.is_none_or(|(n, at)| {
            let every = idle_every(n, self.idle_read_percent) * COUNT_READS;
            now.duration_since(at) >= COUNT_EVERY.max(every)
        })
    }

    fn learn(&mut self, status: EcsStatus, now: Instant) {
        let mark = self.mark.clone();
        match self.known.as_mut() {
            // What this instance just did, not a read: the time of the last read stays, so
            // a decision still reads afresh.
            Some((facts, _)) => {
                facts.status = status;
                facts.mark = mark;
            }
            None => {
                self.known = Some((
                    ViewFacts {
                        status,
                        mark,
                        culprit: None,
                        instances: None,
                    },
                    now.checked_sub(FRESH).unwrap_or(now),
                ));
            }
        }
        if let (Some(family), Some((facts, _))) = (self.culprit_sent.clone(), self.known.as_mut()) {
            facts.culprit = Some(family);
        }
    }

    fn forget_mark(&mut self) {
        self.mark = None;
        if let Some((facts, _)) = self.known.as_mut() {
            facts.mark = None;
        }
    }

    fn show(&self) -> Effect {
        let (status, mark, culprit) = match &self.known {
            Some((f, _)) => (f.status.clone(), f.mark.clone(), f.culprit.clone()),
            None => (EcsStatus::Other("UNKNOWN".into()), None, None),
        };
        Effect::Show(Known {
            status,
            mark,
            culprit,
            instances: self.instances.map_or(0, |(n, _)| n),
            draining: self.draining,
        })
    }

    /// Idle: the timer is set for whichever comes first, the next idle read or a retry.
    fn rest(&self, now: Instant) -> Vec<Effect> {
        let next = match self.retry_at {
            Some(at) if at < self.idle_at => at,
            _ => self.idle_at,
        };
        vec![Effect::RefreshIn(next.saturating_duration_since(now))]
    }

    fn succeeded(&mut self) {
        self.backoff.succeeded();
        self.retry_at = None;
    }

    /// A decision waits on a failed call: counted, logged, tried again with backoff on a
    /// fresh read; nothing is decided on the failure.
    fn delayed(&mut self, what: &'static str, error: Failure, now: Instant) -> Vec<Effect> {
        let (mut effects, retry_in) = self.delay_note(what, error);
        self.retry_at = Some(now + retry_in);
        effects.extend(self.rest(now));
        self.go(Phase::Idle, effects)
    }

    /// A delay counted and said, and how long until the retry (the backoff doubles).
    fn delay_note(&mut self, what: &'static str, error: Failure) -> (Vec<Effect>, Duration) {
        let retry_in = self.backoff.failed_with(self.rng.f64());
        let effects = vec![
            Effect::CountDelayed,
            Effect::Say(Note::Delayed {
                what,
                error,
                retry_in,
            }),
        ];
        (effects, retry_in)
    }

    /// What was read came before an action that failed and may have half happened: no
    /// longer fresh, whatever its age, so the retry reads again.
    fn read_before_action(&mut self, now: Instant) {
        self.suspect = true;
        if let Some((_, at)) = self.known.as_mut() {
            *at = now.checked_sub(FRESH).unwrap_or(*at).min(*at);
        }
    }

    /// An action failed: wait (doubling), then decide again on a fresh read — it shows
    /// what the failed call left behind.
    fn failed(&mut self, what: &'static str, error: Failure, now: Instant) -> Vec<Effect> {
        self.read_before_action(now);
        let retry_in = self.backoff.failed_with(self.rng.f64());
        self.retry_at = Some(now + retry_in);
        let mut effects = vec![Effect::Say(Note::Failed {
            what,
            error,
            retry_in,
        })];
        effects.extend(self.rest(now));
        self.go(Phase::Idle, effects)
    }
}

#[path = "machine_claim.rs"]
mod claim;
#[path = "machine_replace.rs"]
mod replace;

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
