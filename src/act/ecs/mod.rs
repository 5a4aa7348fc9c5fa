//! The ECS actor: finds this container instance (retrying in the background, since the
//! ECS agent often starts after diskguard), keeps its view fresh (every minute and after
//! every action), and carries out the policy's drain decisions with the ownership mark.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;
use tracing::{info, warn};

use crate::actors::{PlanReceiver, next_plan};
use crate::config::{Settings, Toggle};
use crate::error::chain;
use crate::policy::{EcsDecision, Plan};
use crate::counters::Counters;
use crate::sample::EcsView;
use crate::aws::sdk_config;
use crate::ecs::{Discovery, EcsClient, discover};

/// How often the instance and cluster are re-read when nothing happens.
pub const VIEW_EVERY: Duration = Duration::from_secs(60);
const DISCOVER_FIRST: Duration = Duration::from_secs(1);
const DISCOVER_MAX: Duration = Duration::from_secs(10);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// What the ECS actor shares with the loop and the reporters.
#[derive(Debug, Clone)]
pub struct EcsChannels {
    /// `None`: local mode (no identity yet, or ECS off).
    pub view: watch::Sender<Option<EcsView>>,
    pub counters: Arc<Counters>,
}

impl EcsChannels {
    pub fn new(counters: Arc<Counters>) -> Self {
        EcsChannels {
            view: watch::Sender::new(None),
            counters,
        }
    }
}

struct Actor {
    settings: Settings,
    out: EcsChannels,
    ecs: EcsClient,
    generation: u64,
    /// The view generation last acted on: one action per fresh view.
    acted: u64,
    suppressed: bool,
    observed: Option<EcsDecision>,
    /// After a failed call: not before this, and how long to wait after the next failure.
    retry: Option<(Instant, Duration)>,
    /// The last read of the view failed: read again before acting.
    view_failed: bool,
}

/// Runs until the plan channel closes.
pub async fn run(
    settings: Settings,
    ecs_config: PathBuf,
    out: EcsChannels,
    mut plans: PlanReceiver,
) {
    let sdk = tokio::sync::OnceCell::new();
    let mut wait = DISCOVER_FIRST;
    let mut last: Option<Discovery> = None;
    let identity = loop {
        let found = discover(&settings.ecs, &ecs_config, &sdk).await;
        if let Discovery::Found(id) = &found {
            break id.clone();
        }
        if last.as_ref() != Some(&found) {
            if let Discovery::Missing {
                introspection,
                fallback,
            } = &found
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
            last = Some(found);
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            changed = plans.changed() => if changed.is_err() { return },
        }
        wait = (wait * 2).min(DISCOVER_MAX);
    };
    info!(cluster = %identity.cluster, container_instance_arn = %identity.container_instance_arn, source = identity.source, "found this ECS container instance");
    let mut actor = Actor {
        ecs: EcsClient::new(sdk.get_or_init(sdk_config).await, identity),
        settings,
        out,
        generation: 0,
        acted: 0,
        suppressed: false,
        observed: None,
        retry: None,
        view_failed: false,
    };
    actor.refresh().await;
    let mut tick = tokio::time::interval(VIEW_EVERY);
    tick.reset();
    loop {
        tokio::select! {
            plan = next_plan(&mut plans) => match plan {
                Some(plan) => actor.consider(&plan).await,
                None => break,
            },
            _ = tick.tick() => actor.refresh().await,
        }
    }
}

impl Actor {
    async fn refresh(&mut self) {
        match self.ecs.view().await {
            Ok(mut view) => {
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
                self.out.view.send_replace(Some(view));
                self.view_failed = false;
            }
            Err(e) => {
                if !self.view_failed {
                    warn!(error = %chain(&e), "cannot read the ECS container instance; keeping the last view and retrying");
                }
                self.view_failed = true;
                self.back_off();
            }
        }
    }

    /// Waits longer after each failure in a row: 1 s, 2 s, 4 s … up to a minute.
    fn back_off(&mut self) {
        let wait = self
            .retry
            .map_or(Duration::from_secs(1), |(_, w)| (w * 2).min(RETRY_MAX));
        self.retry = Some((Instant::now() + wait, wait));
    }

    async fn consider(&mut self, plan: &Plan) {
        let decision = &plan.ecs;
        if !matches!(decision, EcsDecision::DrainSuppressed { .. }) {
            self.suppressed = false;
        }
        if self.retry.is_some_and(|(at, _)| Instant::now() < at) {
            return;
        }
        if self.view_failed {
            // The next plan is made from the fresh view.
            self.refresh().await;
            return;
        }
        if *decision == EcsDecision::None {
            self.observed = None;
            return;
        }
        // One action per fresh view: the view after an action shows whether it took.
        if plan.ecs_generation != Some(self.generation) || self.acted == self.generation {
            return;
        }
        if let EcsDecision::DrainSuppressed { draining, allowed } = decision {
            if !self.suppressed {
                self.suppressed = true;
                self.out
                    .counters
                    .drains_suppressed
                    .fetch_add(1, Ordering::Relaxed);
                warn!(
                    draining,
                    allowed,
                    "would drain, but {draining} of the cluster's instances are already DRAINING and the budget allows {allowed}; waiting (the critical level overrides)"
                );
            }
            return;
        }
        if self.settings.observe_only() {
            if self.observed.as_ref() != Some(decision) {
                info!(decision = ?decision, "observe mode: would {}", verb(decision));
                self.observed = Some(decision.clone());
            }
            return;
        }
        let usage = plan
            .volume(crate::sample::Volume::Docker)
            .map_or(0.0, |v| v.usage_percent);
        let mark = self
            .out
            .view
            .borrow()
            .as_ref()
            .and_then(|v| v.drained_at.clone());
        let result = match decision {
            EcsDecision::Drain { over_budget } => self.ecs.drain(SystemTime::now()).await.map(|()| {
                warn!(usage_percent = usage, over_budget, "set the container instance DRAINING: docker at {usage:.1}%{}", if *over_budget { " (critical: past the cluster's drain budget)" } else { "" });
            }),
            EcsDecision::Undrain => self.ecs.activate(mark.as_deref()).await.map(|()| {
                info!(usage_percent = usage, "disk recovered (docker at {usage:.1}%): set the container instance ACTIVE again and removed the mark");
            }),
            EcsDecision::RemoveStaleMark => self.ecs.remove_mark(mark.as_deref().unwrap_or_default()).await.map(|()| {
                info!("the container instance was set ACTIVE by someone else; removed diskguard's stale drain mark");
            }),
            EcsDecision::None | EcsDecision::DrainSuppressed { .. } => Ok(()),
        };
        match result {
            Ok(()) => {
                self.acted = self.generation;
                self.retry = None;
            }
            Err(e) => {
                self.back_off();
                warn!(error = %chain(&e), retry_in = ?self.retry.map(|(_, w)| w), "could not {}", verb(decision));
            }
        }
        self.refresh().await;
    }
}

fn verb(d: &EcsDecision) -> &'static str {
    match d {
        EcsDecision::Drain { .. } => "drain the container instance",
        EcsDecision::DrainSuppressed { .. } => "drain (suppressed by the budget)",
        EcsDecision::Undrain => "set the container instance ACTIVE again",
        EcsDecision::RemoveStaleMark => "remove the stale drain mark",
        EcsDecision::None => "do nothing",
    }
}
