//! `status` and the one-shot Docker read that `status` and `prune` share.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::act::docker::{REPLAY_WINDOW, TOP_WRITERS};
use crate::config::Settings;
use crate::error::chain;
use crate::policy::{Level, Plan, State, decide};
use crate::report::status::{DockerStatus, StatusReport};
use crate::sample::docker::{DockerSource, docker_host, replay_recent, top_writers};
use crate::sample::{FsSampler, History, Inventory, Snapshot};

/// How long a one-shot command waits for Docker before reporting it unreachable.
pub const DOCKER_PATIENCE: Duration = Duration::from_secs(10);

/// Connects, rebuilds last use from the engine's recent events, and lists everything.
pub async fn read_docker(settings: &Settings) -> Result<(DockerSource, Inventory), String> {
    let work = async {
        let source = DockerSource::connect(&settings.docker)
            .await
            .map_err(|e| chain(&e))?;
        replay_recent(&source, REPLAY_WINDOW).await;
        let inventory = source.inventory().await.map_err(|e| chain(&e))?;
        Ok((source, inventory))
    };
    tokio::time::timeout(DOCKER_PATIENCE, work)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "Docker at {} did not answer within {DOCKER_PATIENCE:?}",
                docker_host(&settings.docker)
            ))
        })
}

/// One sample with the Docker inventory, and the plan for it (no history, so no forecast).
pub async fn sample_with_docker(settings: &Settings) -> (Snapshot, Plan, DockerStatus) {
    let host = docker_host(&settings.docker);
    let (docker, ecs) = tokio::join!(read_docker(settings), super::ecs::connect(settings));
    let now = SystemTime::now();
    let mut snapshot = FsSampler::new(settings).sample(now);
    let mut status = DockerStatus {
        host,
        connected: false,
        images: 0,
        containers: 0,
        top_writers: Vec::new(),
        error: None,
    };
    let mut source = None;
    match docker {
        Ok((s, inventory)) => {
            status.connected = true;
            status.images = inventory.images.len();
            status.containers = inventory.containers.len();
            snapshot.inventory = Some(Arc::new(inventory));
            source = Some(s);
        }
        Err(e) => status.error = Some(e),
    }
    let mut ecs_error = None;
    match ecs {
        Ok(found) => snapshot.ecs = found.map(|(_, view)| view),
        Err(e) => ecs_error = Some(e),
    }
    let history = History::new(
        settings.thresholds.forecast_window,
        settings.sample.interval,
    );
    let mut plan = decide(&snapshot, &history, &State::default(), settings, now);
    // In auto mode, no identity is local mode (said below), not a problem.
    let auto_and_absent = |e: &String| {
        settings.ecs.enabled != crate::config::Toggle::On
            && e.starts_with("no ECS container instance found")
    };
    if let Some(e) = ecs_error.filter(|e| !auto_and_absent(e)) {
        plan.findings.push(crate::policy::Finding {
            volume: None,
            message: format!("ECS: {e}"),
        });
    }
    if let Some(source) = source.filter(|_| plan.level >= Level::Prune) {
        match tokio::time::timeout(DOCKER_PATIENCE, top_writers(&source, TOP_WRITERS)).await {
            Ok(Ok(w)) => status.top_writers = w,
            Ok(Err(e)) => status.error = Some(chain(&e)),
            Err(_) => status.error = Some("measuring container sizes took too long".into()),
        }
    }
    (snapshot, plan, status)
}

pub fn status(settings: &Settings, json: bool) -> String {
    let (snapshot, plan, docker) = one_shot_runtime().block_on(sample_with_docker(settings));
    let report = StatusReport::new(&snapshot, &plan, settings).with_docker(docker);
    if json {
        serde_json::to_string_pretty(&report).expect("the status report is plain data") + "\n"
    } else {
        report.to_table()
    }
}

/// A small runtime for one-shot commands.
pub fn one_shot_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime needs no OS resources that can be missing")
}
