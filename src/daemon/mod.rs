//! `diskguard run`: the loop that samples, decides, hands the plan to the actors and
//! reports — on one task that does nothing but cheap, local work, so that the watchdog
//! ping it sends means "diskguard is watching", whatever Docker or AWS are doing.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tracing::{info, warn};

use crate::act::docker::DockerChannels;
use crate::act::ecs::EcsChannels;
use crate::act::etcd::EtcdChannels;
use crate::actors::Actors;
use crate::config::Settings;
use crate::config::Toggle;
use crate::docker::TopWriter;
use crate::human;
use crate::policy::{Driver, Level, Plan, State, decide};
use crate::report::metrics::{Aggregator, Batch, Extras, Totals};
use crate::report::notify::{Notifier, watchdog_interval};
use crate::report::status::local_mode_reason;
use crate::report::summary::summary_line;
use crate::sample::Snapshot;
use crate::sample::{FsSampler, History, Volume, mount_of};

/// One look at the world for the one-shot commands, decided as the daemon decides.
pub mod oneshot;

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    #[error("cannot install the {what} signal handler")]
    Signal {
        what: &'static str,
        source: std::io::Error,
    },
}

/// The sampling interval above `prune_start` (statvfs costs microseconds).
pub const FAST_SAMPLE: Duration = Duration::from_millis(100);

/// How long actors get to finish after SIGTERM; the whole exit stays under systemd's
/// patience and the 2 s the unit promises.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);

/// Runs until SIGTERM or SIGINT. Returns `Ok` on a clean stop (exit 0).
pub fn run(settings: Settings, config_path: &Path) -> Result<(), Error> {
    let sink = crate::report::logging::init();
    info!(
        version = crate::version::VERSION,
        mode = if settings.observe_only() { "observe" } else { "enforce" },
        config = %config_path.display(),
        "diskguard starting; logging to {sink}"
    );
    // The loop itself runs on this thread (block_on); actors get two worker threads so
    // that a busy actor cannot take the loop's CPU.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("diskguard-actor")
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    let result = runtime.block_on(Daemon::new(settings).serve());
    runtime.shutdown_timeout(Duration::from_millis(200));
    result
}

struct Daemon {
    settings: Settings,
    sampler: FsSampler,
    history: History,
    state: State,
    notifier: Notifier,
    actors: Actors,
    docker: DockerChannels,
    ecs: EcsChannels,
    etcd: EtcdChannels,
    /// The CloudWatch interval being aggregated and where closed ones go; `None` when
    /// CloudWatch is off in the configuration.
    metrics: Option<(Aggregator, mpsc::UnboundedSender<Batch>)>,
    ready: bool,
    /// When the metrics last took a sample.
    metrics_sampled: Option<SystemTime>,
    last_summary: String,
    last_levels: BTreeMap<Volume, Option<Level>>,
    last_findings: Vec<String>,
}

impl Daemon {
    fn new(settings: Settings) -> Self {
        // Room for the window at the fast rate: above prune_start samples come faster.
        let history = History::new(
            settings.thresholds.forecast_window,
            settings.sample.interval.min(FAST_SAMPLE),
        );
        let docker = DockerChannels::default();
        Daemon {
            sampler: FsSampler::new(&settings),
            history,
            state: State::default(),
            notifier: Notifier::from_env(),
            actors: Actors::default(),
            ecs: EcsChannels::new(Arc::clone(&docker.counters)),
            etcd: EtcdChannels::default(),
            metrics: None,
            docker,
            ready: false,
            metrics_sampled: None,
            last_summary: String::new(),
            last_levels: BTreeMap::new(),
            last_findings: Vec::new(),
            settings,
        }
    }

