//! diskguard's Auto Scaling client (`src/asg.rs`) against moto, through the ECS peer that the
//! daemon is pointed at (which relays Auto Scaling and counts it by action): the group of an
//! instance of the ECS world, with its grace period; no group for an instance outside it;
//! and SetInstanceHealth(Unhealthy) that moto then reports, sent exactly once. Also pins the
//! moto behaviour `tests/support/aws/asg.rs` lists where it differs from the API reference.
//! Run as root after `scripts/test-deps.sh` (moto comes from its venv).

use diskguard_testkit as support;

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_autoscaling::config::{Credentials, Region};
use diskguard::asg::{AsgClient, AsgError};
use support::Moto;
use support::aws::asg::AutoScaling;
use support::aws::ecs_world::{EcsWorld, REGION};

/// The SDK configuration the daemon would load from `AWS_ENDPOINT_URL_AUTO_SCALING`,
/// `AWS_REGION` and static keys: every call to `endpoint`, no IMDS.
fn sdk(rt: &tokio::runtime::Runtime, endpoint: &str) -> aws_config::SdkConfig {
    rt.block_on(
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
            .endpoint_url(endpoint)
            .load(),
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// moto with a cluster of three instances; the first two in group `ecs-nodes` (grace
/// period 120 s), the third in none.
fn world() -> (Moto, EcsWorld, AutoScaling) {
    let moto = Moto::start();
    let world = EcsWorld::seed(&moto, "prod", 3);
    let asg = AutoScaling::new(&moto);
    asg.create_group("ecs-nodes", Duration::from_secs(120), &world.members()[..2]);
    (moto, world, asg)
}

#[test]
fn group_finds_the_instances_group_with_its_grace_period_in_two_calls() {
    let (moto, world, asg) = world();
    let rt = runtime();
    let sdk = sdk(&rt, &moto.endpoint());
    let me = &world.members()[0].ec2_instance_id;
    assert_eq!(asg.group_of(me).as_deref(), Some("ecs-nodes"));

    let client = AsgClient::new(&sdk, me);
    assert_eq!(client.instance_id(), me);
    let group = rt
        .block_on(client.group())
        .expect("group()")
        .unwrap_or_else(|| panic!("{me} is in ecs-nodes"));
    assert_eq!(group.name, "ecs-nodes");
    assert_eq!(group.health_check_grace_period, Duration::from_secs(120));
    assert_eq!(group.health_check_type, "EC2");
    assert_eq!(group.lifecycle_state, "InService");
    assert!(group.health_status.eq_ignore_ascii_case("healthy"));
    assert!(!group.protected_from_scale_in);
    assert!(
        group.tagged_for_escalation,
        "the seeded group carries the tag"
    );

    let peer = moto.ecs();
    assert_eq!(peer.autoscaling_calls("DescribeAutoScalingInstances"), 1);
    assert_eq!(peer.autoscaling_calls("DescribeAutoScalingGroups"), 1);
    assert_eq!(peer.autoscaling_counts().values().sum::<u32>(), 2);
    assert_eq!(
        peer.total_calls(),
        0,
        "no ECS call, and none counted as ECS"
    );
}

#[test]
fn an_instance_in_no_group_has_none_in_one_call() {
    let (moto, world, asg) = world();
    let rt = runtime();
    let sdk = sdk(&rt, &moto.endpoint());
    let outside = &world.members()[2].ec2_instance_id;
    assert_eq!(asg.group_of(outside), None);

    let client = AsgClient::new(&sdk, outside);
    assert_eq!(rt.block_on(client.group()).expect("group()"), None);
    let peer = moto.ecs();
    assert_eq!(peer.autoscaling_calls("DescribeAutoScalingInstances"), 1);
    assert_eq!(
        peer.autoscaling_counts().values().sum::<u32>(),
        1,
        "no DescribeAutoScalingGroups without a group"
    );
}

#[test]
fn set_unhealthy_makes_moto_report_the_instance_unhealthy_with_one_call() {
    let (moto, world, asg) = world();
    let rt = runtime();
    let sdk = sdk(&rt, &moto.endpoint());
    let (me, neighbour) = (
        &world.members()[0].ec2_instance_id,
        &world.members()[1].ec2_instance_id,
    );
    assert_eq!(asg.health_status(me).as_deref(), Some("Healthy"));

    let client = AsgClient::new(&sdk, me);
    rt.block_on(client.set_unhealthy(true))
        .expect("SetInstanceHealth");
    assert_eq!(asg.health_status(me).as_deref(), Some("Unhealthy"));
    assert_eq!(
        asg.health_status(neighbour).as_deref(),
        Some("Healthy"),
        "only this instance"
    );
    assert_eq!(moto.ecs().autoscaling_calls("SetInstanceHealth"), 1);
    assert_eq!(moto.ecs().autoscaling_counts().values().sum::<u32>(), 1);

    // Read back through the client, as an escalation would before acting again.
    let group = rt
        .block_on(client.group())
        .expect("group()")
        .expect("still in its group: moto never replaces it");
    assert!(group.health_status.eq_ignore_ascii_case("unhealthy"));
    assert_eq!(moto.ecs().autoscaling_calls("SetInstanceHealth"), 1);
}

#[test]
fn a_failed_call_names_the_call_and_the_instance() {
    let (moto, world, _asg) = world();
    let rt = runtime();
    let sdk = sdk(&rt, &moto.endpoint());
    // moto answers 500 for an instance in no group (AWS: ValidationError); the SDK retries
    // a 500, so the peer sees more than one request, and the error is a call error either way.
    let outside = &world.members()[2].ec2_instance_id;
    let e = rt
        .block_on(AsgClient::new(&sdk, outside).set_unhealthy(false))
        .expect_err("an instance in no group cannot be set Unhealthy");
    let text = e.to_string();
    assert!(
        text.starts_with(&format!(
            "Auto Scaling SetInstanceHealth for instance {outside}: "
        )),
        "{text}"
    );
    assert!(matches!(e, AsgError::Call { .. }) && !e.is_throttling());
    assert!(moto.ecs().autoscaling_calls("SetInstanceHealth") >= 1);
}
