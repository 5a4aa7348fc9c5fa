//! ECS: which container instance this is, and its state and its cluster's, as plain data.

mod attributes;
pub mod client;
mod cluster;
pub mod identity;

use std::path::Path;

pub use client::{CULPRIT, DRAINED_AT, EcsClient, EcsError, SelfRead, find_arn, rfc3339};
pub use identity::{
    ECS_CONFIG_PATH, Identity, Introspection, cluster_from_ecs_config, cluster_of_arn, introspect,
};

use crate::config::EcsSettings;

/// The outcome of one discovery attempt, with enough detail to log what changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovery {
    Found(Identity),
    Missing {
        introspection: Introspection,
        fallback: String,
    },
}

/// Config overrides win; then the ECS agent's introspection API; then `ECS_CLUSTER` from
/// ecs.config (or the cluster override) with this EC2 instance looked up in the cluster.
///
/// The AWS SDK's configuration is loaded into `sdk` only when the fallback needs it: off
/// EC2, loading it would probe IMDS for a region.
pub async fn discover(
    settings: &EcsSettings,
    ecs_config: &Path,
    sdk: &tokio::sync::OnceCell<aws_config::SdkConfig>,
) -> Discovery {
    if let Some(id) = identity::from_config(settings) {
        return Discovery::Found(id);
    }
    let introspection = introspect(&settings.introspection_url).await;
    if let Introspection::Found(mut id) = introspection.clone() {
        if !settings.cluster.is_empty() {
            id.cluster = settings.cluster.clone();
        }
        if !settings.container_instance_arn.is_empty() {
            id.container_instance_arn = settings.container_instance_arn.clone();
        }
        return Discovery::Found(id);
    }
    if !settings.container_instance_arn.is_empty() {
        let arn = &settings.container_instance_arn;
        if let Some(cluster) = cluster_of_arn(arn) {
            return Discovery::Found(Identity {
                cluster: cluster.to_owned(),
                container_instance_arn: arn.clone(),
                source: "configuration (cluster from the ARN)",
            });
        }
    }
    let cluster = if settings.cluster.is_empty() {
        cluster_from_ecs_config(ecs_config)
    } else {
        Some(settings.cluster.clone())
    };
    let Some(cluster) = cluster else {
        return Discovery::Missing {
            introspection,
            fallback: format!("no {} and no ecs.cluster", ecs_config.display()),
        };
    };
    let instance = match crate::aws::instance_id().await {
        Ok(i) => i,
        Err(e) => {
            return Discovery::Missing {
                introspection,
                fallback: format!("cluster {cluster}, but no EC2 instance id from IMDS: {e}"),
            };
        }
    };
    let sdk = sdk.get_or_init(crate::aws::sdk_config).await;
    match find_arn(&EcsClient::sdk(sdk), &cluster, &instance).await {
        Ok(Some(arn)) => Discovery::Found(Identity {
            cluster,
            container_instance_arn: arn,
            source: "the cluster (ecs.config or ecs.cluster) and this EC2 instance's registration",
        }),
        Ok(None) => Discovery::Missing {
            introspection,
            fallback: format!("EC2 instance {instance} is not registered in cluster {cluster}"),
        },
        Err(e) => Discovery::Missing {
            introspection,
            fallback: e.to_string(),
        },
    }
}