    fn announce(&self) {
        let t = &self.settings.thresholds;
        info!(
            "thresholds: prune at {}% down to {}%, drain at {}% or when full within {}, critical at {}%, recover below {}% for {}",
            t.prune_start,
            t.prune_target,
            t.drain,
            humantime::format_duration(t.drain_lead),
            t.critical,
            t.recover,
            humantime::format_duration(t.recover_after)
        );
        if self.settings.etcd.enabled != Toggle::Off {
            let e = &self.settings.etcd;
            info!(
                endpoint = %e.endpoint,
                data_dir = %e.data_dir.display(),
                data_dir_source = %e.data_dir_source.describe(),
                maintenance = e.maintenance,
                "etcd: reading {} every {}; maintenance {}",
                e.endpoint,
                human::duration(e.interval),
                if e.maintenance {
                    "on (compact, defragment, disarm NOSPACE; one member at a time)"
                } else {
                    "off (report only)"
                }
            );
        }
        for (volume, path) in [
            (Volume::Docker, &self.settings.docker.root),
            (Volume::Etcd, &self.settings.etcd.data_dir),
        ] {
            if let Some(m) = mount_of(path) {
                info!(volume = volume.name(), path = %path.display(), mount = %m.mount_point.display(), fs_type = %m.fs_type, device = %m.device, "watching {volume}");
            }
        }
        // [[watch]] entries: each filesystem once, under the first name that has it.
        let seen = self.sampler.sample(SystemTime::now());
        for w in &self.settings.watch {
            let volume = Volume::watch(&w.name);
            if seen.volume(volume).is_some() {
                if let Some(m) = mount_of(&w.path) {
                    info!(volume = volume.name(), path = %w.path.display(), mount = %m.mount_point.display(), fs_type = %m.fs_type, device = %m.device, "watching {volume}");
                }
                continue;
            }
            let device = crate::sample::stat(&w.path).ok().map(|s| s.device);
            match seen
                .volumes
                .iter()
                .find(|v| device.is_some() && v.stats.map(|s| s.device) == device)
            {
                Some(same) => {
                    info!(volume = volume.name(), path = %w.path.display(), "{} is on the filesystem watched as {}: reported once, as {}", w.path.display(), same.volume, same.volume)
                }
                None if w.default => {}
                None => {
                    warn!(volume = volume.name(), path = %w.path.display(), "cannot read {} (watch {volume}): it is reported as unreadable until it can be", w.path.display())
                }
            }
        }
        info!(host = %crate::act::docker::describe(&self.settings), "reading Docker through the Engine API");
        info!("{}", local_mode_reason(&self.settings));
        if self.notifier.enabled() {
            info!(watchdog = ?watchdog_interval(), "systemd notify socket found");
        } else {
            let runs_as = crate::runtime::RunsAs::detect();
            if runs_as != crate::runtime::RunsAs::Host {
                info!(
                    runs_as = ?runs_as,
                    "running {}: no sd_notify and no watchdog — the task's restart policy keeps diskguard running",
                    runs_as.describe()
                );
            }
        }
    }

    async fn serve(mut self) -> Result<(), Error> {
        let mut term = signal(SignalKind::terminate()).map_err(|source| Error::Signal {
            what: "SIGTERM",
            source,
        })?;
        let mut int = signal(SignalKind::interrupt()).map_err(|source| Error::Signal {
            what: "SIGINT",
            source,
        })?;
        self.announce();
        let (settings, channels) = (self.settings.clone(), self.docker.clone());
        self.actors
            .spawn(|plans| crate::act::docker::run(settings, channels, plans));
        if self.settings.cloudwatch.enabled != Toggle::Off {
            let (tx, rx) = mpsc::unbounded_channel();
            let totals = Totals::read(&self.docker.counters);
            let cw = &self.settings.cloudwatch;
            self.metrics = Some((
                Aggregator::new(cw.interval, SystemTime::now(), totals, &cw.extra_metrics),
                tx,
            ));
            let (settings, counters) = (self.settings.clone(), Arc::clone(&self.docker.counters));
            self.actors
                .spawn(|plans| crate::report::cloudwatch::run(settings, rx, counters, plans));
        }
        // Scrapes read the plans published below, the ECS view and the counters on the
        // actor threads: nothing is added to the loop.
        if let Some(listen) = self.settings.prometheus.listen {
            let counters = Arc::clone(&self.docker.counters);
            let ecs = self.ecs.view.subscribe();
            self.actors
                .spawn(move |plans| crate::report::prometheus::run(listen, counters, ecs, plans));
        }
        if self.settings.ecs.enabled != Toggle::Off {
            let (settings, channels) = (self.settings.clone(), self.ecs.clone());
            let ecs_config = self.settings.host.ecs_config.clone();
            self.actors
                .spawn(|plans| crate::act::ecs::run(settings, ecs_config, channels, plans));
        }

        if self.settings.journald.vacuum_size.is_some() {
            let settings = self.settings.clone();
            self.actors
                .spawn(|plans| crate::act::journald::run(settings, plans));
        }
        if self.settings.etcd.enabled != Toggle::Off {
            let (settings, channels) = (self.settings.clone(), self.etcd.clone());
            self.actors
                .spawn(|plans| crate::act::etcd::run(settings, channels, plans));
        }

        let mut every = self.settings.sample.interval;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let watchdog = watchdog_interval();
        // Never fires when the watchdog is off (the branch is disabled), but must exist.
        let mut dog = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
        dog.set_missed_tick_behavior(MissedTickBehavior::Delay);

        let why = loop {
            tokio::select! {
                biased;
                _ = term.recv() => break "SIGTERM",
                _ = int.recv() => break "SIGINT",
                // Sampling first, so the very first datagram is READY=1.
                _ = tick.tick() => {
                    let next = self.tick(SystemTime::now());
                    if next != every {
                        every = next;
                        tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
                    }
                }
                _ = dog.tick(), if watchdog.is_some() => self.notifier.watchdog(),
            }
        };
        self.notifier.stopping();
        info!("stopping on {why}");
        // The interval in progress goes out with the final flush.
        if let Some((agg, tx)) = &mut self.metrics {
            let _ = tx.send(agg.close(SystemTime::now(), Totals::read(&self.docker.counters)));
        }
        self.actors.shutdown(SHUTDOWN_GRACE).await;
        info!("stopped");
        Ok(())
    }

