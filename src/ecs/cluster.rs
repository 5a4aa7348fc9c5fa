//! What diskguard reads of the whole cluster, each in a number of calls that does not grow
//! with the cluster's size: how many instances it has (one DescribeClusters), which are
//! DRAINING (pages over the DRAINING ones only), and which carry one of diskguard's
//! attributes (ListAttributes by name, pages over the marked ones only).

use std::collections::BTreeMap;

use aws_sdk_ecs::types::{ContainerInstanceStatus, TargetType};

use super::client::{CULPRIT, EcsClient, EcsError, call_error};

/// ECS's largest page for ListContainerInstances and ListAttributes.
const PAGE: i32 = 100;

impl EcsClient {
    /// ARNs of the cluster's instances in `status`, all pages.
    pub async fn list(&self, status: ContainerInstanceStatus) -> Result<Vec<String>, EcsError> {
        let mut token = None;
        let mut arns = Vec::new();
        loop {
            let page = self
                .client
                .list_container_instances()
                .cluster(self.cluster())
                .status(status.clone())
                .max_results(PAGE)
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

    /// The cluster's ACTIVE + DRAINING instances: `registeredContainerInstancesCount`
    /// (which ECS documents as counting both), one DescribeClusters.
    pub async fn registered_instances(&self) -> Result<u32, EcsError> {
        let out = self
            .client
            .describe_clusters()
            .clusters(self.cluster())
            .send()
            .await
            .map_err(|e| call_error("DescribeClusters", self.cluster(), e))?;
        let Some(cluster) = out.clusters().first() else {
            return Err(EcsError::Call {
                op: "DescribeClusters",
                target: self.cluster().to_owned(),
                message: "no such cluster".into(),
                throttled: false,
            });
        };
        Ok(u32::try_from(cluster.registered_container_instances_count()).unwrap_or(0))
    }

    /// The container instances carrying attribute `name`, with its value: ListAttributes by
    /// name alone, all pages (as many as there are marked instances, not instances).
    pub async fn list_attribute(&self, name: &str) -> Result<Vec<(String, String)>, EcsError> {
        let mut token = None;
        let mut found = Vec::new();
        loop {
            let page = self
                .client
                .list_attributes()
                .cluster(self.cluster())
                .target_type(TargetType::ContainerInstance)
                .attribute_name(name)
                .max_results(PAGE)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| call_error("ListAttributes", self.cluster(), e))?;
            found.extend(page.attributes().iter().filter_map(|a| {
                let target = a.target_id()?;
                Some((target.to_owned(), a.value().unwrap_or_default().to_owned()))
            }));
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                return Ok(found);
            }
        }
    }

    /// Task families named by the cluster's instances as having filled their disk, with
    /// how many instances name each: the culprit attribute read by name.
    pub async fn culprits(&self) -> Result<BTreeMap<String, u32>, EcsError> {
        let mut families = BTreeMap::new();
        for (_, family) in self.list_attribute(CULPRIT).await? {
            if !family.is_empty() {
                *families.entry(family).or_insert(0) += 1;
            }
        }
        Ok(families)
    }
}
