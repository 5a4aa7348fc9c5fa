//! What diskguard reads of the whole cluster: how many instances are ACTIVE and DRAINING
//! (all pages), who drained or claimed a share of the budget, and which task families
//! the instances name as culprits.

use std::collections::BTreeMap;

use aws_sdk_ecs::types::{ContainerInstance, ContainerInstanceStatus};

use super::client::{CULPRIT, DRAINED_AT, EcsClient, EcsError, call_error};
use crate::sample::DrainingInstance;

fn attribute(c: &ContainerInstance, name: &str) -> Option<String> {
    c.attributes()
        .iter()
        .find(|a| a.name() == name)
        .map(|a| a.value().unwrap_or_default().to_owned())
}

impl EcsClient {
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

    /// The cluster's ACTIVE and DRAINING instances, counted now (all pages).
    pub async fn counts(&self) -> Result<(u32, u32), EcsError> {
        let count = |v: Vec<String>| u32::try_from(v.len()).unwrap_or(u32::MAX);
        let active = count(self.list(ContainerInstanceStatus::Active).await?);
        let draining = count(self.list(ContainerInstanceStatus::Draining).await?);
        Ok((active, draining))
    }

    /// Every ACTIVE and DRAINING instance, described (100 a call).
    async fn describe_all(&self) -> Result<Vec<ContainerInstance>, EcsError> {
        let mut arns = self.list(ContainerInstanceStatus::Active).await?;
        arns.extend(self.list(ContainerInstanceStatus::Draining).await?);
        let mut all = Vec::with_capacity(arns.len());
        for chunk in arns.chunks(100) {
            let described = self
                .client
                .describe_container_instances()
                .cluster(self.cluster())
                .set_container_instances(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| call_error("DescribeContainerInstances", self.cluster(), e))?;
            all.extend(described.container_instances().iter().cloned());
        }
        Ok(all)
    }

    /// What the budget check needs: every DRAINING instance, and every ACTIVE one with
    /// diskguard's mark (a claim), each with its mark; and how many instances are ACTIVE
    /// or DRAINING.
    pub async fn drains(&self) -> Result<(Vec<DrainingInstance>, u32), EcsError> {
        let all = self.describe_all().await?;
        let mut instances = 0u32;
        let mut drains = Vec::new();
        for c in &all {
            // A read that raced a state change: only ACTIVE and DRAINING count.
            let draining = match c.status() {
                Some("DRAINING") => true,
                Some("ACTIVE") => false,
                _ => continue,
            };
            instances = instances.saturating_add(1);
            let marked_at = attribute(c, DRAINED_AT);
            if draining || marked_at.is_some() {
                drains.push(DrainingInstance {
                    arn: c.container_instance_arn().unwrap_or_default().to_owned(),
                    marked_at,
                    draining,
                });
            }
        }
        Ok((drains, instances))
    }

    /// Task families named by the cluster's instances as having filled their disk, with
    /// how many instances name each.
    pub async fn culprits(&self) -> Result<BTreeMap<String, u32>, EcsError> {
        let mut families = BTreeMap::new();
        for c in self.describe_all().await? {
            if let Some(f) = attribute(&c, CULPRIT).filter(|f| !f.is_empty()) {
                *families.entry(f).or_insert(0) += 1;
            }
        }
        Ok(families)
    }
}
