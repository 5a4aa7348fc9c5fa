//! Performs what the ECS machine asks, against any [`ControlPlane`]: the daemon's actor
//! drives it with the ECS API and the real clock, the fleet simulation with a simulated
//! control plane and clock. One performer, so the simulation runs the daemon's code.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use tracing::{info, warn};

use super::EcsChannels;
use super::events::ReplaceFacts;
use super::machine::{Budget, Effect, Event, Failure, Known, Machine, Note, ViewFacts};
use super::plane::ControlPlane;
use crate::ecs::{CULPRIT, DRAINED_AT};
use crate::policy::EcsAction;
use crate::sample::EcsView;

/// Where `now` comes from: the real clock in the daemon, a simulated one elsewhere.
pub trait Clock {
    fn now(&self) -> Instant;
    fn wall(&self) -> SystemTime;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealClock;

impl Clock for RealClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// The machine, the plane it acts on, and where its results go.
#[derive(Debug)]
pub struct Driver<P> {
    pub machine: Machine,
    pub plane: P,
    pub out: EcsChannels,
    cluster: String,
    arn: String,
    /// When the machine's timer runs out ([`Event::RefreshDue`]).
    pub refresh: Instant,
    /// The Docker volume's usage in the plan being acted on, for the log lines.
    pub usage: f64,
}

impl<P: ControlPlane> Driver<P> {
    pub fn new(machine: Machine, plane: P, out: EcsChannels, cluster: &str, arn: &str) -> Self {
        Driver {
            machine,
            plane,
            out,
            cluster: cluster.to_owned(),
            arn: arn.to_owned(),
            refresh: Instant::now() + Duration::from_secs(3600),
            usage: 0.0,
        }
    }

    pub async fn start(&mut self, clock: &impl Clock) {
        let effects = self.machine.start(clock.now());
        self.perform(effects, clock).await;
    }

    /// Feeds an event and performs the effects, feeding each answer back, until the
    /// machine waits for a plan or its timer.
    pub async fn feed(&mut self, event: Event, clock: &impl Clock) {
        let effects = self.machine.handle(event, clock.now(), clock.wall());
        self.perform(effects, clock).await;
    }

    async fn perform(&mut self, effects: Vec<Effect>, clock: &impl Clock) {
        let mut queue: VecDeque<Effect> = effects.into();
        while let Some(effect) = queue.pop_front() {
            if let Some(answer) = self.effect(effect, clock).await {
                queue.extend(self.machine.handle(answer, clock.now(), clock.wall()));
            }
        }
    }

