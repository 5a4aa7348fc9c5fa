//! The cascade diskguard exists to stop, on three simulated nodes: three 2 GiB loop
//! filesystems, three private dockerds, three daemons, one moto cluster and the
//! CloudWatch peer. A "bad task" writing ~100 MB/s starts on node 1, is evicted, and is
//! "rescheduled" on node 2, then node 3, as ECS would. No canary may see ENOSPC, no disk
//! may reach 100 %, and the task family must be named across the fleet.

use diskguard_testkit as support;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use support::aws::cwpeer::{CwPeer, eventually};
use support::aws::ecs_agent::{AgentMode, EcsAgent};
use support::aws::ecs_cluster::{MARK, aws_env};
use support::aws::ecs_world::EcsWorld;
use support::docker::images::{ContainerOpts, import_image, run_container};
use support::fs::watch::{PeakWatch, container_state};
use support::processes::daemon::Daemon;
use support::{Dockerd, LoopFsOptions, Moto};

const MIB: u64 = 1 << 20;
const NS: &str = "DiskGuardCascade";
const FAMILY: &str = "bad-task";
/// Over 100 MB/s into its own layer: 16 MiB, a short pause, again.
const BAD_TASK: &str = "i=0; while true; do dd if=/dev/zero of=/w$i bs=1M count=16 2>/dev/null; i=$((i+1)); usleep 60000; done";
/// A small append every 100 ms; exits 1 the first time a write fails.
const CANARY: &str = "while echo alive >> /canary.log; do usleep 100000; done; exit 1";

struct Node {
    d: Dockerd,
    daemon: Daemon,
    config: PathBuf,
    canary: String,
    image: String,
    _agent: EcsAgent,
    _dir: tempfile::TempDir,
}

fn ecs_task(opts: ContainerOpts, family: &str, n: usize) -> ContainerOpts {
    opts.label("com.amazonaws.ecs.task-definition-family", family)
        .label(
            "com.amazonaws.ecs.task-arn",
            &format!("arn:aws:ecs:us-east-1:123456789012:task/prod/{family}-{n:04}"),
        )
        .label("com.amazonaws.ecs.container-name", "main")
}

