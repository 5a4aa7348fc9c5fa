//! Which ECS container instance this is: config overrides, then the ECS agent's
//! introspection API, then `ECS_CLUSTER` in /etc/ecs/ecs.config plus a lookup of this EC2
//! instance in the cluster.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::config::EcsSettings;
use crate::http;

/// Where the ECS agent keeps its settings (Amazon Linux and Flatcar alike).
pub const ECS_CONFIG_PATH: &str = "/etc/ecs/ecs.config";
/// The introspection API answers in milliseconds when the agent is up.
const INTROSPECTION_TIMEOUT: Duration = Duration::from_secs(2);

/// This container instance in ECS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub cluster: String,
    pub container_instance_arn: String,
    pub source: &'static str,
}

/// What the ECS agent's introspection API said — each a state worth one log line when it
/// changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Introspection {
    Found(Identity),
    /// Connection refused, reset or timed out: the agent is not (yet) running.
    Unreachable(String),
    /// An HTTP error status (404 before registration, 503 while starting …).
    Status(u16),
    /// 200 with a body that is not the documented JSON, or without the ARN yet.
    Unusable(String),
}

impl std::fmt::Display for Introspection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Introspection::Found(i) => write!(
                f,
                "cluster {} instance {}",
                i.cluster, i.container_instance_arn
            ),
            Introspection::Unreachable(e) => write!(f, "unreachable ({e})"),
            Introspection::Status(s) => write!(f, "HTTP {s}"),
            Introspection::Unusable(e) => write!(f, "unusable answer ({e})"),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Metadata {
    cluster: Option<String>,
    container_instance_arn: Option<String>,
}

/// `GET {introspection_url}/v1/metadata`.
pub async fn introspect(url: &str) -> Introspection {
    let url = format!("{}/v1/metadata", url.trim_end_matches('/'));
    match http::get(&url, INTROSPECTION_TIMEOUT).await {
        Err(e) => Introspection::Unreachable(e),
        Ok((200, body)) => match serde_json::from_slice::<Metadata>(&body) {
            Ok(Metadata {
                cluster: Some(c),
                container_instance_arn: Some(a),
            }) if !c.is_empty() && !a.is_empty() => Introspection::Found(Identity {
                cluster: c,
                container_instance_arn: a,
                source: "ECS agent introspection",
            }),
            Ok(_) => Introspection::Unusable("no Cluster or ContainerInstanceArn yet".into()),
            Err(e) => Introspection::Unusable(format!("not JSON: {e}")),
        },
        Ok((status, _)) => Introspection::Status(status),
    }
}

/// The `ECS_CLUSTER=` line of an ecs.config file (`default` when the file exists but does
/// not name one, as the ECS agent assumes).
pub fn cluster_from_ecs_config(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let named = text.lines().find_map(|l| {
        let value = l.trim().strip_prefix("ECS_CLUSTER=")?;
        Some(value.trim().trim_matches('"').to_owned())
    });
    Some(
        named
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| "default".to_owned()),
    )
}

/// The identity from config overrides alone, when both are set.
pub fn from_config(ecs: &EcsSettings) -> Option<Identity> {
    (!ecs.cluster.is_empty() && !ecs.container_instance_arn.is_empty()).then(|| Identity {
        cluster: ecs.cluster.clone(),
        container_instance_arn: ecs.container_instance_arn.clone(),
        source: "configuration",
    })
}

/// The cluster named in a container instance ARN
/// (`arn:aws:ecs:region:account:container-instance/CLUSTER/ID`).
pub fn cluster_of_arn(arn: &str) -> Option<&str> {
    let resource = arn.split(':').nth(5)?;
    let mut parts = resource.split('/');
    (parts.next()? == "container-instance").then_some(())?;
    let (cluster, id) = (parts.next()?, parts.next());
    id.map(|_| cluster)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ecs_cluster_from_ecs_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ecs.config");
        std::fs::write(
            &path,
            "ECS_ENABLE_TASK_IAM_ROLE=true\nECS_CLUSTER=prod-east\n",
        )
        .expect("write");
        assert_eq!(cluster_from_ecs_config(&path).as_deref(), Some("prod-east"));
        std::fs::write(&path, "ECS_LOGLEVEL=info\n").expect("write");
        assert_eq!(cluster_from_ecs_config(&path).as_deref(), Some("default"));
        assert_eq!(cluster_from_ecs_config(&dir.path().join("missing")), None);
    }

    #[test]
    fn finds_the_cluster_in_a_long_arn() {
        let arn = "arn:aws:ecs:eu-west-1:123456789012:container-instance/prod/0a1b2c3d";
        assert_eq!(cluster_of_arn(arn), Some("prod"));
        assert_eq!(
            cluster_of_arn("arn:aws:ecs:eu-west-1:1:container-instance/0a1b"),
            None
        );
        assert_eq!(cluster_of_arn("nonsense"), None);
    }
}
