//! What the ECS actor asks of the control plane, as a trait. The daemon's plane is the
//! ECS API (with IMDS for the lifecycle state, Auto Scaling for a replacement and Docker
//! for what is left on the disk); the fleet simulation's is simulated. Both run the same
//! machine and the same driver, so only the transport differs.

use std::future::Future;

use super::machine::Failure;
use crate::asg::{AsgClient, AsgError};
use crate::aws::Lifecycle;
use crate::config::DockerSettings;
use crate::docker::DockerSource;
pub use crate::ecs::SelfRead;
use crate::ecs::{EcsClient, EcsError};

impl From<EcsError> for Failure {
    fn from(e: EcsError) -> Self {
        Failure {
            throttled: e.is_throttling(),
            message: crate::error::chain(&e),
        }
    }
}

impl From<AsgError> for Failure {
    fn from(e: AsgError) -> Self {
        Failure {
            throttled: e.is_throttling(),
            message: crate::error::chain(&e),
        }
    }
}

pub type PlaneResult<T> = Result<T, Failure>;

/// The calls, each one request to ECS (or one per page) — the unit the read budget and
/// the simulation count.
pub trait ControlPlane {
    /// DescribeContainerInstances of this instance alone.
    fn describe_self(&self) -> impl Future<Output = PlaneResult<SelfRead>> + Send;
    /// The cluster's ACTIVE + DRAINING instances: DescribeClusters'
    /// `registeredContainerInstancesCount`, one call whatever the cluster's size.
    fn instances(&self) -> impl Future<Output = PlaneResult<u32>> + Send;
    /// The DRAINING instances' ARNs: ListContainerInstances filtered by status, paging over
    /// the DRAINING ones only.
    fn draining(&self) -> impl Future<Output = PlaneResult<Vec<String>>> + Send;
    /// The instances that carry attribute `name`, with its value: ListAttributes by name,
    /// paging over the marked instances only.
    fn marked(&self, name: &str)
    -> impl Future<Output = PlaneResult<Vec<(String, String)>>> + Send;
    /// PutAttributes on this instance, all in one call.
    fn put(&self, attributes: &[(&str, &str)]) -> impl Future<Output = PlaneResult<()>> + Send;
    /// DeleteAttributes on this instance by name, all in one call.
    fn delete(&self, names: &[&str]) -> impl Future<Output = PlaneResult<()>> + Send;
    /// UpdateContainerInstancesState of this instance: DRAINING or ACTIVE.
    fn set_draining(&self, draining: bool) -> impl Future<Output = PlaneResult<()>> + Send;
    /// Whether the Auto Scaling group is taking this instance out of service (IMDS).
    fn lifecycle(&self) -> impl Future<Output = Result<Lifecycle, String>> + Send;
    /// What is left on the disk that diskguard did not free, as one line, largest first;
    /// the error as a line when it cannot be read.
    fn leftovers(&self) -> impl Future<Output = String> + Send;
    /// SetInstanceHealth(Unhealthy) for this EC2 instance in its Auto Scaling group: the
    /// group's name, or `None` when the instance is in no group.
    fn replace(
        &self,
        ec2_instance_id: &str,
        respect_grace_period: bool,
    ) -> impl Future<Output = PlaneResult<Option<String>>> + Send;
}

/// The daemon's plane.
#[derive(Debug)]
pub struct NodePlane {
    pub ecs: EcsClient,
    pub sdk: aws_config::SdkConfig,
    pub docker: DockerSettings,
}

impl ControlPlane for NodePlane {
    async fn describe_self(&self) -> PlaneResult<SelfRead> {
        Ok(self.ecs.describe_self().await?)
    }

    async fn instances(&self) -> PlaneResult<u32> {
        Ok(self.ecs.registered_instances().await?)
    }

    async fn draining(&self) -> PlaneResult<Vec<String>> {
        Ok(self
            .ecs
            .list(aws_sdk_ecs::types::ContainerInstanceStatus::Draining)
            .await?)
    }

    async fn marked(&self, name: &str) -> PlaneResult<Vec<(String, String)>> {
        Ok(self.ecs.list_attribute(name).await?)
    }

    async fn put(&self, attributes: &[(&str, &str)]) -> PlaneResult<()> {
        Ok(self.ecs.put_attributes(attributes).await?)
    }

    async fn delete(&self, names: &[&str]) -> PlaneResult<()> {
        Ok(self.ecs.delete_attributes(names).await?)
    }

    async fn set_draining(&self, draining: bool) -> PlaneResult<()> {
        use aws_sdk_ecs::types::ContainerInstanceStatus;
        let status = if draining {
            ContainerInstanceStatus::Draining
        } else {
            ContainerInstanceStatus::Active
        };
        Ok(self.ecs.set_state(status).await?)
    }

    async fn lifecycle(&self) -> Result<Lifecycle, String> {
        crate::aws::target_lifecycle_state().await
    }

    async fn leftovers(&self) -> String {
        let read = match DockerSource::connect(&self.docker).await {
            Ok(docker) => docker.leftovers().await,
            Err(e) => Err(e),
        };
        match read {
            Ok(left) => left.summary(8),
            Err(e) => format!(
                "what is left on the disk could not be read: {}",
                crate::error::chain(&e)
            ),
        }
    }

    async fn replace(
        &self,
        ec2_instance_id: &str,
        respect_grace_period: bool,
    ) -> PlaneResult<Option<String>> {
        let asg = AsgClient::new(&self.sdk, ec2_instance_id);
        let Some(group) = asg.group().await? else {
            return Ok(None);
        };
        asg.set_unhealthy(respect_grace_period).await?;
        Ok(Some(group.name))
    }
}