    /// Performs one effect; the calls answer with the event to feed back.
    async fn effect(&mut self, effect: Effect, clock: &impl Clock) -> Option<Event> {
        let p = &self.plane;
        Some(match effect {
            Effect::ReadView { instances } => {
                let read = self.read(instances).await;
                if read.is_err() {
                    // Its status is no longer known: not published as a metric.
                    self.out.view.send_modify(|v| {
                        if let Some(v) = v.as_mut() {
                            v.current = false;
                        }
                    });
                }
                Event::View(read)
            }
            Effect::ReadFresh => Event::Fresh(self.read(false).await),
            Effect::ReadBudget { instances } => Event::Budget(self.budget(instances).await),
            Effect::Claim { mark, culprit } => {
                Event::Claimed(p.put(&attributes(&mark, culprit.as_deref())).await)
            }
            Effect::Withdraw => Event::Withdrawn(p.delete(&[DRAINED_AT]).await),
            Effect::SetDraining => Event::Drained(p.set_draining(true).await),
            Effect::Drain { mark, culprit } => {
                let put = p.put(&attributes(&mark, culprit.as_deref())).await;
                Event::Drained(match put {
                    Ok(()) => p.set_draining(true).await,
                    Err(e) => Err(e),
                })
            }
            Effect::SetCulprit(family) => Event::CulpritSet(p.put(&[(CULPRIT, &family)]).await),
            Effect::ClearCulprit => Event::CulpritCleared(p.delete(&[CULPRIT]).await),
            Effect::CountCulprit(family) => {
                self.out.counters.add_eviction(Some(&family));
                return None;
            }
            Effect::ReadLifecycle => Event::Lifecycle(p.lifecycle().await.map_err(Failure::new)),
            Effect::Activate { keep_culprit } => {
                let names: &[&str] = if keep_culprit {
                    &[DRAINED_AT]
                } else {
                    &[DRAINED_AT, CULPRIT]
                };
                Event::Activated(match p.set_draining(false).await {
                    Ok(()) => p.delete(names).await,
                    Err(e) => Err(e),
                })
            }
            Effect::RemoveMark => Event::MarkRemoved(p.delete(&[DRAINED_AT]).await),
            Effect::ReadForReplacement => Event::ReplaceRead(self.replace_read().await),
            Effect::Replace {
                ec2_instance_id,
                respect_grace_period,
            } => {
                // Before the replacement: what is left that diskguard did not free.
                let left = p.leftovers().await;
                warn!(leftovers = %left, "before asking for a replacement: {left}");
                Event::Replaced(p.replace(&ec2_instance_id, respect_grace_period).await)
            }
            Effect::CountReplaced => {
                self.out
                    .counters
                    .escalations
                    .fetch_add(1, Ordering::Relaxed);
                return None;
            }
            Effect::CountSuppressed => {
                self.out
                    .counters
                    .drains_suppressed
                    .fetch_add(1, Ordering::Relaxed);
                return None;
            }
            Effect::CountDelayed => {
                self.out
                    .counters
                    .drains_delayed
                    .fetch_add(1, Ordering::Relaxed);
                return None;
            }
            Effect::Show(known) => {
                self.show(known);
                return None;
            }
            Effect::RefreshIn(after) => {
                self.refresh = clock.now() + after;
                return None;
            }
            Effect::Say(note) => {
                self.say(note);
                return None;
            }
        })
    }

    async fn read(&self, instances: bool) -> Result<ViewFacts, Failure> {
        let me = self.plane.describe_self().await?;
        let instances = if instances {
            Some(self.plane.instances().await?)
        } else {
            None
        };
        Ok(ViewFacts {
            status: me.status,
            mark: me.mark,
            culprit: me.culprit,
            instances,
        })
    }

    async fn replace_read(&self) -> Result<ReplaceFacts, Failure> {
        let me = self.plane.describe_self().await?;
        let instances = self.plane.instances().await?;
        let draining = self.plane.draining().await?;
        Ok(ReplaceFacts {
            status: me.status,
            mark: me.mark,
            tasks: me.tasks,
            ec2_instance_id: me.ec2_instance_id,
            instances,
            draining: u32::try_from(draining.len()).unwrap_or(u32::MAX),
        })
    }

    async fn budget(&self, instances: bool) -> Result<Budget, Failure> {
        let instances = if instances {
            Some(self.plane.instances().await?)
        } else {
            None
        };
        Ok(Budget {
            instances,
            draining: self.plane.draining().await?,
            marks: self.plane.marked(DRAINED_AT).await?,
        })
    }

    fn show(&self, known: Known) {
        let before = self
            .out
            .view
            .borrow()
            .as_ref()
            .map(|v| (v.status.clone(), v.drained_at.is_some()));
        if before != Some((known.status.clone(), known.mark.is_some())) {
            info!(
                status = known.status.as_str(),
                drained_by_diskguard = known.mark.is_some(),
                instances = known.instances,
                "ECS container instance is {}",
                known.status.as_str()
            );
        }
        self.out.view.send_replace(Some(EcsView {
            cluster: self.cluster.clone(),
            container_instance_arn: self.arn.clone(),
            status: known.status,
            drained_at: known.mark,
            culprit: known.culprit,
            cluster_active: known.instances.saturating_sub(known.draining),
            cluster_draining: known.draining,
            current: true,
        }));
    }

