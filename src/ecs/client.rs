//! The ECS API as diskguard uses it: this container instance's view and state. The marks
//! it puts on the instance are in `attributes.rs`, what it reads of the cluster in
//! `cluster.rs`.

use std::time::SystemTime;

use aws_sdk_ecs::error::ProvideErrorMetadata;
use aws_sdk_ecs::types::ContainerInstanceStatus;

use super::identity::Identity;
use crate::sample::{EcsStatus, EcsView};

/// The ownership mark (contract): present only on instances diskguard drained (or, for a
/// few seconds, is about to: a claim). Its value is the RFC 3339 UTC time it was put.
pub const DRAINED_AT: &str = "diskguard.drained-at";
/// The task family that filled this instance's disk (contract), set on an eviction or a
/// drain and removed when the disk has recovered.
pub const CULPRIT: &str = "diskguard.culprit";

/// Why an ECS call failed, naming the call and the instance.
#[derive(Debug, thiserror::Error)]
pub enum EcsError {
    #[error("ECS {op} for {target}: {message}")]
    Call {
        op: &'static str,
        target: String,
        message: String,
        /// ECS answered ThrottlingException (after the SDK's own retries).
        throttled: bool,
    },
    #[error("container instance {arn} is not in cluster {cluster}")]
    NotFound { arn: String, cluster: String },
}

/// This container instance as one DescribeContainerInstances shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfRead {
    pub status: EcsStatus,
    /// `diskguard.drained-at`, if set.
    pub mark: Option<String>,
    /// `diskguard.culprit`, if set.
    pub culprit: Option<String>,
    /// Tasks running or pending on it.
    pub tasks: u32,
    /// The EC2 instance behind it.
    pub ec2_instance_id: Option<String>,
}

/// A client bound to one container instance.
#[derive(Debug, Clone)]
pub struct EcsClient {
    pub(super) client: aws_sdk_ecs::Client,
    pub identity: Identity,
}

pub(super) fn call_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
    op: &'static str,
    target: &str,
    e: E,
) -> EcsError {
    let (throttled, message) = crate::aws::call_failure(&e);
    EcsError::Call {
        op,
        target: target.to_owned(),
        throttled,
        message,
    }
}

impl EcsError {
    /// ECS throttled the call (the account's request quota is spent for now).
    pub fn is_throttling(&self) -> bool {
        matches!(
            self,
            EcsError::Call {
                throttled: true,
                ..
            }
        )
    }
}

/// RFC 3339 UTC with milliseconds, `2026-11-26T04:00:00.123Z`: the budget check ranks
/// drains by this time, and instances that cross together drain within the same second.
pub fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

impl EcsClient {
    pub fn new(config: &aws_config::SdkConfig, identity: Identity) -> Self {
        EcsClient {
            client: aws_sdk_ecs::Client::new(config),
            identity,
        }
    }

    /// The client for finding this instance's ARN before an identity exists.
    pub fn sdk(config: &aws_config::SdkConfig) -> aws_sdk_ecs::Client {
        aws_sdk_ecs::Client::new(config)
    }

    pub(super) fn arn(&self) -> &str {
        &self.identity.container_instance_arn
    }

    pub(super) fn cluster(&self) -> &str {
        &self.identity.cluster
    }

    /// This instance's status, mark and culprit: one DescribeContainerInstances.
    pub async fn describe_self(&self) -> Result<SelfRead, EcsError> {
        let described = self
            .client
            .describe_container_instances()
            .cluster(self.cluster())
            .container_instances(self.arn())
            .send()
            .await
            .map_err(|e| call_error("DescribeContainerInstances", self.arn(), e))?;
        let Some(me) = described.container_instances().first() else {
            return Err(EcsError::NotFound {
                arn: self.arn().to_owned(),
                cluster: self.cluster().to_owned(),
            });
        };
        let status = match me.status() {
            Some("ACTIVE") => EcsStatus::Active,
            Some("DRAINING") => EcsStatus::Draining,
            other => EcsStatus::Other(other.unwrap_or("UNKNOWN").to_owned()),
        };
        let attribute = |name: &str| {
            me.attributes()
                .iter()
                .find(|a| a.name() == name)
                .map(|a| a.value().unwrap_or_default().to_owned())
        };
        let tasks = me.running_tasks_count() + me.pending_tasks_count();
        Ok(SelfRead {
            status,
            mark: attribute(DRAINED_AT),
            culprit: attribute(CULPRIT),
            tasks: u32::try_from(tasks).unwrap_or(0),
            ec2_instance_id: me.ec2_instance_id().map(str::to_owned),
        })
    }

    /// This instance as `status` and the CLI show it: its own read, and the cluster's
    /// size from one DescribeClusters. `cluster_draining` is not counted here (that would
    /// list the cluster): it is 0 unless `with_draining`, which pages over the DRAINING
    /// instances only.
    pub async fn view(&self, with_draining: bool) -> Result<EcsView, EcsError> {
        let me = self.describe_self().await?;
        let instances = self.registered_instances().await?;
        let draining = if with_draining {
            u32::try_from(self.list(ContainerInstanceStatus::Draining).await?.len())
                .unwrap_or(u32::MAX)
        } else {
            0
        };
        Ok(EcsView {
            cluster: self.cluster().to_owned(),
            container_instance_arn: self.arn().to_owned(),
            status: me.status,
            drained_at: me.mark,
            culprit: me.culprit,
            cluster_active: instances.saturating_sub(draining),
            cluster_draining: draining,
            current: true,
        })
    }

    pub async fn set_state(&self, status: ContainerInstanceStatus) -> Result<(), EcsError> {
        let out = self
            .client
            .update_container_instances_state()
            .cluster(self.cluster())
            .container_instances(self.arn())
            .status(status)
            .send()
            .await
            .map_err(|e| call_error("UpdateContainerInstancesState", self.arn(), e))?;
        if let Some(f) = out.failures().first() {
            return Err(EcsError::Call {
                op: "UpdateContainerInstancesState",
                target: self.arn().to_owned(),
                message: format!(
                    "{} {}",
                    f.reason().unwrap_or("failed"),
                    f.detail().unwrap_or_default()
                ),
                throttled: false,
            });
        }
        Ok(())
    }
}

/// The container instance ARN of EC2 instance `instance_id` in `cluster`, if registered.
/// The cluster query filters the list; the match is then confirmed by describing the
/// candidates, since a filter that is not applied (moto ignores it) must not make another
/// instance this one.
pub async fn find_arn(
    client: &aws_sdk_ecs::Client,
    cluster: &str,
    instance_id: &str,
) -> Result<Option<String>, EcsError> {
    let page = client
        .list_container_instances()
        .cluster(cluster)
        .filter(format!("ec2InstanceId == {instance_id}"))
        .max_results(100)
        .send()
        .await
        .map_err(|e| call_error("ListContainerInstances", cluster, e))?;
    for chunk in page.container_instance_arns().chunks(100) {
        let described = client
            .describe_container_instances()
            .cluster(cluster)
            .set_container_instances(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| call_error("DescribeContainerInstances", cluster, e))?;
        if let Some(me) = described
            .container_instances()
            .iter()
            .find(|c| c.ec2_instance_id() == Some(instance_id))
        {
            return Ok(me.container_instance_arn().map(str::to_owned));
        }
    }
    Ok(None)
}
