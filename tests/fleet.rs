//! The drain budget across a fleet: five diskguards whose disks cross `drain` in the same
//! second, one moto cluster of ten instances, `max_draining_percent = 10` — exactly one
//! drains, the other four count a suppression; one pushed past `critical` drains too.
//! Run five times.

use diskguard_testkit as support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::aws::ecs_agent::{AgentMode, EcsAgent};
use support::aws::ecs_cluster::{MARK, aws_env};
use support::aws::ecs_world::EcsWorld;
use support::processes::daemon::Daemon;
use support::{LoopFs, Moto};

/// Log lines by which an instance says it counted a suppression.
const SUPPRESSED: [&str; 3] = [
    "would drain, but",
    "other instances claimed the cluster's drain budget first",
    "more instances drained at once than the cluster's budget allows",
];

struct Node {
    arn: String,
    fs: LoopFs,
    daemon: Daemon,
    _agent: EcsAgent,
    _dir: tempfile::TempDir,
}

impl Node {
    fn suppressions(&self) -> usize {
        self.daemon
            .seen
            .iter()
            .filter(|l| SUPPRESSED.iter().any(|s| l.contains(s)))
            .count()
    }
}

fn node(world: &EcsWorld, moto: &Moto, arn: &str) -> Node {
    let agent = EcsAgent::start(AgentMode::healthy(world.cluster(), arn));
    let fs = LoopFs::new(64);
    let dir = tempfile::tempdir().expect("tempdir");
    let config: PathBuf = dir.path().join("diskguard.toml");
    std::fs::write(
        &config,
        format!(
            "[sample]\ninterval = \"500ms\"\n\
             [thresholds]\nrecover_after = \"2s\"\n\
             [docker]\nroot = {:?}\nhost = \"unix:///nonexistent/docker.sock\"\n\
             [etcd]\nenabled = false\n[cloudwatch]\nenabled = false\n\
             [ecs]\nintrospection_url = {:?}\nmax_draining_percent = 10\n",
            fs.path().display().to_string(),
            agent.url()
        ),
    )
    .expect("config");
    let env = aws_env(&moto.endpoint());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut daemon = Daemon::start_with(&config, &env);
    daemon.wait_for("found this ECS container instance", Duration::from_secs(30));
    daemon.wait_for("ECS container instance is ACTIVE", Duration::from_secs(30));
    Node {
        arn: arn.to_owned(),
        fs,
        daemon,
        _agent: agent,
        _dir: dir,
    }
}

/// (instance ARN, has diskguard's mark) of every DRAINING instance.
fn draining(world: &EcsWorld) -> Vec<(String, bool)> {
    world
        .describe_all()
        .into_iter()
        .filter(|v| v.status == "DRAINING")
        .map(|v| {
            let marked = v.attribute(MARK).is_some();
            (v.arn, marked)
        })
        .collect()
}

#[test]
fn five_instances_crossing_together_drain_only_the_budget_five_times_over() {
    let moto = Moto::start();
    let world = EcsWorld::seed(&moto, "prod", 10);
    let arns: Vec<String> = world.members()[..5].iter().map(|m| m.arn.clone()).collect();
    let mut nodes: Vec<Node> = arns.iter().map(|a| node(&world, &moto, a)).collect();

    for round in 1..=5 {
        let before: Vec<usize> = nodes.iter().map(Node::suppressions).collect();
        // All five past `drain` (90 %) within the same second.
        let crossed = Instant::now();
        for n in &mut nodes {
            n.fs.allocate_to_used_percent(91.0);
        }
        assert!(
            crossed.elapsed() < Duration::from_secs(1),
            "crossed together"
        );
        // Watch the cluster for 30 s (the first round) or until settled and 8 s more.
        let watch = if round == 1 {
            Duration::from_secs(30)
        } else {
            Duration::from_secs(12)
        };
        let mut most = 0;
        while crossed.elapsed() < watch {
            let now = draining(&world);
            assert!(
                now.iter().all(|(_, marked)| *marked),
                "only diskguard drains here"
            );
            most = most.max(now.len());
            for n in &mut nodes {
                n.daemon.drain_for(Duration::from_millis(20));
            }
        }
        let now = draining(&world);
        let counted: usize = nodes
            .iter()
            .zip(&before)
            .map(|(n, b)| n.suppressions() - b)
            .sum();
        println!(
            "round {round}: {} DRAINING after {watch:?}, at most {most} at once, {counted} suppressions",
            now.len()
        );
        assert_eq!(
            now.len(),
            1,
            "round {round}: exactly the budget drains: {now:?}"
        );
        assert_eq!(
            counted, 4,
            "round {round}: the other four counted a suppression"
        );
        assert!(
            most <= 1,
            "round {round}: never more than the budget below critical ({most})"
        );

        // One of the suppressed ones past `critical` drains past the budget.
        let winner = now[0].0.clone();
        let loser = nodes.iter_mut().find(|n| n.arn != winner).expect("a loser");
        loser.fs.allocate_to_used_percent(96.0);
        loser.daemon.wait_for(
            "past the cluster's drain budget if need be",
            Duration::from_secs(20),
        );
        assert_eq!(draining(&world).len(), 2, "critical overrides the budget");

        // Everyone recovers; the two drained instances are given back.
        for n in &mut nodes {
            n.fs.remove_fill();
        }
        let start = Instant::now();
        while !draining(&world).is_empty() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "given back after recovery"
            );
            for n in &mut nodes {
                n.daemon.drain_for(Duration::from_millis(50));
            }
        }
        // Recovery is past recover_after; wait for the episode to end on every node.
        std::thread::sleep(Duration::from_secs(3));
    }
    for n in nodes {
        n.daemon.stop();
    }
}
