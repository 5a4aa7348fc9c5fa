//! What the ECS actor asks of the control plane, as a trait. The daemon's plane is the
//! ECS API (with IMDS for the lifecycle state); the fleet simulation's is simulated. Both
//! run the same machine and the same driver, so only the transport differs.

use std::future::Future;

use super::machine::Failure;
use crate::aws::Lifecycle;
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
}

impl ControlPlane for EcsClient {
    async fn describe_self(&self) -> PlaneResult<SelfRead> {
        Ok(self.describe_self().await?)
    }

    async fn instances(&self) -> PlaneResult<u32> {
        Ok(self.registered_instances().await?)
    }

    async fn draining(&self) -> PlaneResult<Vec<String>> {
        Ok(self
            .list(aws_sdk_ecs::types::ContainerInstanceStatus::Draining)
            .await?)
    }

    async fn marked(&self, name: &str) -> PlaneResult<Vec<(String, String)>> {
        Ok(self.list_attribute(name).await?)
    }

    async fn put(&self, attributes: &[(&str, &str)]) -> PlaneResult<()> {
        Ok(self.put_attributes(attributes).await?)
    }

    async fn delete(&self, names: &[&str]) -> PlaneResult<()> {
        Ok(self.delete_attributes(names).await?)
    }

    async fn set_draining(&self, draining: bool) -> PlaneResult<()> {
        use aws_sdk_ecs::types::ContainerInstanceStatus;
        let status = if draining {
            ContainerInstanceStatus::Draining
        } else {
            ContainerInstanceStatus::Active
        };
        Ok(self.set_state(status).await?)
    }

    async fn lifecycle(&self) -> Result<Lifecycle, String> {
        crate::aws::target_lifecycle_state().await
    }
}
