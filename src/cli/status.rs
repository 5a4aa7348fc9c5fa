//! `status`: one look at the world and the plan the policy would make now, as a table or
//! as JSON.

use crate::config::Settings;
use crate::daemon::oneshot::{DOCKER_PATIENCE, OneShot, Reads, look};
use crate::docker::ContainerFacts;
use crate::docker::top_writers;
use crate::error::chain;
use crate::policy::{Finding, Level};
use crate::report::status::{ContainerLog, DockerStatus, StatusReport};

/// How many top writers `status` shows.
pub const TOP_WRITERS: usize = 3;
/// How many of the running containers' logs `status` shows.
pub const LOGS: usize = 5;

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
        logs: Vec::new(),
        error: None,
    };
    match docker {
        Some(Ok(source)) => {
            match tokio::time::timeout(DOCKER_PATIENCE, source.audit_containers()).await {
                Ok(Ok(facts)) => status.logs = largest_logs(facts),
                Ok(Err(e)) => status.error = Some(chain(&e)),
                Err(_) => {
                    status.error = Some("inspecting the running containers took too long".into())
                }
            }
            if plan.level >= Level::Prune {
                match tokio::time::timeout(DOCKER_PATIENCE, top_writers(&source, TOP_WRITERS)).await
                {
                    Ok(Ok(w)) => status.top_writers = w,
                    Ok(Err(e)) => status.error = Some(chain(&e)),
                    Err(_) => {
                        status.error = Some("measuring container sizes took too long".into());
                    }
                }
            }
        }
        Some(Err(e)) => status.error = Some(chain(&e)),
        None => {}
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

/// The running containers' json logs, largest first, at most [`LOGS`].
fn largest_logs(facts: Vec<ContainerFacts>) -> Vec<ContainerLog> {
    let mut logs: Vec<ContainerLog> = facts
        .into_iter()
        .filter_map(|c| {
            Some(ContainerLog {
                bytes: c.log_bytes?,
                max_size: c.log_options.get("max-size").cloned(),
                name: c.name,
                task_family: c.task_family,
            })
        })
        .collect();
    logs.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.name.cmp(&b.name)));
    logs.truncate(LOGS);
    logs
}
