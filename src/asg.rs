//! EC2 Auto Scaling as diskguard uses it: which group this instance is in, with the group's
//! health-check settings, and the one write, SetInstanceHealth(Unhealthy), with which a
//! drained node whose disk stays full has its group replace it.
//!
//! Calls, each on this instance only: [`AsgClient::group`] is one
//! DescribeAutoScalingInstances when the instance is in no group, and one more
//! (DescribeAutoScalingGroups of that group by name) when it is, because the instance's
//! details carry neither the grace period nor the health check type ("AutoScalingInstanceDetails"
//! in the Auto Scaling API reference). [`AsgClient::set_unhealthy`] is one SetInstanceHealth.
//! Auto Scaling's request quotas are per account and Region like ECS's, so neither belongs on
//! an idle path: `doctor` and an escalation decision call them, nothing periodic does.

use std::time::Duration;

use aws_sdk_autoscaling::error::ProvideErrorMetadata;
use aws_sdk_autoscaling::types::{AutoScalingGroup, AutoScalingInstanceDetails};

/// The group tag the shipped IAM policy requires (`autoscaling:ResourceTag/diskguard:escalate`
/// = `true`) before it lets diskguard set the group's instances Unhealthy.
pub const ESCALATE_TAG: &str = "diskguard:escalate";
/// [`ESCALATE_TAG`]'s value that opts a group in.
pub const ESCALATE_TAG_VALUE: &str = "true";

/// Why an Auto Scaling call failed, naming the call and the instance.
#[derive(Debug, thiserror::Error)]
pub enum AsgError {
    #[error("Auto Scaling {op} for instance {instance_id}: {message}")]
    Call {
        op: &'static str,
        instance_id: String,
        message: String,
        /// Auto Scaling answered Throttling (after the SDK's own retries).
        throttled: bool,
    },
    /// DescribeAutoScalingInstances named a group that DescribeAutoScalingGroups then did not
    /// list: it was deleted in between (the instance is about to leave it).
    #[error(
        "Auto Scaling DescribeAutoScalingGroups for instance {instance_id}: its group {group} is not there any more"
    )]
    GroupGone { instance_id: String, group: String },
}

impl AsgError {
    /// Auto Scaling throttled the call (the account's request quota is spent for now).
    pub fn is_throttling(&self) -> bool {
        matches!(
            self,
            AsgError::Call {
                throttled: true,
                ..
            }
        )
    }
}

fn call_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
    op: &'static str,
    instance_id: &str,
    e: E,
) -> AsgError {
    let (throttled, message) = crate::aws::call_failure(&e);
    AsgError::Call {
        op,
        instance_id: instance_id.to_owned(),
        throttled,
        message,
    }
}

/// This instance's Auto Scaling group, and the instance's place in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    /// How long after an instance enters service the group ignores its health checks
    /// (and, with ShouldRespectGracePeriod, SetInstanceHealth). AWS's default for a group
    /// created through the API is 0.
    pub health_check_grace_period: Duration,
    /// `EC2` (the default), or a comma-separated list such as `EC2,ELB`.
    pub health_check_type: String,
    /// This instance's: `InService`, `Standby`, `Terminating:Wait`, `Warmed:Running` …
    pub lifecycle_state: String,
    /// This instance's, as DescribeAutoScalingInstances spells it: `HEALTHY` or `UNHEALTHY`.
    pub health_status: String,
    /// This instance's scale-in protection. It keeps the group from choosing the instance
    /// on scale-in, not from replacing it once it is Unhealthy.
    pub protected_from_scale_in: bool,
    /// The group carries [`ESCALATE_TAG`] = [`ESCALATE_TAG_VALUE`], which the shipped IAM
    /// policy requires for SetInstanceHealth.
    pub tagged_for_escalation: bool,
}

impl Group {
    fn of(instance: &AutoScalingInstanceDetails, group: &AutoScalingGroup) -> Group {
        let grace = group.health_check_grace_period().unwrap_or(0);
        Group {
            name: group
                .auto_scaling_group_name()
                .or(instance.auto_scaling_group_name())
                .unwrap_or_default()
                .to_owned(),
            health_check_grace_period: Duration::from_secs(u64::try_from(grace).unwrap_or(0)),
            health_check_type: group.health_check_type().unwrap_or("EC2").to_owned(),
            lifecycle_state: instance.lifecycle_state().unwrap_or_default().to_owned(),
            health_status: instance.health_status().unwrap_or_default().to_owned(),
            protected_from_scale_in: instance.protected_from_scale_in().unwrap_or(false),
            tagged_for_escalation: group.tags().iter().any(|t| {
                t.key() == Some(ESCALATE_TAG)
                    && t.value()
                        .is_some_and(|v| v.eq_ignore_ascii_case(ESCALATE_TAG_VALUE))
            }),
        }
    }
}

/// A client bound to this EC2 instance.
#[derive(Debug, Clone)]
pub struct AsgClient {
    client: aws_sdk_autoscaling::Client,
    instance_id: String,
}

