//! The Docker actor: performs what its state machine asks — reading the inventory, running
//! reclaim passes, measuring the top writers — and feeds the results back. Everything
//! slow about Docker happens here, off the sampling loop; nothing here decides.

mod evict;
pub mod machine;
mod meter;

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{Notify, watch};
use tracing::{info, warn};

use super::reclaim::{PASS_CONCURRENCY, PASS_DEADLINE, PassSettings, run_pass, rung_name};
use crate::actors::{PlanReceiver, next_plan, or_closed};
use crate::backoff::Backoff;
use crate::config::Settings;
use crate::counters::Counters;
use crate::docker::{
    DockerSource, EventsStatus, REPLAY_WINDOW, TopWriter, docker_host, replay_recent, top_writers,
    watch_events,
};
use crate::human;
use crate::policy::{Plan, ReclaimStep};
use crate::sample::{ContainerWrites, Inventory, Volume};
use machine::{Effect, Event, Machine, Note, PassDone, Wish};

/// How many top writers are kept.
pub const TOP_WRITERS: usize = 3;
const CONNECT_FIRST: Duration = Duration::from_millis(500);
const CONNECT_MAX: Duration = Duration::from_secs(30);

/// What the Docker actor shares with the loop and the reporters.
#[derive(Debug, Clone)]
pub struct DockerChannels {
    pub inventory: watch::Sender<Option<Arc<Inventory>>>,
    pub writers: watch::Sender<Vec<TopWriter>>,
    pub events: watch::Sender<EventsStatus>,
    /// Items the engine failed to remove in this episode, for the policy to plan past.
    pub skipped: watch::Sender<HashSet<String>>,
    /// What each running container writes, at `prune` level and above.
    pub rates: watch::Sender<Arc<Vec<ContainerWrites>>>,
    pub counters: Arc<Counters>,
}

impl Default for DockerChannels {
    fn default() -> Self {
        DockerChannels {
            inventory: watch::Sender::new(None),
            writers: watch::Sender::new(Vec::new()),
            events: watch::Sender::new(EventsStatus::default()),
            skipped: watch::Sender::new(HashSet::new()),
            rates: watch::Sender::new(Arc::default()),
            counters: Arc::default(),
        }
    }
}

/// Runs until the plan channel closes (shutdown).
pub async fn run(settings: Settings, out: DockerChannels, mut plans: PlanReceiver) {
    let Some(Some(source)) = or_closed(&plans.clone(), connect(&settings, &mut plans)).await else {
        return;
    };
    let stale = Arc::new(Notify::new());
    let events = tokio::spawn(watch_events(
        source.clone(),
        out.events.clone(),
        Arc::clone(&stale),
    ));
    let Some(replayed) = or_closed(&plans, replay_recent(&source, REPLAY_WINDOW)).await else {
        events.abort();
        return;
    };
    let mut actor = Actor {
        machine: Machine::new(settings.sample.inventory_interval, settings.observe_only()),
        settings,
        out,
        source,
        generation: 0,
        read_at: tokio::time::Instant::now(),
        writers_task: None,
        meter_task: None,
        stopping: None,
        usage: 0.0,
    };
    let first = actor.machine.start();
    if or_closed(&plans, actor.perform(first)).await.is_none() {
        events.abort();
        return;
    }
    info!(
        events_replayed = replayed,
        "Docker inventory read; last use rebuilt from containers, tag times and recent events"
    );
    loop {
        let read = tokio::time::sleep_until(actor.read_at);
        let event = tokio::select! {
            plan = next_plan(&mut plans) => match plan {
                Some(plan) => Event::Plan(actor.wish(&plan)),
                None => break,
            },
            () = stale.notified() => Event::Stale,
            () = read => {
                actor.read_at = tokio::time::Instant::now() + actor.settings.sample.inventory_interval;
                Event::RefreshDue
            }
        };
        // A pass in progress stops dispatching when the channel closes and finishes what
        // is in flight (bounded by the shutdown grace); reads are simply dropped.
        actor.stopping = Some(plans.clone());
        actor.feed(event).await;
    }
    events.abort();
    for t in [
        actor.writers_task.take(),
        actor.meter_task.take().map(|(t, _)| t),
    ]
    .into_iter()
    .flatten()
    {
        t.abort();
    }
}