/// A node at ~70 % with a canary running, and diskguard on defaults but for where things
/// are, `extra` top-level keys, and CloudWatch every 5 s (not 60) so the test need not
/// wait minutes for the Evictions datapoints.
fn node(world: &EcsWorld, moto: &Moto, peer: &CwPeer, arn: &str, top: &str) -> Node {
    let mut d = Dockerd::start_on_loopfs(&LoopFsOptions::new(2048));
    let image = import_image(&d, "app:v1", MIB);
    let canary = run_container(
        &d,
        &image,
        &ecs_task(ContainerOpts::named("canary"), "canary", 0).shell(CANARY),
    );
    d.loopfs_mut()
        .expect("loop fs")
        .allocate_to_used_percent(70.0);
    let agent = EcsAgent::start(AgentMode::healthy(world.cluster(), arn));
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("diskguard.toml");
    std::fs::write(
        &config,
        format!(
            "{top}\n[docker]\nhost = {:?}\nroot = {:?}\n[etcd]\nenabled = false\n\
             [ecs]\nintrospection_url = {:?}\n\
             [cloudwatch]\nenabled = true\nnamespace = \"{NS}\"\ninterval = \"5s\"\n",
            d.docker_host(),
            d.data_root().display().to_string(),
            agent.url()
        ),
    )
    .expect("config");
    let mut env = aws_env(&moto.endpoint());
    env.push(("AWS_ENDPOINT_URL_CLOUDWATCH", peer.endpoint()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut daemon = Daemon::start_with(&config, &env);
    daemon.wait_for("found this ECS container instance", Duration::from_secs(30));
    daemon.wait_for("Docker inventory read", Duration::from_secs(30));
    Node {
        d,
        daemon,
        config,
        canary,
        image,
        _agent: agent,
        _dir: dir,
    }
}

#[test]
fn a_bad_task_rescheduled_across_three_nodes_crashes_none_and_is_named_everywhere() {
    let moto = Moto::start();
    let world = EcsWorld::seed(&moto, "prod", 10);
    let peer = CwPeer::start();
    let began = SystemTime::now();
    let arns: Vec<String> = world.members()[..3].iter().map(|m| m.arn.clone()).collect();
    let mut nodes: Vec<Node> = arns
        .iter()
        .map(|a| node(&world, &moto, &peer, a, ""))
        .collect();

    for (i, n) in nodes.iter_mut().enumerate() {
        // The task lands here: ECS started it after the previous node stopped it.
        let watch = PeakWatch::crossing(n.d.data_root().to_owned(), 80.0);
        let bad = run_container(
            &n.d,
            &n.image,
            &ecs_task(ContainerOpts::named("bad"), FAMILY, i + 1).shell(BAD_TASK),
        );
        let (_, line) = n
            .daemon
            .wait_for("evicting container bad", Duration::from_secs(60));
        assert!(
            line.contains(FAMILY) && line.contains("task_arn="),
            "{line}"
        );
        let (stopped, _) = n
            .daemon
            .wait_for("evicted container bad", Duration::from_secs(30));
        std::thread::sleep(Duration::from_secs(1));
        let seen = watch.watched();
        let peak = seen.peak;
        let rate = line
            .split("bytes_per_second=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|r| r.parse::<f64>().ok())
            .unwrap_or(0.0);
        let reaction = seen
            .crossed
            .and_then(|c| stopped.duration_since(c).ok())
            .map_or(f64::NAN, |d| d.as_secs_f64());
        println!(
            "node {}: writer at {:.0} MB/s; crossing prune_start → stopped and removed in {reaction:.2} s; peak {peak:.1} %",
            i + 1,
            rate / 1e6
        );
        assert!(
            peak < 100.0,
            "node {} reached {peak:.1} %; the daemon said:\n{}",
            i + 1,
            n.daemon.seen.join("\n")
        );
        assert_eq!(container_state(&n.d, &bad), "gone");
        assert_eq!(
            container_state(&n.d, &n.canary),
            "running",
            "node {}: the canary never failed a write",
            i + 1
        );
    }

    // Every node names the family on its container instance …
    for arn in &arns {
        let v = world.describe(arn);
        assert_eq!(v.attribute("diskguard.culprit"), Some(FAMILY), "{arn}");
        assert_eq!(v.status, "ACTIVE", "the eviction was enough: no drain");
        assert_eq!(v.attribute(MARK), None);
    }
    // … the Evictions metric counts them by family across the fleet …
    let counted = eventually(Duration::from_secs(30), || {
        let points = peer.statistics(
            NS,
            "Evictions",
            &[("ClusterName", "prod"), ("TaskFamily", FAMILY)],
            began,
            60,
        );
        points.iter().filter_map(|p| p["Sum"].as_f64()).sum::<f64>() >= 2.0
    });
    assert!(
        counted,
        "Evictions for {FAMILY} from at least two daemons: {:#?}",
        peer.list_metrics(NS)
    );
    // … and `status` on node 3 lists the family among the cluster's culprits.
    let third = &nodes[2];
    let mut env = aws_env(&moto.endpoint());
    env.push(("AWS_ENDPOINT_URL_CLOUDWATCH", peer.endpoint()));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_diskguard"))
        .arg("--config")
        .arg(&third.config)
        .args(["status", "--json"])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("status runs");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    let culprits = json["ecs"]["culprits"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        culprits
            .iter()
            .any(|c| c["task_family"] == FAMILY && c["instances"].as_u64() >= Some(3)),
        "status names the family: {}",
        serde_json::to_string_pretty(&json["ecs"]).unwrap_or_default()
    );
    for n in nodes {
        n.daemon.stop();
    }
}

#[test]
fn observe_mode_says_what_it_would_evict_and_drain_and_touches_nothing() {
    let moto = Moto::start();
    let world = EcsWorld::seed(&moto, "prod", 10);
    let peer = CwPeer::start();
    let arn = world.members()[0].arn.clone();
    let mut n = node(&world, &moto, &peer, &arn, "mode = \"observe\"");
    // Fast, but bounded: 400 MiB, to ~95 % of the disk, then quiet.
    let bounded = "i=0; while [ $i -lt 40 ]; do dd if=/dev/zero of=/w$i bs=1M count=10 2>/dev/null; i=$((i+1)); usleep 80000; done; sleep 3600";
    let bad = run_container(
        &n.d,
        &n.image,
        &ecs_task(ContainerOpts::named("bad"), FAMILY, 1).shell(bounded),
    );
    let (_, line) = n.daemon.wait_for(
        "observe mode: would evict container bad",
        Duration::from_secs(60),
    );
    assert!(line.contains(FAMILY), "{line}");
    n.daemon
        .wait_for("observe mode: would drain", Duration::from_secs(60));
    assert_eq!(container_state(&n.d, &bad), "running", "nothing stopped");
    let v = world.describe(&arn);
    assert_eq!(v.status, "ACTIVE", "nothing drained");
    assert_eq!(v.attribute(MARK), None);
    assert_eq!(v.attribute("diskguard.culprit"), None, "nothing named");
    n.daemon.stop();
}
