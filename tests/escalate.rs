//! `[escalate]` against the real peers: moto (ECS, EC2, Auto Scaling) behind the ECS peer,
//! which relays Auto Scaling and counts it by action; a private dockerd on a loop-mounted
//! ext4; the ECS agent's introspection API as a local mock; and `diskguard run`.
//!
//! - A node whose disk is held above `drain` by a named volume no task uses: diskguard
//!   drains it, has nothing to reclaim, and after `escalate.after` asks its Auto Scaling
//!   group to replace it (SetInstanceHealth Unhealthy) exactly once, naming the volume.
//! - Never for an instance someone else drained (no `diskguard.drained-at`).
//! - With the cluster's budget taken by an instance diskguard drained and escalated that
//!   is not yet terminated, a second full node does not drain and says why.
//!
//! Run as root after `scripts/test-deps.sh` (moto from its venv, dockerd, loop devices);
//! without them the harness fails and says what to install.

use diskguard_testkit as support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::aws::asg::AutoScaling;
use support::aws::ecs_cluster::{Cluster, MARK, aws_env, cluster, config, daemon};
use support::docker::images::docker_ok;
use support::docker::world::{MIB, used_percent};
use support::processes::daemon::Daemon;
use support::processes::peer::{free_port, http_tcp};
use support::{Dockerd, LoopFs, LoopFsOptions};

const GROUP: &str = "ecs-nodes";
/// `escalate.after` in these tests (15 min by default).
const AFTER: Duration = Duration::from_secs(5);
const VOLUME: &str = "pgdata";

/// The daemon's AWS environment: ECS and Auto Scaling both through the ECS peer in front of
/// moto (the peer relays Auto Scaling and counts it), no IMDS.
fn env(c: &Cluster) -> Vec<(&'static str, String)> {
    let mut env = aws_env(&c.moto.endpoint());
    env.push(("AWS_ENDPOINT_URL_AUTO_SCALING", c.moto.endpoint()));
    env
}

/// A config for diskguard on the private dockerd, ECS through the introspection mock,
/// `escalate.after` = [`AFTER`]; `extra` goes at the top level (before any table).
fn docker_config(dir: &Path, d: &Dockerd, c: &Cluster, extra: &str) -> PathBuf {
    let path = dir.join("diskguard.toml");
    std::fs::write(
        &path,
        format!(
            "{extra}\n[sample]\ninterval = \"500ms\"\ninventory_interval = \"2s\"\n\
             [thresholds]\nrecover_after = \"3s\"\n\
             [escalate]\nafter = \"{}s\"\n\
             [docker]\nhost = {:?}\nroot = {:?}\n\
             [etcd]\nenabled = false\n[cloudwatch]\nenabled = false\n\
             [ecs]\nintrospection_url = {:?}\n",
            AFTER.as_secs(),
            d.docker_host(),
            d.data_root().display().to_string(),
            c.agent.url()
        ),
    )
    .expect("write config");
    path
}

fn start(c: &Cluster, cfg: &Path) -> Daemon {
    let env = env(c);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut d = Daemon::start_with(cfg, &env);
    d.wait_for("found this ECS container instance", Duration::from_secs(30));
    d.said("Docker inventory read", Duration::from_secs(30));
    d
}

/// Creates named volume [`VOLUME`] and writes into its `_data` (as a container would, no
/// container left afterwards) until Docker's disk is at `pct` % or more.
fn fill_volume(d: &Dockerd, pct: f64) -> u64 {
    docker_ok(d, &["volume", "create", VOLUME]);
    let data = d.data_root().join("volumes").join(VOLUME).join("_data");
    assert!(data.is_dir(), "{} after volume create", data.display());
    let mut f = std::fs::File::create(data.join("blob")).expect("volume file");
    let chunk = vec![0xa5u8; MIB as usize];
    let mut written = 0u64;
    while used_percent(d) < pct {
        for _ in 0..4 {
            f.write_all(&chunk).expect("writing into the volume");
            written += MIB;
        }
        f.sync_all().expect("sync");
    }
    written
}

