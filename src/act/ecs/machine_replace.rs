//! The machine's rules for `[escalate]`: a node diskguard drained that stays full is
//! replaced by its Auto Scaling group. The policy says when the disk has been stuck long
//! enough; here, on a fresh read, the rest: the drain is diskguard's, no task runs on the
//! instance any more, and the cluster is not already too far out of service. Once per
//! drain episode. A child of `machine.rs`, so it shares the machine's memory.

use std::time::Instant;

use std::time::Duration;

use super::{Effect, Machine, Note, Phase, RECHECK};

/// After a replacement was asked, the group is asked again this long later if the instance
/// is still there, drained and full (normally it is terminated within minutes).
pub const REASK: Duration = Duration::from_secs(15 * 60);
use crate::act::ecs::events::{Failure, ReplaceFacts};
use crate::policy::drain_budget;
use crate::sample::EcsStatus;

impl Machine {
    /// Whether a plan's `replace` calls for a replacement check now.
    pub(super) fn wants_replacement(&self, replace: bool, now: Instant) -> bool {
        replace && !self.replacement.done && self.replacement.again_at.is_none_or(|at| now >= at)
    }

    pub(super) fn replace_read(&mut self, facts: ReplaceFacts, now: Instant) -> Vec<Effect> {
        self.instances = Some((facts.instances, now));
        self.draining = facts.draining;
        let ours = facts.status == EcsStatus::Draining && facts.mark.is_some();
        if !ours {
            // Never for a drain that is not diskguard's (or no drain at all any more).
            return self.replace_later(None, now);
        }
        if facts.tasks > 0 {
            let why = format!(
                "{} task(s) still run on it (ECS moves them off a DRAINING instance)",
                facts.tasks
            );
            return self.replace_later(Some(why), now);
        }
        let allowed = drain_budget(self.replacement.max_percent, facts.instances);
        if facts.draining > allowed {
            let why = format!(
                "{} of the cluster's {} instances are DRAINING (this one included), more than the {} that escalate.max_percent ({} %) allows out of service at once",
                facts.draining, facts.instances, allowed, self.replacement.max_percent
            );
            return self.replace_later(Some(why), now);
        }
        if self.observe {
            self.replacement.done = true;
            return self.go(Phase::Idle, vec![Effect::Say(Note::WouldReplace)]);
        }
        let Some(id) = facts.ec2_instance_id else {
            let why = "ECS does not say which EC2 instance this is".to_owned();
            return self.unavailable(why, now);
        };
        self.go(
            Phase::Replacing,
            vec![Effect::Replace {
                ec2_instance_id: id,
                respect_grace_period: self.replacement.respect_grace_period,
            }],
        )
    }

    /// Not now: looked at again after RECHECK; `why` said once per reason.
    fn replace_later(&mut self, why: Option<String>, now: Instant) -> Vec<Effect> {
        self.replacement.again_at = Some(now + RECHECK.mul_f64(1.0 + 0.2 * self.rng.f64()));
        let mut effects = Vec::new();
        if let Some(why) = why
            && self.replacement.said.as_ref() != Some(&why)
        {
            self.replacement.said = Some(why.clone());
            effects.push(Effect::Say(Note::ReplaceWaits(why)));
        }
        effects.extend(self.rest(now));
        self.go(Phase::Idle, effects)
    }

    /// Throttled: tried again with backoff, on a new read. Anything else has already been
    /// retried by the SDK and is not transient (the group is not tagged for diskguard, so
    /// IAM denies the call; the instance left the group): said once, not tried again while
    /// this episode lasts.
    pub(super) fn replace_failed(&mut self, error: Failure, now: Instant) -> Vec<Effect> {
        if error.throttled {
            return self.failed(
                "ask the Auto Scaling group to replace the instance",
                error,
                now,
            );
        }
        self.unavailable(format!("the Auto Scaling call failed: {error}"), now)
    }

    /// No replacement can be had in this episode: said once, not tried again.
    fn unavailable(&mut self, why: String, now: Instant) -> Vec<Effect> {
        self.replacement.done = true;
        let mut effects = vec![Effect::Say(Note::ReplaceUnavailable(why))];
        effects.extend(self.rest(now));
        self.go(Phase::Idle, effects)
    }

    pub(super) fn replaced(
        &mut self,
        group: Option<String>,
        id: String,
        now: Instant,
    ) -> Vec<Effect> {
        self.succeeded();
        let Some(group) = group else {
            return self.unavailable("not in an Auto Scaling group".to_owned(), now);
        };
        // Asked again after REASK while the instance is still there and stuck: a call made
        // within the group's health check grace period, or lost, does nothing.
        self.replacement.again_at = Some(now + REASK);
        let mut effects = vec![
            Effect::CountReplaced,
            Effect::Say(Note::Replaced {
                group,
                ec2_instance_id: id,
            }),
        ];
        effects.extend(self.rest(now));
        self.go(Phase::Idle, effects)
    }
}
