//! The machine's rules for the drain budget below critical: the room check before a
//! retried claim, the claim and its check once ECS's reads have caught up, the drain, and
//! the one re-check after it. A child of `machine.rs`, so it shares the machine's memory.

use std::time::{Instant, SystemTime};

use super::{Effect, Machine, Note, Phase, SETTLE, VERIFY_TRIES};
use crate::act::ecs::events::{Budget, Failure};
use crate::ecs::rfc3339;
use crate::policy::{BudgetVerdict, DrainingInstance, EcsIntent, budget_verdict, drain_budget};
use crate::sample::EcsStatus;

impl Machine {
    /// Before a retried claim: claim only if one more drain fits.
    pub(super) fn prechecked(&mut self, b: &Budget, now: Instant, wall: SystemTime) -> Vec<Effect> {
        let drains = self.drains(b, now, None);
        if drains.iter().any(|d| d.arn == self.me && d.draining) {
            self.seen_drained_by_others(now);
            return self.someone_else(now);
        }
        let mut with_me = drains;
        with_me.push(DrainingInstance {
            arn: self.me.clone(),
            marked_at: Some(rfc3339(wall)),
            draining: false,
        });
        match self.verdict(&with_me, wall) {
            BudgetVerdict::Keep => self.claim(now, wall),
            BudgetVerdict::Undo { .. } => {
                let mut effects = self.suppressed_note(&with_me);
                self.settle_decision(now, false);
                effects.extend(self.rest(now));
                self.go(Phase::Idle, effects)
            }
        }
    }

    /// The claim is checked against every drain and claim the cluster shows.
    pub(super) fn check_claim(
        &mut self,
        b: &Budget,
        now: Instant,
        wall: SystemTime,
    ) -> Vec<Effect> {
        let own = self.mark.clone();
        let drains = self.drains(b, now, own.as_deref());
        if !matches!(self.intent, EcsIntent::Drain { .. }) {
            // The disk no longer asks for a drain (reclaim or an eviction freed it while
            // the claim waited): withdrawn, nothing drained.
            self.settle_decision(now, true);
            return self.go(Phase::Withdrawing, vec![Effect::Withdraw]);
        }
        if drains.iter().any(|d| d.arn == self.me && d.draining) {
            // DRAINING by someone else's hand, set before the claim (unseen by an older
            // read) or since: the mark must not make it diskguard's.
            self.seen_drained_by_others(now);
            let mut effects = self.someone_else(now);
            effects.insert(0, Effect::Withdraw);
            return self.go(Phase::Withdrawing, effects);
        }
        match self.verdict(&drains, wall) {
            BudgetVerdict::Keep => self.go(
                Phase::Draining { critical: false },
                vec![Effect::SetDraining],
            ),
            BudgetVerdict::Undo { rank, room } => {
                // No room at all (drains by others spent it) reads as a suppression; room
                // taken by earlier claims, as a lost claim.
                let mut effects = if room == 0 {
                    self.suppressed_note(&drains)
                } else {
                    let mut e = self.count_suppression();
                    e.push(Effect::Say(Note::LostClaim { rank, room }));
                    e
                };
                effects.push(Effect::Withdraw);
                self.settle_decision(now, false);
                self.go(Phase::Withdrawing, effects)
            }
        }
    }

    /// The DRAINING list showed this instance DRAINING without diskguard's drain: that is
    /// now what is known of it, as of this read.
    fn seen_drained_by_others(&mut self, now: Instant) {
        if let Some((facts, at)) = self.known.as_mut() {
            facts.status = EcsStatus::Draining;
            facts.mark = None;
            *at = now;
        }
    }

    pub(super) fn drained(&mut self, critical: bool, now: Instant) -> Vec<Effect> {
        self.succeeded();
        self.settle_decision(now, true);
        self.learn(EcsStatus::Draining, now);
        let mut effects = vec![Effect::Say(Note::Drained { critical })];
        if let Some(family) = self.culprit_sent.clone() {
            effects.push(Effect::CountCulprit(family));
        }
        effects.push(self.show());
        if critical || self.critical() {
            effects.extend(self.rest(now));
            self.go(Phase::Idle, effects)
        } else {
            self.verify_tries = 0;
            effects.push(Effect::RefreshIn(SETTLE));
            self.go(Phase::Settling, effects)
        }
    }

