//! Auto Scaling in moto, holding the ECS world's own instances: a launch template made from
//! those instances' image and type, a group with a given health-check grace period and the
//! tag the shipped IAM policy requires (`diskguard:escalate` = `true`, not propagated), and
//! the EC2 instances that [`EcsWorld`](super::ecs_world::EcsWorld) runs and registers
//! attached to it — so the group's instances are the cluster's container instances. Seeds
//! and reads go to moto directly; diskguard under test goes through the ECS peer, which
//! counts its Auto Scaling calls by action ([`EcsPeer::autoscaling_calls`]).
//!
//! moto 5.2 differs from the Auto Scaling API reference here (pinned by `tests/asg.rs`):
//! - SetInstanceHealth ignores `ShouldRespectGracePeriod` (its docstring says so), and an
//!   Unhealthy instance is never replaced: the health status is all a test can read.
//! - SetInstanceHealth for an instance in no group answers HTTP 500 (an internal error), not
//!   the documented `ValidationError`.
//! - DescribeAutoScalingInstances spells HealthStatus `Healthy` / `Unhealthy`;
//!   "AutoScalingInstanceDetails" documents `HEALTHY` / `UNHEALTHY` (DescribeAutoScalingGroups'
//!   "Instance" uses `Healthy` / `Unhealthy`). Compare without case.
//! - CreateAutoScalingGroup stores `HealthCheckGracePeriod` 0 as 300 (`period or 300`), where
//!   AWS keeps 0 (the API's default), so a grace period of 0 cannot be seeded.
//!
//! [`EcsPeer::autoscaling_calls`]: super::ecs_peer::EcsPeer::autoscaling_calls

use std::time::Duration;

use crate::aws::ecs_world::{Member, signed_post};
use crate::aws::moto::Moto;
use crate::processes::peer::HttpResponse;

/// The tag the shipped IAM policy conditions SetInstanceHealth on.
pub const ESCALATE_TAG: (&str, &str) = ("diskguard:escalate", "true");

/// moto's Auto Scaling and EC2, by address (no borrow of [`Moto`], as for `EcsWorld`).
#[derive(Debug, Clone)]
pub struct AutoScaling {
    addr: String,
}

impl AutoScaling {
    pub fn new(moto: &Moto) -> AutoScaling {
        AutoScaling {
            addr: format!("127.0.0.1:{}", moto.port()),
        }
    }

    /// Creates launch template and group `name` (min 0, max and desired the number of
    /// `members`, the escalation tag, `grace` as its HealthCheckGracePeriod — whole seconds,
    /// at least 1 s: see the moto notes above) and attaches `members`' EC2 instances.
    pub fn create_group(&self, name: &str, grace: Duration, members: &[Member]) {
        assert!(!members.is_empty(), "a group of no instances");
        assert!(
            grace.as_secs() > 0,
            "moto stores a grace period of 0 as 300 s; seed at least 1 s"
        );
        let first = &members[0].ec2_instance_id;
        let described = self.ec2_ok(&[("Action", "DescribeInstances"), ("InstanceId.1", first)]);
        let image = tag_text(&described, "imageId")
            .unwrap_or_else(|| panic!("DescribeInstances {first}: no imageId"));
        let zone = tag_text(&described, "availabilityZone")
            .unwrap_or_else(|| panic!("DescribeInstances {first}: no availabilityZone"));
        self.ec2_ok(&[
            ("Action", "CreateLaunchTemplate"),
            ("LaunchTemplateName", name),
            ("LaunchTemplateData.ImageId", &image),
            ("LaunchTemplateData.InstanceType", "m5.large"),
        ]);
        let size = members.len().to_string();
        let grace = grace.as_secs().to_string();
        self.ok(&[
            ("Action", "CreateAutoScalingGroup"),
            ("AutoScalingGroupName", name),
            ("LaunchTemplate.LaunchTemplateName", name),
            ("MinSize", "0"),
            ("MaxSize", &size),
            ("DesiredCapacity", "0"),
            ("HealthCheckGracePeriod", &grace),
            ("AvailabilityZones.member.1", &zone),
            ("Tags.member.1.Key", ESCALATE_TAG.0),
            ("Tags.member.1.Value", ESCALATE_TAG.1),
            ("Tags.member.1.PropagateAtLaunch", "false"),
        ]);
        // AttachInstances takes at most 20 ids a call (the API reference's limit).
        for chunk in members.chunks(20) {
            let keys: Vec<String> = (1..=chunk.len())
                .map(|i| format!("InstanceIds.member.{i}"))
                .collect();
            let mut params = vec![
                ("Action", "AttachInstances"),
                ("AutoScalingGroupName", name),
            ];
            params.extend(
                keys.iter()
                    .map(String::as_str)
                    .zip(chunk.iter().map(|m| m.ec2_instance_id.as_str())),
            );
            self.ok(&params);
        }
    }

    /// The group `instance_id` is in, `None` when it is in none.
    pub fn group_of(&self, instance_id: &str) -> Option<String> {
        tag_text(&self.describe_instance(instance_id), "AutoScalingGroupName")
    }

    /// `instance_id`'s HealthStatus as moto spells it (`Healthy` / `Unhealthy`), `None` when
    /// it is in no group.
    pub fn health_status(&self, instance_id: &str) -> Option<String> {
        tag_text(&self.describe_instance(instance_id), "HealthStatus")
    }

    fn describe_instance(&self, instance_id: &str) -> String {
        self.ok(&[
            ("Action", "DescribeAutoScalingInstances"),
            ("InstanceIds.member.1", instance_id),
        ])
    }

    /// One Auto Scaling query-protocol call to moto (`Version` is added), raw.
    pub fn call(&self, params: &[(&str, &str)]) -> HttpResponse {
        post(&self.addr, "autoscaling", "2011-01-01", params)
    }

    /// [`call`](Self::call), panicking (with moto's answer) unless it is 200.
    pub fn ok(&self, params: &[(&str, &str)]) -> String {
        let resp = self.call(params);
        if resp.status != 200 {
            panic!(
                "moto Auto Scaling {params:?} → {}: {}",
                resp.status,
                resp.text()
            );
        }
        resp.text()
    }

    fn ec2_ok(&self, params: &[(&str, &str)]) -> String {
        let resp = post(&self.addr, "ec2", "2016-11-15", params);
        if resp.status != 200 {
            panic!("moto EC2 {params:?} → {}: {}", resp.status, resp.text());
        }
        resp.text()
    }
}

fn post(addr: &str, service: &str, version: &str, params: &[(&str, &str)]) -> HttpResponse {
    let mut form = format!("Version={version}");
    for (k, v) in params {
        form.push_str(&format!("&{}={}", form_encode(k), form_encode(v)));
    }
    let ctype = "application/x-www-form-urlencoded; charset=utf-8";
    signed_post(addr, service, ctype, None, &form)
}

/// The text of the first `<tag>…</tag>` in an XML answer.
fn tag_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let rest = xml.split_once(&open)?.1;
    Some(rest.split_once(&close)?.0.to_owned())
}

/// application/x-www-form-urlencoded for one key or value.
fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
