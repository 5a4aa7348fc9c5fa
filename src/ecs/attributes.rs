//! The attributes diskguard puts on its own container instance — the ownership mark
//! (which doubles as a claim while the budget is checked) and the culprit's task family —
//! and the state changes that go with them.

use std::time::SystemTime;

use aws_sdk_ecs::types::{Attribute, ContainerInstanceStatus};

use super::client::{CULPRIT, DRAINED_AT, EcsClient, EcsError, call_error, rfc3339};

impl EcsClient {
    /// Puts the mark, then sets DRAINING (`diskguard drain`): if the second call fails, a
    /// later drain finds the mark and repeats it; an instance never ends up DRAINING
    /// without the mark that lets diskguard give it back.
    pub async fn drain(&self, at: SystemTime) -> Result<(), EcsError> {
        self.put_attributes(&[(DRAINED_AT, &rfc3339(at))]).await?;
        self.set_state(ContainerInstanceStatus::Draining).await
    }

    /// Sets ACTIVE, then removes the mark and the culprit (`diskguard undrain`).
    pub async fn activate(&self) -> Result<(), EcsError> {
        self.set_state(ContainerInstanceStatus::Active).await?;
        self.delete_attributes(&[DRAINED_AT, CULPRIT]).await
    }

    /// Puts attributes on this instance, in one PutAttributes.
    pub async fn put_attributes(&self, attributes: &[(&str, &str)]) -> Result<(), EcsError> {
        let attributes = attributes
            .iter()
            .map(|(name, value)| self.attribute(name, Some(value)))
            .collect::<Result<Vec<_>, _>>()?;
        self.client
            .put_attributes()
            .cluster(self.cluster())
            .set_attributes(Some(attributes))
            .send()
            .await
            .map_err(|e| call_error("PutAttributes", self.arn(), e))?;
        Ok(())
    }

    /// Removes attributes from this instance by name and target, without a value, as the
    /// ECS API reference documents for custom attributes: one DeleteAttributes. Removing
    /// an attribute that is not there succeeds.
    pub async fn delete_attributes(&self, names: &[&str]) -> Result<(), EcsError> {
        let attributes = names
            .iter()
            .map(|name| self.attribute(name, None))
            .collect::<Result<Vec<_>, _>>()?;
        self.client
            .delete_attributes()
            .cluster(self.cluster())
            .set_attributes(Some(attributes))
            .send()
            .await
            .map_err(|e| call_error("DeleteAttributes", self.arn(), e))?;
        Ok(())
    }

    /// An attribute of this instance, by full ARN (no target type: ECS takes the id from
    /// the ARN then).
    fn attribute(&self, name: &str, value: Option<&str>) -> Result<Attribute, EcsError> {
        Attribute::builder()
            .name(name)
            .set_value(value.map(str::to_owned))
            .target_id(self.arn())
            .build()
            .map_err(|e| EcsError::Call {
                op: "PutAttributes",
                target: self.arn().to_owned(),
                message: e.to_string(),
                throttled: false,
            })
    }
}