impl AsgClient {
    /// Retries, timeouts and endpoints are the shared SDK configuration's
    /// ([`crate::aws::sdk_config`]: adaptive retries, as for ECS), so
    /// `AWS_ENDPOINT_URL_AUTO_SCALING` points this client at a test server.
    pub fn new(sdk: &aws_config::SdkConfig, instance_id: &str) -> Self {
        AsgClient {
            client: aws_sdk_autoscaling::Client::new(sdk),
            instance_id: instance_id.to_owned(),
        }
    }

    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// The group this instance is in, `None` when it is in none: one
    /// DescribeAutoScalingInstances, and one DescribeAutoScalingGroups when there is a group.
    pub async fn group(&self) -> Result<Option<Group>, AsgError> {
        let id = self.instance_id.as_str();
        let described = self
            .client
            .describe_auto_scaling_instances()
            .instance_ids(id)
            .send()
            .await
            .map_err(|e| call_error("DescribeAutoScalingInstances", id, e))?;
        // Asked for one id, the answer lists that instance or nothing; the id is checked
        // anyway, as a filter a server did not apply must not make another instance this one.
        let Some(me) = described
            .auto_scaling_instances()
            .iter()
            .find(|i| i.instance_id() == Some(id))
        else {
            return Ok(None);
        };
        let Some(name) = me.auto_scaling_group_name() else {
            return Ok(None);
        };
        let groups = self
            .client
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name)
            .send()
            .await
            .map_err(|e| call_error("DescribeAutoScalingGroups", id, e))?;
        let Some(group) = groups
            .auto_scaling_groups()
            .iter()
            .find(|g| g.auto_scaling_group_name() == Some(name))
        else {
            return Err(AsgError::GroupGone {
                instance_id: id.to_owned(),
                group: name.to_owned(),
            });
        };
        Ok(Some(Group::of(me, group)))
    }

    /// SetInstanceHealth(Unhealthy) for this instance: one call. With
    /// `respect_grace_period`, Auto Scaling ignores it while the instance is within the
    /// group's health-check grace period (ShouldRespectGracePeriod; AWS's default is to
    /// respect it).
    pub async fn set_unhealthy(&self, respect_grace_period: bool) -> Result<(), AsgError> {
        let id = self.instance_id.as_str();
        self.client
            .set_instance_health()
            .instance_id(id)
            .health_status("Unhealthy")
            .should_respect_grace_period(respect_grace_period)
            .send()
            .await
            .map_err(|e| call_error("SetInstanceHealth", id, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_autoscaling::types::TagDescription;

    use super::*;

    fn instance() -> AutoScalingInstanceDetails {
        AutoScalingInstanceDetails::builder()
            .instance_id("i-0123456789abcdef0")
            .auto_scaling_group_name("ecs-nodes")
            .lifecycle_state("InService")
            .health_status("HEALTHY")
            .protected_from_scale_in(true)
            .build()
    }

    fn tag(key: &str, value: &str) -> TagDescription {
        TagDescription::builder()
            .resource_id("ecs-nodes")
            .resource_type("auto-scaling-group")
            .key(key)
            .value(value)
            .propagate_at_launch(false)
            .build()
    }

    #[test]
    fn a_group_takes_its_settings_from_the_group_and_its_state_from_the_instance() {
        let group = AutoScalingGroup::builder()
            .auto_scaling_group_name("ecs-nodes")
            .health_check_grace_period(300)
            .health_check_type("EC2,ELB")
            .tags(tag("Name", "node"))
            .tags(tag(ESCALATE_TAG, "true"))
            .build();
        assert_eq!(
            Group::of(&instance(), &group),
            Group {
                name: "ecs-nodes".into(),
                health_check_grace_period: Duration::from_secs(300),
                health_check_type: "EC2,ELB".into(),
                lifecycle_state: "InService".into(),
                health_status: "HEALTHY".into(),
                protected_from_scale_in: true,
                tagged_for_escalation: true,
            }
        );
    }

    #[test]
    fn a_group_without_settings_has_the_api_defaults_and_no_escalation_tag() {
        let group = AutoScalingGroup::builder()
            .auto_scaling_group_name("ecs-nodes")
            .tags(tag(ESCALATE_TAG, "false"))
            .build();
        let g = Group::of(&instance(), &group);
        assert_eq!(g.health_check_grace_period, Duration::ZERO);
        assert_eq!(g.health_check_type, "EC2");
        assert!(!g.tagged_for_escalation);
        // A negative grace period (never sent by AWS) is no grace period, not a panic.
        let odd = AutoScalingGroup::builder()
            .auto_scaling_group_name("ecs-nodes")
            .health_check_grace_period(-5)
            .build();
        assert_eq!(
            Group::of(&instance(), &odd).health_check_grace_period,
            Duration::ZERO
        );
    }

    #[test]
    fn errors_name_the_call_and_the_instance() {
        let e = AsgError::Call {
            op: "SetInstanceHealth",
            instance_id: "i-0123456789abcdef0".into(),
            message: "AccessDenied".into(),
            throttled: true,
        };
        assert!(e.is_throttling());
        assert_eq!(
            e.to_string(),
            "Auto Scaling SetInstanceHealth for instance i-0123456789abcdef0: AccessDenied"
        );
        let gone = AsgError::GroupGone {
            instance_id: "i-1".into(),
            group: "ecs-nodes".into(),
        };
        assert!(!gone.is_throttling());
        assert!(gone.to_string().contains("ecs-nodes"));
    }
}
