//! The actors' plumbing: the channel that hands every actor the newest plan, and the set
//! of running actor tasks with their bounded shutdown. An actor is a task of its own that
//! receives the latest plan and carries it out at its own pace, so a slow or hung call
//! delays that actor only — never the sampling loop or the watchdog.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::policy::Plan;

/// The newest plan, or `None` before the first.
pub type PlanReceiver = watch::Receiver<Option<Arc<Plan>>>;

/// The next plan, waiting for one; `None` once the channel has closed (shutdown).
pub async fn next_plan(plans: &mut PlanReceiver) -> Option<Arc<Plan>> {
    loop {
        plans.changed().await.ok()?;
        if let Some(plan) = plans.borrow_and_update().clone() {
            return Some(plan);
        }
    }
}

/// Runs `work` unless the plan channel closes first (shutdown): `None` then. For the
/// steps an actor takes before it waits for plans — connecting, discovering — so that an
/// idle agent stops at once instead of waiting out the shutdown grace.
pub async fn or_closed<T>(plans: &PlanReceiver, work: impl Future<Output = T>) -> Option<T> {
    let mut watcher = plans.clone();
    tokio::select! {
        out = work => Some(out),
        () = async { while watcher.changed().await.is_ok() {} } => None,
    }
}

/// The running actors and the channel that feeds them.
#[derive(Debug)]
pub struct Actors {
    plans: watch::Sender<Option<Arc<Plan>>>,
    tasks: JoinSet<()>,
}

impl Default for Actors {
    fn default() -> Self {
        Actors {
            plans: watch::Sender::new(None),
            tasks: JoinSet::new(),
        }
    }
}

impl Actors {
    /// Starts an actor. It sees every plan published from now on (older ones are
    /// replaced, never queued: an actor that falls behind acts on the newest plan).
    pub fn spawn<F, Fut>(&mut self, actor: F)
    where
        F: FnOnce(PlanReceiver) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(actor(self.plans.subscribe()));
    }

    /// Hands the plan to every actor. Never waits.
    pub fn publish(&self, plan: Arc<Plan>) {
        self.plans.send_replace(Some(plan));
    }

    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Closes the plan channel, lets actors finish the step they are in for up to
    /// `grace`, then aborts whatever is left.
    pub async fn shutdown(mut self, grace: Duration) {
        drop(self.plans);
        let drained = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                left = self.tasks.len(),
                "actors did not finish within {grace:?}; aborting them"
            );
            self.tasks.abort_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Level, State};
    use std::time::{Instant, SystemTime};

    fn plan() -> Arc<Plan> {
        Arc::new(Plan {
            at: SystemTime::UNIX_EPOCH,
            level: Level::Ok,
            volumes: Vec::new(),
            reclaim_wanted: false,
            armed: false,
            reclaim_needed_bytes: None,
            reclaim: Vec::new(),
            expired: Vec::new(),
            evict: Default::default(),
            culprit: None,
            inventory_generation: None,
            ecs_intent: crate::policy::EcsIntent::Steady,
            ecs_volume: None,
            ecs: Default::default(),
            replace: false,
            findings: Vec::new(),
            etcd: None,
            next: State::default(),
        })
    }

    #[tokio::test]
    async fn hung_actor_neither_blocks_publishing_nor_shutdown() {
        let mut actors = Actors::default();
        actors.spawn(|mut plans| async move {
            let _ = plans.changed().await;
            // An outside call that never answers.
            std::future::pending::<()>().await;
        });
        let start = Instant::now();
        for _ in 0..10_000 {
            actors.publish(plan());
        }
        actors.shutdown(Duration::from_millis(200)).await;
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn actor_sees_the_newest_plan_and_the_close() {
        let mut actors = Actors::default();
        let (tx, rx) = tokio::sync::oneshot::channel();
        actors.spawn(|mut plans| async move {
            let mut seen = 0;
            while plans.changed().await.is_ok() {
                seen += 1;
            }
            let _ = tx.send(seen);
        });
        actors.publish(plan());
        tokio::task::yield_now().await;
        actors.shutdown(Duration::from_secs(1)).await;
        assert!(rx.await.expect("actor reported") >= 1);
    }
}
