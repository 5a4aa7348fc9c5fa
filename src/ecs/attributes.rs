//! The attributes diskguard puts on its own container instance: the ownership mark (which
//! doubles as a claim while the budget is checked) and the culprit's task family; and the
//! state changes that go with them, in the order that keeps ownership safe.

use std::time::SystemTime;

use aws_sdk_ecs::types::{Attribute, ContainerInstanceStatus};

use super::client::{CULPRIT, DRAINED_AT, EcsClient, EcsError, call_error, rfc3339};

impl EcsClient {
    /// Puts the mark: a claim on a share of the cluster's drain budget, and, once the
    /// instance is DRAINING, what lets diskguard give it back.
    pub async fn claim(&self, at: SystemTime) -> Result<(), EcsError> {
        self.put(DRAINED_AT, &rfc3339(at)).await
    }

    /// Sets DRAINING (after `claim`).
    pub async fn set_draining(&self) -> Result<(), EcsError> {
        self.set_state(ContainerInstanceStatus::Draining).await
    }

    /// Puts the mark first, then sets DRAINING: if the second call fails, a later drain
    /// finds the mark and simply repeats it; an instance never ends up DRAINING without
    /// the mark that lets diskguard give it back.
    pub async fn drain(&self, at: SystemTime) -> Result<(), EcsError> {
        self.claim(at).await?;
        self.set_draining().await
    }

    /// Names the task family that filled the disk.
    pub async fn set_culprit(&self, family: &str) -> Result<(), EcsError> {
        self.put(CULPRIT, family).await
    }

    /// Sets ACTIVE, then removes the mark and the culprit (their values as last read).
    pub async fn activate(
        &self,
        mark: Option<&str>,
        culprit: Option<&str>,
    ) -> Result<(), EcsError> {
        self.set_state(ContainerInstanceStatus::Active).await?;
        if let Some(value) = mark {
            self.remove_mark(value).await?;
        }
        if let Some(value) = culprit {
            self.remove(CULPRIT, value).await?;
        }
        Ok(())
    }

    /// Removes the mark (a withdrawn claim, or a stale mark).
    pub async fn remove_mark(&self, value: &str) -> Result<(), EcsError> {
        self.remove(DRAINED_AT, value).await
    }

    /// Removes the culprit once the disk has recovered.
    pub async fn remove_culprit(&self, value: &str) -> Result<(), EcsError> {
        self.remove(CULPRIT, value).await
    }

    async fn put(&self, name: &str, value: &str) -> Result<(), EcsError> {
        let attribute = self.attribute("PutAttributes", name, Some(value.to_owned()))?;
        self.client
            .put_attributes()
            .cluster(self.cluster())
            .attributes(attribute)
            .send()
            .await
            .map_err(|e| call_error("PutAttributes", self.arn(), e))?;
        Ok(())
    }

    /// Removes an attribute as AWS documents it: name and target, no value. moto (the
    /// test peer) deletes only on a matching value, so if the attribute is still there
    /// afterwards, the call is repeated with the value it was read with.
    async fn remove(&self, name: &str, value: &str) -> Result<(), EcsError> {
        self.delete(name, None).await?;
        let view = self.view().await?;
        let left = if name == DRAINED_AT {
            view.drained_at.is_some()
        } else {
            view.culprit.is_some()
        };
        if left {
            self.delete(name, Some(value)).await?;
        }
        Ok(())
    }

    async fn delete(&self, name: &str, value: Option<&str>) -> Result<(), EcsError> {
        let attribute = self.attribute("DeleteAttributes", name, value.map(str::to_owned))?;
        self.client
            .delete_attributes()
            .cluster(self.cluster())
            .attributes(attribute)
            .send()
            .await
            .map_err(|e| call_error("DeleteAttributes", self.arn(), e))?;
        Ok(())
    }

    /// An attribute of this instance, by full ARN (no target type: AWS and moto both take
    /// the id from the ARN then).
    fn attribute(
        &self,
        op: &'static str,
        name: &str,
        value: Option<String>,
    ) -> Result<Attribute, EcsError> {
        Attribute::builder()
            .name(name)
            .set_value(value)
            .target_id(self.arn())
            .build()
            .map_err(|e| call_error(op, self.arn(), e))
    }
}