/// Connects, retrying with backoff; says so once, not every attempt. `None` on shutdown.
async fn connect(settings: &Settings, plans: &mut PlanReceiver) -> Option<DockerSource> {
    let mut backoff = Backoff::new(CONNECT_FIRST, CONNECT_MAX);
    loop {
        match DockerSource::connect(&settings.docker).await {
            Ok(source) => {
                info!(host = %source.host, api = %source.docker.client_version(), "connected to Docker");
                return Some(source);
            }
            Err(e) if backoff.failures() == 0 => {
                warn!(error = %crate::error::chain(&e), "cannot reach Docker; retrying in the background — nothing will be reclaimed until it answers");
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.failed()) => {}
            changed = plans.changed() => if changed.is_err() { return None },
        }
    }
}

struct Actor {
    machine: Machine,
    settings: Settings,
    out: DockerChannels,
    source: DockerSource,
    generation: u64,
    read_at: tokio::time::Instant,
    writers_task: Option<tokio::task::JoinHandle<()>>,
    /// The meter task and the channel that sets its cadence.
    meter_task: Option<(tokio::task::JoinHandle<()>, watch::Sender<Duration>)>,
    /// The plan channel, to see shutdown from inside a pass.
    stopping: Option<PlanReceiver>,
    /// The Docker volume's usage in the plan being acted on, for the log lines.
    usage: f64,
}

impl Actor {
    fn wish(&mut self, plan: &Plan) -> Wish {
        self.usage = plan.volume(Volume::Docker).map_or(0.0, |v| v.usage_percent);
        Wish {
            wanted: plan.reclaim_wanted,
            steps: plan.reclaim.clone(),
            expired: plan.expired.clone(),
            inventory: plan.inventory_generation,
            evict: plan.evict.clone(),
            armed: plan.armed,
        }
    }

    async fn feed(&mut self, event: Event) {
        let effects = self.machine.handle(event, Instant::now());
        self.perform(effects).await;
    }

    /// Performs the effects, feeding each answer back, until there is nothing left to do.
    async fn perform(&mut self, effects: Vec<Effect>) {
        let mut queue: VecDeque<Effect> = effects.into();
        while let Some(effect) = queue.pop_front() {
            if let Some(answer) = self.effect(effect).await {
                queue.extend(self.machine.handle(answer, Instant::now()));
            }
        }
    }

