//! The etcd actor: every `etcd.interval` (15 s) it reads etcd and publishes the view (logging once
//! when etcd goes down, answers garbage, or comes back); with `etcd.maintenance = true` it
//! feeds each view to the maintenance machine and performs the effects it returns. A slow
//! or hung etcd delays this actor only: the sampling loop reads the last published view.

use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tracing::{info, warn};

use super::machine::{ClusterCheck, Effect, Event, Machine, Observation};
use crate::actors::PlanReceiver;
use crate::config::Settings;
use crate::error::chain;
use crate::etcd::{EtcdClient, Gateway, LOCK_KEY, Lock, LockAttempt, read_view, watched};
use crate::sample::EtcdView;

/// How often the lock's lease is renewed while a defragment runs (its TTL is 60 s).
const KEEPALIVE_EVERY: Duration = Duration::from_secs(20);
/// A member that does not answer its status this fast counts as unhealthy.
const MEMBER_PATIENCE: Duration = Duration::from_secs(2);

/// What the etcd actor shares with the loop and the reporters.
#[derive(Debug, Clone)]
pub struct EtcdChannels {
    /// `None`: etcd is not watched (off, or "auto" and nothing found).
    pub view: watch::Sender<Option<EtcdView>>,
}

impl Default for EtcdChannels {
    fn default() -> Self {
        EtcdChannels {
            view: watch::Sender::new(None),
        }
    }
}

/// etcd's state as far as log lines go: one line per change, never one per read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Health {
    NotWatched,
    Ok,
    Down,
    Garbage,
}

fn health(view: Option<&EtcdView>) -> Health {
    match view {
        None => Health::NotWatched,
        Some(v) if v.is_readable() => Health::Ok,
        Some(v) if v.reachable => Health::Garbage,
        Some(_) => Health::Down,
    }
}

struct Actor {
    settings: Settings,
    client: EtcdClient,
    out: EtcdChannels,
    machine: Machine,
    health: Option<Health>,
    holder: String,
}

/// Runs until the plan channel closes.
pub async fn run(settings: Settings, out: EtcdChannels, mut plans: PlanReceiver) {
    let client = match EtcdClient::new(&settings.etcd) {
        Ok(c) => c,
        Err(e) => {
            // A TLS file that cannot be read: say so once, and show it in status.
            warn!("etcd is not watched: {}", chain(&e));
            out.view.send_replace(Some(EtcdView::failed(
                &settings.etcd.endpoint,
                false,
                chain(&e),
            )));
            // Nothing more to do until shutdown closes the plan channel.
            while plans.changed().await.is_ok() {}
            return;
        }
    };
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    // Observe mode: the machine only says what it would do, so nothing below writes.
    let machine = Machine::new(settings.observe_only());
    let mut actor = Actor {
        holder: format!("diskguard on {host}"),
        settings,
        client,
        out,
        machine,
        health: None,
    };
    let mut tick = tokio::time::interval(actor.settings.etcd.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = plans.changed() => if changed.is_err() { break },
            _ = tick.tick() => actor.watch().await,
        }
    }
}

impl Actor {
    /// One read, published; then maintenance, if on, until the machine has nothing to do.
    async fn watch(&mut self) {
        let Some(observation) = self.observe().await else {
            return;
        };
        if !self.settings.etcd.maintenance {
            return;
        }
        let mut pending = vec![Event::Observed(observation)];
        while let Some(event) = pending.pop() {
            let effects = self.machine.step(
                event,
                self.settings.etcd.quota_warn_percent,
                SystemTime::now(),
            );
            // The machine puts the one effect whose outcome it waits for last; its outcome
            // is the next event.
            for effect in effects {
                if let Some(next) = self.perform(effect).await {
                    pending.push(next);
                    break;
                }
            }
        }
    }

    /// Reads etcd, publishes the view, logs a change of health.
    async fn observe(&mut self) -> Option<Observation> {
        let view = read_view(&self.client).await;
        let view =
            watched(&self.settings.etcd, &self.settings.etcd.data_dir, &view).then_some(view);
        let now = health(view.as_ref());
        if self.health.as_ref() != Some(&now) {
            self.log_health(&now, view.as_ref());
            self.health = Some(now);
        }
        let observation = view.as_ref().and_then(Observation::from_view);
        self.out.view.send_replace(view);
        observation
    }

    fn log_health(&self, now: &Health, view: Option<&EtcdView>) {
        let endpoint = &self.settings.etcd.endpoint;
        let error = view.and_then(|v| v.error.clone()).unwrap_or_default();
        match now {
            Health::NotWatched => info!(
                endpoint = %endpoint,
                "etcd not watched: no data dir at {} and nothing answers at {endpoint}",
                self.settings.etcd.data_dir.display()
            ),
            Health::Down => {
                warn!(endpoint = %endpoint, "etcd is down: {error}; Docker is watched as before")
            }
            Health::Garbage => {
                warn!(endpoint = %endpoint, "etcd answers, but not as etcd does: {error}")
            }
            Health::Ok => {
                let v = view
                    .cloned()
                    .unwrap_or_else(|| EtcdView::failed(endpoint, true, String::new()));
                info!(
                    endpoint = %endpoint,
                    db_bytes = v.db_bytes,
                    quota_bytes = v.quota_bytes,
                    maintenance = self.settings.etcd.maintenance,
                    "etcd answers: db at {:.1}% of its quota{}",
                    v.quota_used_percent().unwrap_or_default(),
                    if v.alarm_nospace { ", NOSPACE raised" } else { "" }
                );
            }
        }
    }

