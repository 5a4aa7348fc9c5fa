//! The ECS actor: finds this container instance (retrying in the background, since the
//! ECS agent often starts after diskguard), then performs what its state machine asks —
//! reading the view every minute and after every action, counting the budget fresh,
//! draining and giving back with the ownership mark. It decides nothing itself.

pub mod machine;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use tokio::sync::watch;
use tracing::{info, warn};

use crate::actors::{PlanReceiver, next_plan, or_closed};
use crate::config::{Settings, Toggle};
use crate::counters::Counters;
use crate::ecs::{Discovery, EcsClient, Identity, discover};
use crate::error::chain;
use crate::policy::{Level, Plan};
use crate::sample::{EcsView, Volume};
use machine::{Count, Drains, Effect, Event, Machine, Note, Search, ViewFacts, Wish};

/// What the ECS actor shares with the loop and the reporters.
#[derive(Debug, Clone)]
pub struct EcsChannels {
    /// This instance's identity once found: the cluster names the metrics even while
    /// the ECS API cannot be read.
    pub identity: watch::Sender<Option<Identity>>,
    /// The newest view; `None`: local mode (no identity yet, or ECS off), or not read yet.
    pub view: watch::Sender<Option<EcsView>>,
    pub counters: Arc<Counters>,
}

impl EcsChannels {
    pub fn new(counters: Arc<Counters>) -> Self {
        EcsChannels {
            identity: watch::Sender::new(None),
            view: watch::Sender::new(None),
            counters,
        }
    }
}

