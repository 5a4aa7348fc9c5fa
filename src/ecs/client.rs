//! The ECS API as diskguard uses it: read this container instance and count the
//! cluster's ACTIVE and DRAINING instances; drain and give back with the ownership mark.

use std::time::SystemTime;

use aws_sdk_ecs::error::DisplayErrorContext;
use aws_sdk_ecs::types::{Attribute, ContainerInstanceStatus};

use super::identity::Identity;
use crate::sample::{DrainingInstance, EcsStatus, EcsView};

/// The ownership mark (contract): present only on instances diskguard drained. Its value
/// is the RFC 3339 UTC time of the drain.
pub const DRAINED_AT: &str = "diskguard.drained-at";

/// Why an ECS call failed, naming the call and the instance.
#[derive(Debug, thiserror::Error)]
pub enum EcsError {
    #[error("ECS {op} for {target}: {message}")]
    Call {
        op: &'static str,
        target: String,
        message: String,
    },
    #[error("container instance {arn} is not in cluster {cluster}")]
    NotFound { arn: String, cluster: String },
}

/// A client bound to one container instance.
#[derive(Debug, Clone)]
pub struct EcsClient {
    client: aws_sdk_ecs::Client,
    pub identity: Identity,
}

fn call_error<E: std::error::Error + 'static>(op: &'static str, target: &str, e: E) -> EcsError {
    EcsError::Call {
        op,
        target: target.to_owned(),
        message: DisplayErrorContext(&e).to_string(),
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

    fn arn(&self) -> &str {
        &self.identity.container_instance_arn
    }

    fn cluster(&self) -> &str {
        &self.identity.cluster
    }

    /// This instance's status and mark, and the cluster's ACTIVE and DRAINING counts.
    pub async fn view(&self) -> Result<EcsView, EcsError> {
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
        let drained_at = me
            .attributes()
            .iter()
            .find(|a| a.name() == DRAINED_AT)
            .map(|a| a.value().unwrap_or_default().to_owned());
        let cluster_active = self.count(ContainerInstanceStatus::Active).await?;
        let cluster_draining = self.count(ContainerInstanceStatus::Draining).await?;
        Ok(EcsView {
            cluster: self.cluster().to_owned(),
            container_instance_arn: self.arn().to_owned(),
            status,
            drained_at,
            cluster_active,
            cluster_draining,
            generation: 0,
        })
    }

    /// ARNs of the cluster's instances in `status`, all pages.
    async fn list(&self, status: ContainerInstanceStatus) -> Result<Vec<String>, EcsError> {
        let mut token = None;
        let mut arns = Vec::new();
        loop {
            let page = self
                .client
                .list_container_instances()
                .cluster(self.cluster())
                .status(status.clone())
                .max_results(100)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| call_error("ListContainerInstances", self.cluster(), e))?;
            arns.extend(page.container_instance_arns().iter().cloned());
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                return Ok(arns);
            }
        }
    }

    async fn count(&self, status: ContainerInstanceStatus) -> Result<u32, EcsError> {
        Ok(u32::try_from(self.list(status).await?.len()).unwrap_or(u32::MAX))
    }

    /// The cluster's ACTIVE and DRAINING instances, counted now (all pages).
    pub async fn counts(&self) -> Result<(u32, u32), EcsError> {
        let active = self.count(ContainerInstanceStatus::Active).await?;
        let draining = self.count(ContainerInstanceStatus::Draining).await?;
        Ok((active, draining))
    }

    /// The cluster's DRAINING instances with diskguard's mark where it is set, and the
    /// number of ACTIVE + DRAINING instances: what the budget check after a drain needs.
    pub async fn draining_instances(&self) -> Result<(Vec<DrainingInstance>, u32), EcsError> {
        let active = self.count(ContainerInstanceStatus::Active).await?;
        let arns = self.list(ContainerInstanceStatus::Draining).await?;
        let mut draining = Vec::with_capacity(arns.len());
        // DescribeContainerInstances takes at most 100 instances a call.
        for chunk in arns.chunks(100) {
            let described = self
                .client
                .describe_container_instances()
                .cluster(self.cluster())
                .set_container_instances(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| call_error("DescribeContainerInstances", self.cluster(), e))?;
            for c in described.container_instances() {
                // A read that raced a state change: only what is DRAINING now counts.
                if c.status() != Some("DRAINING") {
                    continue;
                }
                draining.push(DrainingInstance {
                    arn: c.container_instance_arn().unwrap_or_default().to_owned(),
                    marked_at: c
                        .attributes()
                        .iter()
                        .find(|a| a.name() == DRAINED_AT)
                        .map(|a| a.value().unwrap_or_default().to_owned()),
                });
            }
        }
        let instances = active.saturating_add(u32::try_from(draining.len()).unwrap_or(u32::MAX));
        Ok((draining, instances))
    }

    /// Puts the mark first, then sets DRAINING: if the second call fails, a later drain
    /// finds the mark and simply repeats it; an instance never ends up DRAINING without
    /// the mark that lets diskguard give it back.
    pub async fn drain(&self, at: SystemTime) -> Result<(), EcsError> {
        let mark = self.mark("PutAttributes", Some(rfc3339(at)))?;
        self.client
            .put_attributes()
            .cluster(self.cluster())
            .attributes(mark)
            .send()
            .await
            .map_err(|e| call_error("PutAttributes", self.arn(), e))?;
        self.set_state(ContainerInstanceStatus::Draining).await
    }

    /// Sets ACTIVE, then removes the mark (`mark`: its value as last read, if any).
    pub async fn activate(&self, mark: Option<&str>) -> Result<(), EcsError> {
        self.set_state(ContainerInstanceStatus::Active).await?;
        match mark {
            Some(value) => self.remove_mark(value).await,
            None => Ok(()),
        }
    }

    /// Removes the mark as AWS documents it: name and target, no value. moto (the test
    /// peer) deletes only on a matching value, so if the mark is still there afterwards,
    /// the call is repeated with the value it was read with.
    pub async fn remove_mark(&self, value: &str) -> Result<(), EcsError> {
        self.delete_mark(None).await?;
        if self.view().await?.drained_at.is_some() {
            self.delete_mark(Some(value)).await?;
        }
        Ok(())
    }

    /// The ownership mark on this instance, by full ARN (no target type: AWS and moto
    /// both take the id from the ARN then).
    fn mark(&self, op: &'static str, value: Option<String>) -> Result<Attribute, EcsError> {
        Attribute::builder()
            .name(DRAINED_AT)
            .set_value(value)
            .target_id(self.arn())
            .build()
            .map_err(|e| call_error(op, self.arn(), e))
    }

    async fn delete_mark(&self, value: Option<&str>) -> Result<(), EcsError> {
        let mark = self.mark("DeleteAttributes", value.map(str::to_owned))?;
        self.client
            .delete_attributes()
            .cluster(self.cluster())
            .attributes(mark)
            .send()
            .await
            .map_err(|e| call_error("DeleteAttributes", self.arn(), e))?;
        Ok(())
    }

    async fn set_state(&self, status: ContainerInstanceStatus) -> Result<(), EcsError> {
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