    async fn effect(&mut self, effect: Effect) -> Option<Event> {
        match effect {
            Effect::Refresh { sized } => Some(Event::Refreshed(self.refresh(sized).await)),
            Effect::RefreshIn(after) => {
                self.read_at = tokio::time::Instant::now() + after;
                None
            }
            Effect::Pass { steps, expiry } => {
                Some(Event::PassDone(self.pass(&steps, expiry).await))
            }
            Effect::Observe { steps, expiry } => {
                observe(&steps, expiry);
                None
            }
            Effect::MeasureWriters => {
                // A size walk can take minutes on a busy engine (moby#31719): it runs on
                // its own, so that the next pass never waits for it; never two at once.
                if self.writers_task.as_ref().is_none_or(|t| t.is_finished()) {
                    let (source, out) = (self.source.clone(), self.out.writers.clone());
                    self.writers_task = Some(tokio::spawn(measure_writers(source, out)));
                }
                None
            }
            Effect::Meter(Some(every)) => {
                // A new cadence keeps the meter's readings: the rates carry over.
                match &self.meter_task {
                    Some((task, cadence)) if !task.is_finished() => {
                        cadence.send_replace(every);
                    }
                    _ => {
                        let (cadence, rx) = watch::channel(every);
                        let task = tokio::spawn(meter::run(
                            self.source.clone(),
                            rx,
                            self.settings.docker.root.clone(),
                            self.out.rates.clone(),
                        ));
                        self.meter_task = Some((task, cadence));
                    }
                }
                None
            }
            Effect::Meter(None) => {
                if let Some((task, _)) = self.meter_task.take() {
                    task.abort();
                }
                self.out.rates.send_replace(Arc::default());
                None
            }
            Effect::Evict(e) => {
                let outcome = evict::evict(&self.source, &e, &self.out.counters).await;
                Some(Event::Evicted(e, outcome))
            }
            Effect::RemoveEvicted(e) => {
                let outcome = evict::remove(&self.source, &e).await;
                Some(Event::Evicted(e, outcome))
            }
            Effect::ObserveEviction(e) => {
                evict::observe(&e);
                None
            }
            Effect::Skip(ids) => {
                self.out.skipped.send_replace(ids.into_iter().collect());
                None
            }
            Effect::Say(note) => {
                match note {
                    Note::InventoryFailed(e) => {
                        warn!(error = %e, "cannot read Docker's inventory; keeping the last one");
                    }
                    Note::InventoryRecovered => info!("Docker's inventory can be read again"),
                    Note::Skipping(n) => warn!(
                        skipped = n,
                        "{n} item(s) failed to be removed earlier while the disk was full; leaving them out and going on down the ladder"
                    ),
                }
                None
            }
        }
    }

    async fn refresh(&mut self, sized: bool) -> Result<u64, String> {
        let mut inventory = self
            .source
            .inventory(sized)
            .await
            .map_err(|e| crate::error::chain(&e))?;
        self.generation += 1;
        inventory.generation = self.generation;
        self.out.inventory.send_replace(Some(Arc::new(inventory)));
        Ok(self.generation)
    }

    async fn pass(&mut self, steps: &[ReclaimStep], expiry: bool) -> PassDone {
        let estimated: u64 = steps.iter().map(|s| s.bytes).sum();
        let usage = self.usage;
        let target = (!expiry).then_some(self.settings.thresholds.prune_target);
        if expiry {
            info!(
                steps = steps.len(),
                "removing {} image(s) unused for longer than docker.max_unused_image_age (~{})",
                steps.len(),
                human::bytes(estimated)
            );
        } else {
            info!(
                usage_percent = usage,
                steps = steps.len(),
                "reclaim pass started: docker at {usage:.1}%, goal ≤ {}%, {} steps (~{})",
                self.settings.thresholds.prune_target,
                steps.len(),
                human::bytes(estimated)
            );
        }
        let settings = PassSettings {
            root: self.settings.docker.root.clone(),
            target_percent: target,
            concurrency: PASS_CONCURRENCY,
            deadline: PASS_DEADLINE,
        };
        let stopping = self.stopping.clone();
        let stop = move || stopping.as_ref().is_some_and(|p| p.has_changed().is_err());
        let report = run_pass(&self.source, steps, &settings, &stop).await;
        let c = &self.out.counters;
        c.add_reclaimed(report.reclaimed_bytes(), SystemTime::now());
        Counters::add(&c.reclaim_errors, report.errors() as u64);
        Counters::add(&c.reclaim_skipped_in_use, report.in_use() as u64);
        Counters::add(&c.reclaim_passes, 1);
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
        PassDone {
            removed: if report.freed_something() { removed } else { 0 },
            failed: report.failed_items(),
            expiry,
        }
    }
}

fn observe(steps: &[ReclaimStep], expiry: bool) {
    let total: u64 = steps.iter().map(|s| s.bytes).sum();
    let why = if expiry {
        " (unused for longer than docker.max_unused_image_age)"
    } else {
        ""
    };
    info!(
        steps = steps.len(),
        "observe mode: would reclaim ~{}{why} (removing nothing)",
        human::bytes(total)
    );
    for s in steps {
        info!(rung = rung_name(s.rung), id = %s.id, "observe mode: would remove {} (~{})", s.name, human::bytes(s.bytes));
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
