//! Giving an instance back: only when IMDS does not say the Auto Scaling group is taking
//! it out of service (`autoscaling/target-lifecycle-state`), against moto's ECS with the
//! ECS agent's introspection API and IMDS served in their documented formats.

use diskguard_testkit as support;

use std::time::Duration;

use support::LoopFs;
use support::aws::ecs_cluster::{Cluster, aws_env_with_imds, cluster, config};
use support::aws::ecs_world::REGION;
use support::aws::imds::{Imds, InstanceIdentity};
use support::processes::daemon::Daemon;

/// A cluster, IMDS answering the lifecycle state `lifecycle` (or 404), and diskguard
/// having drained this instance past 90 %.
fn drained(lifecycle: Option<&str>) -> (Cluster, Imds, LoopFs, tempfile::TempDir, Daemon) {
    let c = cluster(10);
    let me = c.world.members()[0].clone();
    let imds = Imds::start(InstanceIdentity::new(&me.ec2_instance_id, REGION));
    imds.set_target_lifecycle_state(lifecycle);
    let mut fs = LoopFs::new(64);
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path(), fs.path(), &c.agent.url(), "");
    let env = aws_env_with_imds(&c.moto.endpoint(), &imds.endpoint());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut d = Daemon::start_with(&cfg, &env);
    d.wait_for("found this ECS container instance", Duration::from_secs(30));
    fs.fill_to_used_percent(91.0);
    c.wait("drained", Duration::from_secs(20), |(s, m)| {
        s == "DRAINING" && m.is_some()
    });
    (c, imds, fs, tmp, d)
}

#[test]
fn an_instance_the_group_is_terminating_stays_draining_after_the_disk_recovers() {
    let (c, imds, mut fs, _tmp, mut d) = drained(Some("InService"));
    // Scale-in picked this instance while it was drained.
    imds.set_target_lifecycle_state(Some("Terminated"));
    fs.remove_fill();
    let (_, line) = d.wait_for(
        "taking this instance out of service",
        Duration::from_secs(30),
    );
    assert!(line.contains("Terminated"), "{line}");
    d.drain_for(Duration::from_secs(4));
    assert_eq!(
        c.status().0,
        "DRAINING",
        "left DRAINING for the group to terminate:\n{}",
        d.seen.join("\n")
    );
    assert_eq!(
        d.count("taking this instance out of service"),
        1,
        "said once, not with every view"
    );

    d.stop();
}

#[test]
fn off_an_auto_scaling_group_the_instance_is_given_back() {
    // IMDS answers 404 for the lifecycle state outside a group: nothing says it leaves.
    let (c, _imds, mut fs, _tmp, d) = drained(None);
    fs.remove_fill();
    c.wait("ACTIVE again", Duration::from_secs(30), |(s, m)| {
        s == "ACTIVE" && m.is_none()
    });
    d.stop();
}
