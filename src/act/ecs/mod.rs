//! The ECS actor: finds this container instance (retrying in the background, since the
//! ECS agent often starts after diskguard), then performs what its state machine asks
//! through the driver — idle reads spaced by the cluster's size, and every decision on a
//! fresh read of this instance. It decides nothing itself.

pub mod driver;
pub mod events;
pub mod machine;
pub mod plane;
mod search;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;
use tracing::{info, warn};

use crate::actors::{PlanReceiver, next_plan, or_closed};
use crate::config::{Settings, Toggle};
use crate::counters::Counters;
use crate::ecs::{Discovery, EcsClient, Identity, discover};
use crate::policy::{EvictDecision, Plan};
use crate::sample::{EcsView, Volume};
use driver::{Clock, Driver, RealClock};
use machine::{Event, Machine, Search, Wish};
use plane::NodePlane;

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
    let clock = RealClock;
    let machine = Machine::new(
        &client.identity.container_instance_arn,
        settings.ecs.max_draining_percent,
        settings.ecs.idle_read_percent,
        settings.observe_only(),
        settings.ecs.undrain,
        fastrand::u64(..),
        clock.now(),
    )
    .with_replacement(
        settings.escalate.max_percent,
        settings.escalate.respect_grace_period,
    );
    let (cluster, arn) = (
        client.identity.cluster.clone(),
        client.identity.container_instance_arn.clone(),
    );
    let plane = NodePlane {
        ecs: client,
        sdk: sdk.clone(),
        docker: settings.docker.clone(),
    };
    let mut driver = Driver::new(machine, plane, out, &cluster, &arn);
    // ECS calls may take the SDK's whole retry budget; shutdown does not wait for them.
    // Interrupting one is safe: the mark is put before DRAINING and removed after ACTIVE.
    if or_closed(&plans, driver.start(&clock)).await.is_none() {
        return;
    }
    loop {
        let refresh = tokio::time::sleep_until(tokio::time::Instant::from_std(driver.refresh));
        let event = tokio::select! {
            plan = next_plan(&mut plans) => match plan {
                Some(plan) => {
                    let (wish, usage) = wish(&plan);
                    driver.usage = usage;
                    Event::Plan(wish)
                }
                None => break,
            },
            () = refresh => Event::RefreshDue,
        };
        if or_closed(&plans, driver.feed(event, &clock))
            .await
            .is_none()
        {
            break;
        }
    }
}

/// What a plan asks of ECS, and the deciding volume's usage for the log lines.
fn wish(plan: &Plan) -> (Wish, f64) {
    let docker = plan
        .ecs_volume
        .and_then(|v| plan.volume(v))
        .or_else(|| plan.volume(Volume::Docker));
    let wish = Wish {
        intent: plan.ecs_intent,
        culprit: plan.culprit.clone(),
        evicting: matches!(plan.evict, EvictDecision::Evict(_)),
        replace: plan.replace,
    };
    (wish, docker.map_or(0.0, |v| v.usage_percent))
}