    /// The one re-check after a drain below critical.
    pub(super) fn verify(&mut self, b: &Budget, now: Instant, wall: SystemTime) -> Vec<Effect> {
        let own = self.mark.clone();
        let drains = self.drains(b, now, own.as_deref());
        let verdict = if self.critical() {
            BudgetVerdict::Keep
        } else {
            self.verdict(&drains, wall)
        };
        match verdict {
            BudgetVerdict::Keep => {
                let mut effects = vec![self.show()];
                effects.extend(self.rest(now));
                self.go(Phase::Idle, effects)
            }
            BudgetVerdict::Undo { rank, room } => {
                let mut effects = self.count_suppression();
                effects.push(Effect::Say(Note::Undone { rank, room }));
                effects.push(Effect::Activate { keep_culprit: true });
                self.settle_decision(now, false);
                self.go(Phase::Activating { undo: true }, effects)
            }
        }
    }

    pub(super) fn verify_failed(&mut self, error: Failure, now: Instant) -> Vec<Effect> {
        // The drain was decided on a good read; it is kept. The re-check is tried
        // a few times, since a drain made elsewhere at the same time may need it.
        self.verify_tries += 1;
        let retry_in = self.backoff.failed_with(self.rng.f64());
        let mut effects = vec![Effect::Say(Note::Failed {
            what: "check the drain budget again after draining",
            error,
            retry_in,
        })];
        if self.verify_tries < VERIFY_TRIES {
            effects.push(Effect::RefreshIn(retry_in));
            self.go(Phase::Settling, effects)
        } else {
            self.backoff.succeeded();
            effects.extend(self.rest(now));
            self.go(Phase::Idle, effects)
        }
    }

    pub(super) fn claim(&mut self, _now: Instant, wall: SystemTime) -> Vec<Effect> {
        self.claimed_once = true;
        let mark = rfc3339(wall);
        self.mark = Some(mark.clone());
        let culprit = self.culprit_to_send();
        self.go(Phase::Claiming, vec![Effect::Claim { mark, culprit }])
    }

    /// The cluster's drains and claims as the budget rule takes them; this instance's own
    /// claim added when a lagging read does not show it yet.
    pub(super) fn drains(
        &mut self,
        b: &Budget,
        now: Instant,
        own: Option<&str>,
    ) -> Vec<DrainingInstance> {
        if let Some(n) = b.instances {
            self.instances = Some((n, now));
        }
        self.draining = u32::try_from(b.draining.len()).unwrap_or(u32::MAX);
        let mut list: Vec<DrainingInstance> = b
            .marks
            .iter()
            .map(|(arn, mark)| DrainingInstance {
                arn: arn.clone(),
                marked_at: Some(mark.clone()),
                draining: b.draining.contains(arn),
            })
            .collect();
        for arn in &b.draining {
            if !b.marks.iter().any(|(a, _)| a == arn) {
                list.push(DrainingInstance {
                    arn: arn.clone(),
                    marked_at: None,
                    draining: true,
                });
            }
        }
        if let Some(mark) = own {
            // After draining, this instance is DRAINING whatever a lagging read says.
            let drained = self.phase == Phase::Verifying;
            match list.iter_mut().find(|d| d.arn == self.me) {
                Some(d) => {
                    d.marked_at = Some(mark.to_owned());
                    d.draining |= drained;
                }
                None => list.push(DrainingInstance {
                    arn: self.me.clone(),
                    marked_at: Some(mark.to_owned()),
                    draining: drained,
                }),
            }
        }
        list
    }

    pub(super) fn verdict(&self, drains: &[DrainingInstance], wall: SystemTime) -> BudgetVerdict {
        let instances = self.instances.map_or(1, |(n, _)| n);
        budget_verdict(&self.me, drains, instances, self.max_draining_percent, wall)
    }

    pub(super) fn suppressed_note(&mut self, drains: &[DrainingInstance]) -> Vec<Effect> {
        let instances = self.instances.map_or(1, |(n, _)| n);
        let allowed = drain_budget(self.max_draining_percent, instances);
        let busy = drains
            .iter()
            .filter(|d| d.arn != self.me && (d.draining || d.marked_at.is_some()))
            .count();
        let mut effects = self.count_suppression();
        if !effects.is_empty() {
            effects.push(Effect::Say(Note::Suppressed {
                draining: u32::try_from(busy).unwrap_or(u32::MAX),
                allowed,
            }));
        }
        effects
    }

    /// A suppression counts once per drain episode.
    pub(super) fn count_suppression(&mut self) -> Vec<Effect> {
        if std::mem::replace(&mut self.suppressed, true) {
            Vec::new()
        } else {
            vec![Effect::CountSuppressed]
        }
    }
}
