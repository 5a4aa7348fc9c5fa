//! `status`: one look at the world and the plan the policy would make now, as a table or
//! as JSON.

use crate::config::Settings;
use crate::daemon::oneshot::{DOCKER_PATIENCE, OneShot, Reads, look};
use crate::docker::top_writers;
use crate::error::chain;
use crate::policy::{Finding, Level};
use crate::report::status::{DockerStatus, StatusReport};

/// How many top writers `status` shows.
pub const TOP_WRITERS: usize = 3;

pub async fn status(settings: &Settings, json: bool) -> String {
    let OneShot {
        snapshot,
        mut plan,
        docker,
        ecs,
    } = look(
        settings,
        Reads {
            docker: true,
            ecs: true,
            etcd: true,
        },
    )
    .await;
    let mut culprits = std::collections::BTreeMap::new();
    match &ecs {
        Some(Err(e)) if !e.is_local_mode(settings) => plan.findings.push(Finding {
            volume: None,
            message: format!("ECS: {}", chain(e)),
        }),
        Some(Ok(client)) => match client.culprits().await {
            Ok(c) => culprits = c,
            Err(e) => plan.findings.push(Finding {
                volume: None,
                message: format!("ECS: cannot read the cluster's culprits: {}", chain(&e)),
            }),
        },
        _ => {}
    }
    let inventory = snapshot.inventory.as_deref();
    let mut status = DockerStatus {
        host: crate::docker::docker_host(&settings.docker),
        connected: inventory.is_some(),
        images: inventory.map_or(0, |i| i.images.len()),
        containers: inventory.map_or(0, |i| i.containers.len()),
        top_writers: Vec::new(),
        error: None,
    };
    match docker {
        Some(Ok(source)) if plan.level >= Level::Prune => {
            match tokio::time::timeout(DOCKER_PATIENCE, top_writers(&source, TOP_WRITERS)).await {
                Ok(Ok(w)) => status.top_writers = w,
                Ok(Err(e)) => status.error = Some(chain(&e)),
                Err(_) => status.error = Some("measuring container sizes took too long".into()),
            }
        }
        Some(Err(e)) => status.error = Some(chain(&e)),
        _ => {}
    }
    let report = StatusReport::new(&snapshot, &plan, settings)
        .with_docker(status)
        .with_culprits(&culprits);
    if json {
        // The report is plain data (strings, numbers, options): serialising cannot fail.
        serde_json::to_string_pretty(&report).unwrap_or_default() + "\n"
    } else {
        report.to_table()
    }
}