    /// One pass of sample → decide → act → report. Only local syscalls and arithmetic.
    /// Returns how long until the next tick: `sample.interval`, or `FAST_SAMPLE` while the
    /// Docker volume is near `prune_start` or above (`plan.armed`) — a fast writer fills
    /// what is left in seconds, and the eviction rule reads its rate from these samples.
    fn tick(&mut self, now: SystemTime) -> Duration {
        let mut snapshot = self.sampler.sample(now);
        snapshot.inventory = self.docker.inventory.borrow().clone();
        snapshot.writers = self.docker.rates.borrow().clone();
        snapshot.reclaim_skip = self.docker.skipped.borrow().clone();
        snapshot.ecs = self.ecs.view.borrow().clone();
        snapshot.etcd = self.etcd.view.borrow().clone();
        snapshot.cluster = self
            .ecs
            .identity
            .borrow()
            .as_ref()
            .map(|i| i.cluster.clone());
        self.history.record(&snapshot);
        let plan = decide(&snapshot, &self.history, &self.state, &self.settings, now);
        self.state = plan.next.clone();
        self.log_changes(&plan);
        // Metrics take one sample per `sample.interval`, also while the loop samples
        // faster: a statistic set's SampleCount keeps meaning the same thing.
        let due = self.metrics_sampled.is_none_or(|at| {
            now.duration_since(at)
                .is_ok_and(|d| d + FAST_SAMPLE / 2 >= self.settings.sample.interval)
        });
        if let Some((agg, tx)) = self.metrics.as_mut().filter(|_| due) {
            self.metrics_sampled = Some(now);
            let extras = extras(&snapshot, &self.docker.writers.borrow());
            if let Some(batch) = agg.observe(
                now,
                &plan,
                &snapshot,
                Totals::read(&self.docker.counters),
                extras,
            ) {
                // The actor buffers; a send only fails once it has stopped.
                let _ = tx.send(batch);
            }
        }
        let plan = Arc::new(plan);
        self.actors.publish(Arc::clone(&plan));

        let mut summary = summary_line(&plan, &self.settings, snapshot.ecs.as_ref());
        let today = self.docker.counters.reclaimed_today(now);
        if today > 0 {
            summary.push_str(&format!(" · reclaimed {} today", human::bytes(today)));
        }
        let readable = plan.volumes.iter().any(|v| v.stats.is_some());
        if !self.ready && readable {
            self.ready = true;
            self.notifier.ready(&summary);
            info!(status = %summary, "ready");
        } else if self.ready && summary != self.last_summary {
            self.notifier.status(&summary);
        }
        self.last_summary = summary;
        if plan.armed {
            self.settings.sample.interval.min(FAST_SAMPLE)
        } else {
            self.settings.sample.interval
        }
    }

    /// Logs what changed since the last tick — level transitions and new findings — never
    /// the same thing every second.
    fn log_changes(&mut self, plan: &Plan) {
        for v in &plan.volumes {
            let now = v.stats.map(|_| v.level);
            let before = self.last_levels.insert(v.volume, now).flatten();
            let Some(stats) = v.stats else { continue };
            if before == Some(v.level) || (before.is_none() && v.level == Level::Ok) {
                continue;
            }
            let why = match v.driven_by {
                Driver::Bytes => format!("{:.1}% of bytes used", stats.used_percent()),
                Driver::Inodes => format!("{:.1}% of inodes used", stats.inodes_used_percent()),
                Driver::Forecast => format!(
                    "full within {} at the current rate",
                    humantime::format_duration(Duration::from_secs(
                        v.time_to_full.map_or(0, |d| d.as_secs())
                    ))
                ),
            };
            let rising = before.is_none_or(|b| v.level > b);
            let message = format!(
                "{} volume {} level {}: {why}, {} free",
                v.volume,
                if rising { "entered" } else { "back to" },
                v.level,
                human::bytes(stats.avail_bytes)
            );
            let fields = (v.volume.name(), v.level.name(), v.usage_percent);
            if rising && v.level >= Level::Prune {
                warn!(volume = fields.0, level = fields.1, usage_percent = fields.2, path = %v.path.display(), "{message}");
            } else {
                info!(volume = fields.0, level = fields.1, usage_percent = fields.2, path = %v.path.display(), "{message}");
            }
        }
        let findings: Vec<String> = plan.findings.iter().map(|f| f.message.clone()).collect();
        for f in plan
            .findings
            .iter()
            .filter(|f| !self.last_findings.contains(&f.message))
        {
            warn!(volume = f.volume.map(Volume::name), "{}", f.message);
        }
        self.last_findings = findings;
    }
}

/// The numbers `extra_metrics` may ask for, from what the actors last read.
fn extras(snapshot: &Snapshot, writers: &[TopWriter]) -> Extras {
    let inv = snapshot.inventory.as_deref();
    Extras {
        images_bytes: inv.map(|i| i.images.iter().map(|x| x.size_bytes as f64).sum()),
        image_count: inv.map(|i| i.images.len() as f64),
        container_count: inv.map(|i| i.containers.len() as f64),
        top_writer_bytes: writers.first().map(|w| w.bytes as f64),
    }
}
