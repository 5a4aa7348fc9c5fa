//! One look at the world, decided the way the daemon decides: the commands `status`,
//! `check`, `prune`, `drain` and `undrain` all start here, so what they show and do is
//! what the daemon would do now (without its history, so without a forecast).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::{Settings, Toggle};
use crate::docker::{DockerError, DockerSource, REPLAY_WINDOW, docker_host, replay_recent};
use crate::ecs::{Discovery, EcsClient, EcsError, Introspection, discover};
use crate::policy::{Plan, State, decide};
use crate::sample::{EcsView, EtcdView, FsSampler, History, Inventory, Snapshot};

/// How long a one-shot command waits for Docker before calling it stalled.
pub const DOCKER_PATIENCE: Duration = Duration::from_secs(10);
/// How long a one-shot command waits for ECS.
pub const ECS_PATIENCE: Duration = Duration::from_secs(15);

/// Why Docker could not be read by a one-shot command.
#[derive(Debug, thiserror::Error)]
pub enum DockerReadError {
    /// The socket is missing or refused, or the engine answered with an error.
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// The engine accepted the connection but said nothing in time.
    #[error(
        "Docker at {host} is stalled: it accepted the connection but did not answer within {patience:?}"
    )]
    Stalled { host: String, patience: Duration },
}

/// Why this ECS container instance could not be read by a one-shot command.
#[derive(Debug, thiserror::Error)]
pub enum EcsReadError {
    #[error(
        "no ECS container instance found: introspection at {introspection_url} {introspection}; {fallback}"
    )]
    NoIdentity {
        introspection_url: String,
        introspection: Introspection,
        fallback: String,
    },
    #[error(transparent)]
    Call(#[from] EcsError),
    #[error("ECS did not answer within {0:?}")]
    Timeout(Duration),
}

impl EcsReadError {
    /// Nothing says this is an ECS instance: with `ecs.enabled = "auto"` that is local
    /// mode, not a problem.
    pub fn is_local_mode(&self, settings: &Settings) -> bool {
        matches!(self, EcsReadError::NoIdentity { .. }) && settings.ecs.enabled != Toggle::On
    }
}

/// Connects to Docker, rebuilds last use from the engine's recent events, and reads the
/// inventory — within `DOCKER_PATIENCE`. `sized`: with stopped containers' sizes, as the
/// daemon reads it at `prune` level.
pub async fn read_docker(
    settings: &Settings,
    sized: bool,
) -> Result<(DockerSource, Inventory), DockerReadError> {
    let work = async {
        let source = DockerSource::connect(&settings.docker).await?;
        replay_recent(&source, REPLAY_WINDOW).await;
        let inventory = source.inventory(sized).await?;
        Ok((source, inventory))
    };
    tokio::time::timeout(DOCKER_PATIENCE, work)
        .await
        .unwrap_or_else(|_| {
            Err(DockerReadError::Stalled {
                host: docker_host(&settings.docker),
                patience: DOCKER_PATIENCE,
            })
        })
}

/// Finds this container instance and reads it. `Ok(None)` when ECS is off in the config.
pub async fn read_ecs(settings: &Settings) -> Result<Option<(EcsClient, EcsView)>, EcsReadError> {
    read_ecs_with(settings, &settings.host.ecs_config).await
}

async fn read_ecs_with(
    settings: &Settings,
    ecs_config: &Path,
) -> Result<Option<(EcsClient, EcsView)>, EcsReadError> {
    if settings.ecs.enabled == Toggle::Off {
        return Ok(None);
    }
    let work = async {
        let sdk = tokio::sync::OnceCell::new();
        let identity = match discover(&settings.ecs, ecs_config, &sdk).await {
            Discovery::Found(id) => id,
            Discovery::Missing {
                introspection,
                fallback,
            } => {
                return Err(EcsReadError::NoIdentity {
                    introspection_url: settings.ecs.introspection_url.clone(),
                    introspection,
                    fallback,
                });
            }
        };
        let client = EcsClient::new(sdk.get_or_init(crate::aws::sdk_config).await, identity);
        // Read fresh when a person asks: this instance, the cluster's size and its DRAINING
        // instances (pages over those only).
        let view = client.view(true).await?;
        Ok(Some((client, view)))
    };
    tokio::time::timeout(ECS_PATIENCE, work)
        .await
        .unwrap_or(Err(EcsReadError::Timeout(ECS_PATIENCE)))
}

/// etcd read once, when it is watched: `None` when off, or "auto" and neither its data
/// dir nor its endpoint is there.
pub async fn read_etcd(settings: &Settings) -> Option<EtcdView> {
    if settings.etcd.enabled == Toggle::Off {
        return None;
    }
    let view = match crate::etcd::EtcdClient::new(&settings.etcd) {
        Ok(client) => crate::etcd::read_view(&client).await,
        Err(e) => EtcdView::failed(&settings.etcd.endpoint, false, crate::error::chain(&e)),
    };
    crate::etcd::watched(&settings.etcd, &settings.etcd.data_dir, &view).then_some(view)
}

/// What a one-shot command reads besides the filesystems.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reads {
    pub docker: bool,
    pub ecs: bool,
    /// etcd's quota and alarms (only when `etcd.enabled` is not false).
    pub etcd: bool,
}

/// One look: the snapshot, the plan, and what Docker and ECS said when asked.
#[derive(Debug)]
pub struct OneShot {
    pub snapshot: Snapshot,
    pub plan: Plan,
    /// `None` when not asked for.
    pub docker: Option<Result<DockerSource, DockerReadError>>,
    /// `None` when not asked for or ECS is off.
    pub ecs: Option<Result<EcsClient, EcsReadError>>,
}

/// Samples the filesystems, reads what `reads` asks for (Docker and ECS at the same
/// time), and decides as the daemon would with no history.
pub async fn look(settings: &Settings, reads: Reads) -> OneShot {
    // The daemon sizes stopped containers at `prune` level and above; so does a look.
    let sized = crate::sample::stat(&settings.docker.root).is_ok_and(|s| {
        s.used_percent().max(s.inodes_used_percent()) >= settings.thresholds.prune_start
    });
    let docker = async {
        if reads.docker {
            Some(read_docker(settings, sized).await)
        } else {
            None
        }
    };
    let ecs = async {
        if reads.ecs {
            read_ecs(settings).await.transpose()
        } else {
            None
        }
    };
    let etcd = async {
        if reads.etcd {
            read_etcd(settings).await
        } else {
            None
        }
    };
    let (docker, ecs, etcd) = tokio::join!(docker, ecs, etcd);
    let now = SystemTime::now();
    let mut snapshot = FsSampler::new(settings).sample(now);
    snapshot.etcd = etcd;
    let docker = docker.map(|r| {
        r.map(|(source, inventory)| {
            snapshot.inventory = Some(Arc::new(inventory));
            source
        })
    });
    let ecs = ecs.map(|r| {
        r.map(|(client, view)| {
            snapshot.cluster = Some(view.cluster.clone());
            snapshot.ecs = Some(view);
            client
        })
    });
    let plan = decide_once(&snapshot, settings, now);
    OneShot {
        snapshot,
        plan,
        docker,
        ecs,
    }
}

/// The daemon's decision for a snapshot with no history and no memory.
pub fn decide_once(snapshot: &Snapshot, settings: &Settings, now: SystemTime) -> Plan {
    let history = History::new(
        settings.thresholds.forecast_window,
        settings.sample.interval,
    );
    decide(snapshot, &history, &State::default(), settings, now)
}

/// A small runtime for one-shot commands.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}