/// The `diskguard_escalations*` sample of the Prometheus endpoint at `listen`.
fn escalations(listen: &str) -> f64 {
    let text = http_tcp(listen, "GET", "/metrics", &[], b"")
        .expect("/metrics")
        .text();
    let line = text
        .lines()
        .find(|l| l.starts_with("diskguard_escalations"))
        .unwrap_or_else(|| panic!("no diskguard_escalations sample in:\n{text}"));
    line.rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no value in {line}"))
}

/// Seconds, one decimal.
fn secs(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64())
}

/// Cluster of 10 (this host the first), all in Auto Scaling group [`GROUP`], a private
/// dockerd on a 256 MiB ext4 and diskguard on it, its Prometheus endpoint at `listen`.
fn node(listen: &str) -> (Cluster, AutoScaling, Dockerd, tempfile::TempDir, Daemon) {
    let c = cluster(10);
    let asg = AutoScaling::new(&c.moto);
    asg.create_group(GROUP, Duration::from_secs(60), c.world.members());
    let d = Dockerd::start_on_loopfs(&LoopFsOptions::new(256));
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = docker_config(
        tmp.path(),
        &d,
        &c,
        &format!("[prometheus]\nlisten = {listen:?}"),
    );
    let daemon = start(&c, &cfg);
    (c, asg, d, tmp, daemon)
}

#[test]
fn a_drained_node_held_full_by_an_unused_volume_is_set_unhealthy_once() {
    let listen = format!("127.0.0.1:{}", free_port());
    let (c, asg, d, _tmp, mut dg) = node(&listen);
    let me = c.world.members()[0].ec2_instance_id.clone();
    let neighbour = c.world.members()[1].ec2_instance_id.clone();
    assert_eq!(asg.health_status(&me).as_deref(), Some("Healthy"));
    // What moto says of this instance when nothing runs on it: the facts the escalation
    // reads (task counts, the EC2 instance id).
    let raw = c.world.ecs_ok(
        "DescribeContainerInstances",
        &serde_json::json!({ "cluster": c.world.cluster(), "containerInstances": [c.me()] }),
    );
    let ci = &raw["containerInstances"][0];
    println!(
        "moto: runningTasksCount={} pendingTasksCount={} ec2InstanceId={}",
        ci["runningTasksCount"], ci["pendingTasksCount"], ci["ec2InstanceId"]
    );

    let filled = Instant::now();
    let bytes = fill_volume(&d, 92.0);
    let pct = used_percent(&d);
    println!(
        "wrote {} MiB into volume {VOLUME}: Docker's disk at {pct:.1} % in {} s",
        bytes / MIB,
        secs(filled.elapsed())
    );
    assert!(pct < 95.0, "below critical: {pct:.1} %");

    c.wait(
        "drained with the mark",
        Duration::from_secs(30),
        |(s, m)| s == "DRAINING" && m.is_some(),
    );
    let drained = filled.elapsed();
    let (_, left) = dg.wait_for(
        "before asking for a replacement",
        AFTER + Duration::from_secs(90),
    );
    let (_, line) = dg.wait_for(
        "Escalation: drained, no task left and still full",
        Duration::from_secs(30),
    );
    let escalated = filled.elapsed();
    println!(
        "fill → DRAINING {} s, fill → Escalation line {} s (after = {} s)",
        secs(drained),
        secs(escalated),
        AFTER.as_secs()
    );
    println!("{left}\n{line}");
    assert!(
        left.contains(&format!("volume {VOLUME} ")),
        "the leftovers name the volume: {left}"
    );
    assert!(line.contains(&me) && line.contains(GROUP), "{line}");
    assert!(
        escalated >= drained + AFTER,
        "not before escalate.after: drained at {drained:?}, escalated at {escalated:?}"
    );

    let peer = c.moto.ecs();
    assert_eq!(peer.autoscaling_calls("SetInstanceHealth"), 1);
    assert_eq!(asg.health_status(&me).as_deref(), Some("Unhealthy"));
    assert_eq!(
        asg.health_status(&neighbour).as_deref(),
        Some("Healthy"),
        "only this instance"
    );

    // moto never replaces it: the disk stays full, the instance drained. Once per episode.
    dg.drain_for(Duration::from_secs(15));
    println!(
        "Auto Scaling calls after 15 s more: {:?}",
        peer.autoscaling_counts()
    );
    assert_eq!(
        peer.autoscaling_calls("SetInstanceHealth"),
        1,
        "exactly once; the daemon said:\n{}",
        dg.seen.join("\n")
    );
    assert_eq!(dg.count("Escalation: drained"), 1);
    assert_eq!(dg.count("before asking for a replacement"), 1);
    assert_eq!(c.status().0, "DRAINING", "left DRAINING for the group");
    assert_eq!(escalations(&listen), 1.0, "the Escalations counter");
    dg.stop();
}