    fn say(&self, note: Note) {
        let usage = self.usage;
        match note {
            Note::Suppressed { draining, allowed } => warn!(
                draining,
                allowed,
                "would drain, but {draining} of the cluster's instances are already DRAINING or about to, and the budget allows {allowed}; waiting (the critical level overrides)"
            ),
            Note::Drained { critical } => warn!(
                usage_percent = usage,
                budget_overridden = critical,
                "set the container instance DRAINING: docker at {usage:.1}%{}",
                if critical {
                    " (critical: past the cluster's drain budget if need be)"
                } else {
                    ""
                }
            ),
            Note::Undone { rank, room } => warn!(
                rank,
                room,
                "more instances drained at once than the cluster's budget allows, and this one drained among the last ({} of diskguard's drains, room for {room}): set it ACTIVE again and waiting",
                rank + 1
            ),
            Note::LostClaim { rank, room } => warn!(
                rank,
                room,
                "would drain, but other instances claimed the cluster's drain budget first ({} of diskguard's drains and claims, room for {room}): waiting (the critical level overrides)",
                rank + 1
            ),
            Note::CulpritNamed(family) => warn!(
                task_family = %family,
                "named task family {family} as the culprit on this container instance ({CULPRIT})"
            ),
            Note::CulpritCleared => {
                info!("disk recovered: removed {CULPRIT} from this container instance")
            }
            Note::Undrained => info!(
                usage_percent = usage,
                "disk recovered (docker at {usage:.1}%): set the container instance ACTIVE again and removed the mark"
            ),
            Note::StaleMarkRemoved => info!(
                "the container instance was set ACTIVE by someone else; removed diskguard's stale drain mark"
            ),
            Note::DrainedBySomeoneElse => warn!(
                usage_percent = usage,
                "would drain, but the container instance is DRAINING by someone else's hand (no {DRAINED_AT}): leaving it alone; looking again in a minute"
            ),
            Note::Leaving(state) => warn!(
                lifecycle = %state,
                "disk recovered, but the Auto Scaling group is taking this instance out of service ({state}): leaving it DRAINING"
            ),
            Note::Observed(action) => {
                info!(action = ?action, "observe mode: would {}", verb(action))
            }
            Note::Delayed {
                what,
                error,
                retry_in,
            } => warn!(
                error = %error,
                throttled = error.throttled,
                retry_in = ?retry_in,
                "DrainDelayed: could not {what}{}; nothing is decided on a failed read — trying again in {retry_in:.1?} (reclaim and eviction go on)",
                if error.throttled { " (ECS throttled the call)" } else { "" }
            ),
            Note::Failed {
                what,
                error,
                retry_in,
            } => {
                warn!(error = %error, throttled = error.throttled, retry_in = ?retry_in, "could not {what}")
            }
            Note::ViewFailed(error) => warn!(
                error = %error,
                "cannot read the ECS container instance; its status is unknown until it can (not published) and decisions read it again before acting"
            ),
            Note::ViewRecovered => info!("the ECS container instance can be read again"),
            Note::ReplaceWaits(why) => warn!(
                usage_percent = usage,
                "drained and still full with nothing left to reclaim, but not asking for a replacement yet: {why}"
            ),
            Note::Replaced {
                group,
                ec2_instance_id,
            } => warn!(
                usage_percent = usage,
                auto_scaling_group = %group,
                ec2_instance_id = %ec2_instance_id,
                "Escalation: drained, no task left and still full with nothing left to reclaim (docker at {usage:.1}%): set {ec2_instance_id} Unhealthy in Auto Scaling group {group}, which replaces it"
            ),
            Note::ReplaceUnavailable(why) => warn!(
                usage_percent = usage,
                "drained and still full with nothing left to reclaim, but escalation unavailable: {why}"
            ),
            Note::WouldReplace => info!(
                usage_percent = usage,
                "observe mode: would ask the Auto Scaling group to replace this instance (drained, no task left, still full with nothing left to reclaim)"
            ),
        }
    }
}

fn attributes<'a>(mark: &'a str, culprit: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut list = vec![(DRAINED_AT, mark)];
    if let Some(family) = culprit {
        list.push((CULPRIT, family));
    }
    list
}

fn verb(action: EcsAction) -> &'static str {
    match action {
        EcsAction::Drain => "drain the container instance",
        EcsAction::Undrain => "set the container instance ACTIVE again",
        EcsAction::RemoveStaleMark => "remove the stale drain mark",
        EcsAction::ClearCulprit => "remove the culprit attribute",
        EcsAction::None => "do nothing",
    }
}