/// Runs until the plan channel closes.
pub async fn run(
    settings: Settings,
    ecs_config: PathBuf,
    out: EcsChannels,
    mut plans: PlanReceiver,
) {
    let sdk = tokio::sync::OnceCell::new();
    let mut search = Search::new();
    let identity = loop {
        let Some(found) = or_closed(&plans, discover(&settings.ecs, &ecs_config, &sdk)).await
        else {
            return;
        };
        let missing = match found {
            Discovery::Found(id) => break id,
            Discovery::Missing { .. } => found,
        };
        let (say, wait) = search.missed(missing.clone());
        if say {
            if let Discovery::Missing {
                introspection,
                fallback,
            } = &missing
            {
                let message = format!(
                    "no ECS identity yet (introspection {}: {introspection}; fallback: {fallback}); staying in local mode and retrying",
                    settings.ecs.introspection_url
                );
                if settings.ecs.enabled == Toggle::On {
                    warn!("{message}");
                } else {
                    info!("{message}");
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            changed = plans.changed() => if changed.is_err() { return },
        }
    };
    info!(cluster = %identity.cluster, container_instance_arn = %identity.container_instance_arn, source = identity.source, "found this ECS container instance");
    out.identity.send_replace(Some(identity.clone()));
    let Some(sdk) = or_closed(&plans, sdk.get_or_init(crate::aws::sdk_config)).await else {
        return;
    };
    let client = EcsClient::new(sdk, identity);
    let mut actor = Actor {
        machine: Machine::new(
            &client.identity.container_instance_arn,
            settings.ecs.max_draining_percent,
            settings.observe_only(),
        ),
        client,
        out,
        generation: 0,
        refresh: tokio::time::Instant::now() + machine::VIEW_EVERY,
        usage: 0.0,
    };
    let first = actor.machine.start();
    // ECS calls may take the SDK's whole retry budget; shutdown does not wait for them.
    // Interrupting one is safe: the mark is put before DRAINING and removed after ACTIVE.
    if or_closed(&plans, actor.perform(first)).await.is_none() {
        return;
    }
    loop {
        let refresh = tokio::time::sleep_until(actor.refresh);
        let event = tokio::select! {
            plan = next_plan(&mut plans) => match plan {
                Some(plan) => Event::Plan(actor.wish(&plan)),
                None => break,
            },
            () = refresh => {
                // The machine schedules the next refresh; until it does, a minute.
                actor.refresh = tokio::time::Instant::now() + machine::VIEW_EVERY;
                Event::RefreshDue
            }
        };
        if or_closed(&plans, actor.feed(event)).await.is_none() {
            break;
        }
    }
}

struct Actor {
    machine: Machine,
    client: EcsClient,
    out: EcsChannels,
    generation: u64,
    refresh: tokio::time::Instant,
    /// The Docker volume's usage in the plan being acted on, for the log lines.
    usage: f64,
}

impl Actor {
    fn wish(&mut self, plan: &Plan) -> Wish {
        let docker = plan.volume(Volume::Docker);
        self.usage = docker.map_or(0.0, |v| v.usage_percent);
        Wish {
            decision: plan.ecs.clone(),
            critical: docker.is_some_and(|v| v.level >= Level::Critical),
            view: plan.ecs_generation,
            culprit: plan.culprit.clone(),
            evicting: matches!(plan.evict, crate::policy::EvictDecision::Evict(_)),
        }
    }

    /// Feeds an event and performs the effects, feeding each answer back, until the
    /// machine is idle again.
    async fn feed(&mut self, event: Event) {
        let effects = self
            .machine
            .handle(event, Instant::now(), SystemTime::now());
        self.perform(effects).await;
    }

    async fn perform(&mut self, effects: Vec<Effect>) {
        let mut queue: std::collections::VecDeque<Effect> = effects.into();
        while let Some(effect) = queue.pop_front() {
            if let Some(answer) = self.effect(effect).await {
                queue.extend(
                    self.machine
                        .handle(answer, Instant::now(), SystemTime::now()),
                );
            }
        }
    }

    /// Performs one effect; the calls answer with the event to feed back.
    async fn effect(&mut self, effect: Effect) -> Option<Event> {
        let err = |e: crate::ecs::EcsError| chain(&e);
        Some(match effect {
            Effect::ReadView => Event::View(self.read_view().await),
            Effect::ReadCount => Event::Count(
                self.client
                    .counts()
                    .await
                    .map(|(active, draining)| Count { active, draining })
                    .map_err(err),
            ),
            Effect::Claim => {
                Event::Claimed(self.client.claim(SystemTime::now()).await.map_err(err))
            }
            Effect::Withdraw => {
                // The claim's own value: the view was read before it was put.
                let mark = self.client.view().await.map(|v| v.drained_at);
                Event::Withdrawn(match mark {
                    Ok(Some(value)) => self.client.remove_mark(&value).await.map_err(err),
                    Ok(None) => Ok(()),
                    Err(e) => Err(err(e)),
                })
            }
            Effect::SetDraining => Event::Drained(self.client.set_draining().await.map_err(err)),
            Effect::Drain => {
                Event::Drained(self.client.drain(SystemTime::now()).await.map_err(err))
            }
            Effect::SetCulprit(family) => {
                Event::CulpritSet(self.client.set_culprit(&family).await.map_err(err))
            }
            Effect::ClearCulprit => {
                let value = self.culprit_value().unwrap_or_default();
                Event::CulpritCleared(self.client.remove_culprit(&value).await.map_err(err))
            }
            Effect::CountCulprit(family) => {
                self.out.counters.add_eviction(Some(&family));
                return None;
            }
            Effect::ReadDrains => Event::Drains(
                self.client
                    .drains()
                    .await
                    .map(|(draining, instances)| Drains {
                        draining,
                        instances,
                    })
                    .map_err(err),
            ),
            Effect::ReadLifecycle => Event::Lifecycle(crate::aws::target_lifecycle_state().await),
            Effect::Activate => {
                let (mark, culprit) = (self.mark(), self.culprit_value());
                Event::Activated(
                    self.client
                        .activate(mark.as_deref(), culprit.as_deref())
                        .await
                        .map_err(err),
                )
            }
            Effect::RemoveMark => {
                let mark = self.mark().unwrap_or_default();
                Event::MarkRemoved(self.client.remove_mark(&mark).await.map_err(err))
            }
            Effect::CountSuppressed => {
                self.out
                    .counters
                    .drains_suppressed
                    .fetch_add(1, Ordering::Relaxed);
                return None;
            }
            Effect::RefreshIn(after) => {
                self.refresh = tokio::time::Instant::now() + after;
                return None;
            }
            Effect::Say(note) => {
                self.say(note);
                return None;
            }
        })
    }

    fn culprit_value(&self) -> Option<String> {
        self.out
            .view
            .borrow()
            .as_ref()
            .and_then(|v| v.culprit.clone())
    }

    fn mark(&self) -> Option<String> {
        self.out
            .view
            .borrow()
            .as_ref()
            .and_then(|v| v.drained_at.clone())
    }

    async fn read_view(&mut self) -> Result<ViewFacts, String> {
        let mut view = self.client.view().await.map_err(|e| chain(&e))?;
        self.generation += 1;
        view.generation = self.generation;
        let before = self
            .out
            .view
            .borrow()
            .as_ref()
            .map(|v| (v.status.clone(), v.drained_at.is_some()));
        if before != Some((view.status.clone(), view.drained_at.is_some())) {
            info!(
                status = view.status.as_str(),
                drained_by_diskguard = view.drained_at.is_some(),
                active = view.cluster_active,
                draining = view.cluster_draining,
                "ECS container instance is {}",
                view.status.as_str()
            );
        }
        let facts = ViewFacts {
            generation: view.generation,
            status: view.status.clone(),
            ours: view.drained_at.is_some(),
            culprit: view.culprit.clone(),
        };
        self.out.view.send_replace(Some(view));
        Ok(facts)
    }

    fn say(&self, note: Note) {
        let usage = self.usage;
        match note {
            Note::Suppressed { draining, allowed } => warn!(
                draining,
                allowed,
                "would drain, but {draining} of the cluster's instances are already DRAINING and the budget allows {allowed}; waiting (the critical level overrides)"
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
                "named task family {family} as the culprit on this container instance ({})",
                crate::ecs::CULPRIT
            ),
            Note::CulpritCleared => info!(
                "disk recovered: removed {} from this container instance",
                crate::ecs::CULPRIT
            ),
            Note::Undrained => info!(
                usage_percent = usage,
                "disk recovered (docker at {usage:.1}%): set the container instance ACTIVE again and removed the mark"
            ),
            Note::StaleMarkRemoved => info!(
                "the container instance was set ACTIVE by someone else; removed diskguard's stale drain mark"
            ),
            Note::Leaving(state) => warn!(
                lifecycle = %state,
                "disk recovered, but the Auto Scaling group is taking this instance out of service ({state}): leaving it DRAINING"
            ),
            Note::Observed(decision) => {
                info!(decision = ?decision, "observe mode: would {}", verb(&decision))
            }
            Note::Failed {
                what,
                error,
                retry_in,
            } => warn!(error = %error, retry_in = ?retry_in, "could not {what}"),
            Note::ViewFailed(error) => warn!(
                error = %error,
                "cannot read the ECS container instance; keeping the last view and retrying"
            ),
            Note::ViewRecovered => info!("the ECS container instance can be read again"),
        }
    }
}

fn verb(d: &crate::policy::EcsDecision) -> &'static str {
    use crate::policy::EcsDecision;
    match d {
        EcsDecision::Drain { .. } => "drain the container instance",
        EcsDecision::DrainSuppressed { .. } => "drain (suppressed by the budget)",
        EcsDecision::Undrain => "set the container instance ACTIVE again",
        EcsDecision::RemoveStaleMark => "remove the stale drain mark",
        EcsDecision::ClearCulprit => "remove the culprit attribute",
        EcsDecision::None => "do nothing",
    }
}