#[test]
fn never_for_an_instance_drained_by_hand() {
    let listen = format!("127.0.0.1:{}", free_port());
    let (c, asg, d, _tmp, mut dg) = node(&listen);
    let me = c.world.members()[0].ec2_instance_id.clone();
    // An operator drained it: no diskguard.drained-at.
    c.world.set_status(&[&c.me()], "DRAINING");
    fill_volume(&d, 92.0);
    let filled = Instant::now();
    dg.drain_for(AFTER + Duration::from_secs(15));
    let peer = c.moto.ecs();
    println!(
        "{} s after the fill: Auto Scaling calls {:?}",
        secs(filled.elapsed()),
        peer.autoscaling_counts()
    );
    assert_eq!(
        peer.autoscaling_calls("SetInstanceHealth"),
        0,
        "the daemon said:\n{}",
        dg.seen.join("\n")
    );
    assert_eq!(dg.count("Escalation:"), 0);
    assert_eq!(dg.count("before asking for a replacement"), 0);
    assert!(
        dg.count("DRAINING by someone else's hand") >= 1,
        "says whose drain it is; the daemon said:\n{}",
        dg.seen.join("\n")
    );
    assert_eq!(asg.health_status(&me).as_deref(), Some("Healthy"));
    assert_eq!(c.status(), ("DRAINING".to_owned(), None), "left alone");
    assert_eq!(escalations(&listen), 0.0, "the Escalations counter");
    dg.stop();
}

#[test]
fn with_the_budget_taken_by_an_escalated_instance_a_full_node_waits_and_says_why() {
    let c = cluster(10);
    let asg = AutoScaling::new(&c.moto);
    asg.create_group(GROUP, Duration::from_secs(60), c.world.members());
    // Another instance diskguard drained and escalated, not yet terminated.
    let other = c.world.members()[1].clone();
    c.world
        .put_attribute(&other.arn, MARK, "2026-12-05T04:00:00Z");
    c.world.set_status(&[&other.arn], "DRAINING");
    asg.ok(&[
        ("Action", "SetInstanceHealth"),
        ("InstanceId", &other.ec2_instance_id),
        ("HealthStatus", "Unhealthy"),
    ]);

    let mut fs = LoopFs::new(64);
    let tmp = tempfile::tempdir().expect("tempdir");
    // 10 % of 10 instances: a budget of 1, taken.
    let cfg = config(
        tmp.path(),
        fs.path(),
        &c.agent.url(),
        &format!("[escalate]\nafter = \"{}s\"", AFTER.as_secs()),
    );
    let text = std::fs::read_to_string(&cfg).expect("read config");
    std::fs::write(&cfg, format!("{text}max_draining_percent = 10\n")).expect("write config");
    let endpoint = c.moto.endpoint();
    let mut dg = daemon(
        &c,
        &cfg,
        &endpoint,
        &[("AWS_ENDPOINT_URL_AUTO_SCALING", &endpoint)],
    );

    fs.fill_to_used_percent(91.0);
    let filled = Instant::now();
    let (_, line) = dg.wait_for("would drain, but", Duration::from_secs(20));
    println!("{} s after the fill: {line}", secs(filled.elapsed()));
    // The other instance carries diskguard's mark, so it counts as one of diskguard's drains:
    // the claim path says so; an unmarked one would be counted from ListContainerInstances.
    assert!(
        line.contains("(2 of diskguard's drains and claims, room for 1)")
            || line.contains("1 of the cluster's instances are already DRAINING"),
        "{line}"
    );
    dg.drain_for(AFTER + Duration::from_secs(5));
    assert_eq!(c.status(), ("ACTIVE".to_owned(), None), "did not drain");
    let peer = c.moto.ecs();
    assert_eq!(peer.autoscaling_calls("SetInstanceHealth"), 0);
    assert_eq!(dg.count("Escalation:"), 0);
    assert_eq!(dg.count("would drain, but"), 1, "said once");
    dg.stop();
}
