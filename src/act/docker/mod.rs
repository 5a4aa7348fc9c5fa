//! The Docker actor: keeps the inventory fresh (every `inventory_interval`, and soon
//! after any container or image event), runs a reclaim pass whenever the policy asks,
//! and finds the top writers at `prune` level. Everything slow about Docker happens here,
//! off the sampling loop.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{Notify, watch};
use tokio::time::MissedTickBehavior;
use tracing::{info, warn};

use super::reclaim::{PASS_CONCURRENCY, PASS_DEADLINE, PassSettings, run_pass, rung_name};
use crate::actors::{PlanReceiver, next_plan};
use crate::config::Settings;
use crate::counters::Counters;
use crate::docker::{
    DockerSource, EventsStatus, REPLAY_WINDOW, TopWriter, docker_host, replay_recent, top_writers,
    watch_events,
};
use crate::human;
use crate::policy::Plan;
use crate::sample::Inventory;

/// Events come in bursts (create, start, …): wait this long for the burst to end.
const EVENT_DEBOUNCE: Duration = Duration::from_millis(100);
/// How often the top writers are re-measured while the volume stays at `prune` or above.
const WRITERS_EVERY: Duration = Duration::from_secs(30);
/// How many top writers are shown.
pub const TOP_WRITERS: usize = 3;
const CONNECT_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// What the Docker actor shares with the loop and the reporters.
#[derive(Debug, Clone)]
pub struct DockerChannels {
    pub inventory: watch::Sender<Option<Arc<Inventory>>>,
    pub writers: watch::Sender<Vec<TopWriter>>,
    pub events: watch::Sender<EventsStatus>,
    pub counters: Arc<Counters>,
}

impl Default for DockerChannels {
    fn default() -> Self {
        DockerChannels {
            inventory: watch::Sender::new(None),
            writers: watch::Sender::new(Vec::new()),
            events: watch::Sender::new(EventsStatus::default()),
            counters: Arc::default(),
        }
    }
}

struct Actor {
    settings: Settings,
    out: DockerChannels,
    source: DockerSource,
    generation: u64,
    /// When the last pass ended and how many items it removed.
    last_pass: Option<(Instant, usize)>,
    /// Step ids last reported in observe mode, so each plan is logged once.
    observed: Vec<String>,
    writers_at: Option<Instant>,
    writers_task: Option<tokio::task::JoinHandle<()>>,
    /// The inventory could not be read last time (said once per outage).
    inventory_failing: bool,
}