    /// Performs one effect; an outcome the machine must hear comes back as an event.
    async fn perform(&mut self, effect: Effect) -> Option<Event> {
        let etcd = &self.client;
        let failed =
            |what: &str, e: crate::etcd::EtcdError| Event::Failed(format!("{what}: {}", chain(&e)));
        match effect {
            Effect::Info(m) => {
                info!(endpoint = %etcd.endpoint(), "{m}");
                None
            }
            Effect::Warn(m) => {
                warn!(endpoint = %etcd.endpoint(), "{m}");
                None
            }
            Effect::Observe => Some(match self.observe().await {
                Some(o) => Event::Observed(o),
                None => Event::Failed("etcd could not be read again".into()),
            }),
            Effect::Compact(revision) => Some(match etcd.compact(revision).await {
                Ok(()) => Event::Compacted(revision),
                Err(e) => failed("compaction", e),
            }),
            Effect::TakeLock => Some(match Lock::try_take(etcd, &self.holder).await {
                Ok(LockAttempt::Taken(lock)) => Event::LockTaken(lock.lease),
                Ok(LockAttempt::Busy(holder)) => Event::LockBusy(holder),
                Ok(LockAttempt::NoSpace) => Event::LockNoSpace,
                Err(e) => failed("taking the maintenance lock", e),
            }),
            Effect::CheckCluster { lockless } => Some(match self.check_cluster(lockless).await {
                Ok(check) => Event::Cluster(check),
                Err(e) => failed("checking the cluster's members", e),
            }),
            Effect::Defragment { lease } => Some(match self.defragment(lease).await {
                Ok(()) => Event::Defragmented,
                Err(e) => failed("defragment", e),
            }),
            Effect::Disarm(alarms) => {
                for alarm in &alarms {
                    let a = crate::etcd::Alarm {
                        member_id: alarm.member_id,
                        alarm: alarm.alarm.clone(),
                    };
                    if let Err(e) = etcd.disarm(&a).await {
                        return Some(failed("disarming NOSPACE", e));
                    }
                }
                Some(Event::Disarmed)
            }
            Effect::ReleaseLock(lease) => {
                if let Err(e) = (Lock { lease }).release(etcd).await {
                    // The lease runs out by itself within its TTL.
                    warn!(
                        "giving the etcd maintenance lock back: {}; it expires within a minute",
                        chain(&e)
                    );
                }
                None
            }
        }
    }

    /// Defragments this member; the lock's lease is renewed while it runs.
    async fn defragment(&self, lease: Option<u64>) -> Result<(), crate::etcd::EtcdError> {
        let defrag = self.client.defragment();
        tokio::pin!(defrag);
        let mut keepalive = tokio::time::interval(KEEPALIVE_EVERY);
        keepalive.reset();
        loop {
            tokio::select! {
                done = &mut defrag => return done,
                _ = keepalive.tick() => if let Some(lease) = lease {
                    if let Err(e) = (Lock { lease }).keep_alive(&self.client).await {
                        warn!("renewing the etcd maintenance lock: {}", chain(&e));
                    }
                },
            }
        }
    }

    /// Every member's status through its own client URL; and, without the lock, who holds
    /// it and whether this member is first in line.
    async fn check_cluster(&self, lockless: bool) -> Result<ClusterCheck, crate::etcd::EtcdError> {
        let members = self.client.members().await?;
        // Every member has the same quota (a cluster-wide flag in practice); this member's
        // is the one diskguard knows.
        let quota = self.machine.quota_bytes().unwrap_or(u64::MAX);
        let me = self.client.status().await?.member_id;
        let mut check = ClusterCheck::default();
        let mut waiting = Vec::new();
        for m in &members {
            let name = if m.name.is_empty() {
                format!("{:x}", m.id)
            } else {
                m.name.clone()
            };
            let Some(url) = m.client_urls.first() else {
                check.unhealthy.push(format!("{name}: not started"));
                continue;
            };
            let status = if m.id == me {
                self.client.status().await
            } else {
                let other = self.client.for_url(url);
                match tokio::time::timeout(MEMBER_PATIENCE, other.status()).await {
                    Ok(s) => s,
                    Err(_) => {
                        check
                            .unhealthy
                            .push(format!("{name}: no answer within {MEMBER_PATIENCE:?}"));
                        continue;
                    }
                }
            };
            match status {
                Ok(s) if s.leader == 0 => check.unhealthy.push(format!("{name}: knows no leader")),
                Ok(s) => {
                    let warn = self.settings.etcd.quota_warn_percent;
                    if s.db_bytes as f64 >= quota as f64 * warn / 100.0 {
                        waiting.push(m.id);
                    }
                }
                Err(e) => check.unhealthy.push(format!("{name}: {}", chain(&e))),
            }
        }
        if lockless {
            check.lock_holder = self.client.get(LOCK_KEY).await?;
            check.first_in_line = waiting.iter().min().is_none_or(|first| *first == me);
        }
        Ok(check)
    }
}