/// Runs until the plan channel closes (shutdown).
pub async fn run(settings: Settings, out: DockerChannels, mut plans: PlanReceiver) {
    let Some(source) = connect(&settings, &mut plans).await else {
        return;
    };
    let stale = Arc::new(Notify::new());
    let events = tokio::spawn(watch_events(
        source.clone(),
        out.events.clone(),
        Arc::clone(&stale),
    ));
    let replayed = replay_recent(&source, REPLAY_WINDOW).await;
    let mut actor = Actor {
        settings,
        out,
        source,
        generation: 0,
        last_pass: None,
        observed: Vec::new(),
        writers_at: None,
        writers_task: None,
        inventory_failing: false,
    };
    actor.refresh().await;
    info!(
        events_replayed = replayed,
        "Docker inventory read; last use rebuilt from containers, tag times and recent events"
    );

    let mut tick = tokio::time::interval(actor.settings.sample.inventory_interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick.reset();
    loop {
        tokio::select! {
            plan = next_plan(&mut plans) => match plan {
                Some(plan) => actor.consider(&plan).await,
                None => break,
            },
            _ = stale.notified() => {
                tokio::time::sleep(EVENT_DEBOUNCE).await;
                actor.refresh().await;
            }
            _ = tick.tick() => actor.refresh().await,
        }
    }
    events.abort();
    if let Some(t) = actor.writers_task.take() {
        t.abort();
    }
}

/// Connects, retrying with backoff; says so once, not every attempt. `None` on shutdown.
async fn connect(settings: &Settings, plans: &mut PlanReceiver) -> Option<DockerSource> {
    let mut backoff = Duration::from_millis(500);
    let mut said = false;
    loop {
        match DockerSource::connect(&settings.docker).await {
            Ok(source) => {
                info!(host = %source.host, api = %source.docker.client_version(), "connected to Docker");
                return Some(source);
            }
            Err(e) if !said => {
                warn!(error = %crate::error::chain(&e), "cannot reach Docker; retrying in the background — nothing will be reclaimed until it answers");
                said = true;
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            changed = plans.changed() => if changed.is_err() { return None },
        }
        backoff = (backoff * 2).min(CONNECT_BACKOFF_MAX);
    }
}

impl Actor {
    async fn refresh(&mut self) {
        match self.source.inventory().await {
            Ok(mut inventory) => {
                if self.inventory_failing {
                    info!("Docker's inventory can be read again");
                    self.inventory_failing = false;
                }
                self.generation += 1;
                inventory.generation = self.generation;
                self.out.inventory.send_replace(Some(Arc::new(inventory)));
            }
            Err(e) => {
                // The last inventory stays: a plan made from it can only fail harmlessly
                // (the engine answers 404 or 409, which are counted), never remove wrongly.
                if !self.inventory_failing {
                    warn!(error = %crate::error::chain(&e), "cannot read Docker's inventory; keeping the last one");
                    self.inventory_failing = true;
                }
            }
        }
    }

    async fn consider(&mut self, plan: &Plan) {
        if !plan.reclaim_wanted {
            self.writers_at = None;
            return;
        }
        if !plan.reclaim.is_empty() && plan.inventory_generation == Some(self.generation) {
            if self.settings.observe_only() {
                self.observe(plan);
            } else if self.cooled_down() {
                self.pass(plan).await;
            }
        }
        let measuring = self.writers_task.as_ref().is_some_and(|t| !t.is_finished());
        if !measuring && self.writers_at.is_none_or(|t| t.elapsed() >= WRITERS_EVERY) {
            self.writers_at = Some(Instant::now());
            // A size walk can take minutes on a busy engine (moby#31719): it runs on its
            // own, so that the next pass never waits for it.
            let (source, out) = (self.source.clone(), self.out.writers.clone());
            self.writers_task = Some(tokio::spawn(measure_writers(source, out)));
        }
    }

    /// After a pass that removed nothing, wait an inventory interval before trying again,
    /// so an engine that refuses everything does not get asked every second.
    fn cooled_down(&self) -> bool {
        match self.last_pass {
            Some((at, 0)) => at.elapsed() >= self.settings.sample.inventory_interval,
            _ => true,
        }
    }

    fn observe(&mut self, plan: &Plan) {
        let ids: Vec<String> = plan.reclaim.iter().map(|s| s.id.clone()).collect();
        if ids == self.observed {
            return;
        }
        self.observed = ids;
        let total: u64 = plan.reclaim.iter().map(|s| s.bytes).sum();
        info!(
            steps = plan.reclaim.len(),
            "observe mode: would reclaim ~{} (removing nothing)",
            human::bytes(total)
        );
        for s in &plan.reclaim {
            info!(rung = rung_name(s.rung), id = %s.id, "observe mode: would remove {} (~{})", s.name, human::bytes(s.bytes));
        }
    }

    async fn pass(&mut self, plan: &Plan) {
        let docker = plan.volume(crate::sample::Volume::Docker);
        let usage = docker.map_or(0.0, |v| v.usage_percent);
        let estimated: u64 = plan.reclaim.iter().map(|s| s.bytes).sum();
        info!(
            usage_percent = usage,
            steps = plan.reclaim.len(),
            plan_age_ms = SystemTime::now()
                .duration_since(plan.at)
                .unwrap_or_default()
                .as_millis() as u64,
            "reclaim pass started: docker at {usage:.1}%, goal ≤ {}%, {} steps (~{})",
            self.settings.thresholds.prune_target,
            plan.reclaim.len(),
            human::bytes(estimated)
        );
        let settings = PassSettings {
            root: self.settings.docker.root.clone(),
            target_percent: self.settings.thresholds.prune_target,
            concurrency: PASS_CONCURRENCY,
            deadline: PASS_DEADLINE,
        };
        let report = run_pass(&self.source, &plan.reclaim, &settings).await;
        let c = &self.out.counters;
        c.add_reclaimed(report.reclaimed_bytes(), SystemTime::now());
        c.reclaim_errors
            .fetch_add(report.errors() as u64, std::sync::atomic::Ordering::Relaxed);
        c.reclaim_skipped_in_use
            .fetch_add(report.in_use() as u64, std::sync::atomic::Ordering::Relaxed);
        c.reclaim_passes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let removed = report.removed().count();
        if report.errors() > 0 {
            warn!(
                removed,
                errors = report.errors(),
                "reclaim pass done: {}",
                report.summary()
            );
        } else {
            info!(
                removed,
                skipped_in_use = report.in_use(),
                "reclaim pass done: {}",
                report.summary()
            );
        }
        self.last_pass = Some((Instant::now(), removed));
        self.refresh().await;
    }
}

/// Ranks the containers by what they hold and publishes the top ones; logs them when
/// they change.
async fn measure_writers(source: DockerSource, out: watch::Sender<Vec<TopWriter>>) {
    match tokio::time::timeout(Duration::from_secs(60), top_writers(&source, TOP_WRITERS)).await {
        Ok(Ok(writers)) => {
            if writers != *out.borrow() && !writers.is_empty() {
                let list: Vec<String> = writers.iter().map(ToString::to_string).collect();
                warn!(top_writer = %writers[0].name, "top writers on the Docker volume: {}", list.join(", "));
            }
            out.send_replace(writers);
        }
        Ok(Err(e)) => warn!(error = %crate::error::chain(&e), "cannot measure container sizes"),
        Err(_) => warn!("measuring container sizes took over 60 s; skipped"),
    }
}

/// Where the actor will connect, for the first log lines.
pub fn describe(settings: &Settings) -> String {
    docker_host(&settings.docker)
}
