//! What diskguard costs the account's ECS request quota, counted call by call through the
//! ECS-faithful peer in front of moto (pages of 100, ListAttributes by name, token buckets
//! with ECS's documented figures): idle reads that do not grow with the cluster, a drain
//! decision in a bounded number of calls, decisions on a fresh read of this instance, and
//! drains that survive throttling without ever being decided on a failed read.

use diskguard_testkit as support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::LoopFs;
use support::Moto;
use support::aws::ecs_agent::{AgentMode, EcsAgent};
use support::aws::ecs_cluster::{MARK, aws_env, config};
use support::aws::ecs_peer::EcsPeer;
use support::aws::ecs_world::EcsWorld;
use support::processes::daemon::Daemon;

/// moto with `n` registered instances behind the shim, this host the first, and a daemon
/// watching a loop filesystem.
struct Scale {
    world: EcsWorld,
    fs: LoopFs,
    daemon: Daemon,
    _agent: EcsAgent,
    moto: Moto,
    _dir: tempfile::TempDir,
    _config: PathBuf,
}

impl Scale {
    fn start(n: usize, extra: &str) -> Scale {
        let moto = Moto::start();
        let world = EcsWorld::seed(&moto, "prod", n);
        let me = world.members()[0].arn.clone();
        let agent = EcsAgent::start(AgentMode::healthy(world.cluster(), &me));
        let fs = LoopFs::new(64);
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config(dir.path(), fs.path(), &agent.url(), extra);
        let env = aws_env(&moto.endpoint());
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut daemon = Daemon::start_with(&cfg, &env);
        daemon.wait_for("found this ECS container instance", Duration::from_secs(30));
        Scale {
            world,
            fs,
            daemon,
            _agent: agent,
            moto,
            _dir: dir,
            _config: cfg,
        }
    }

    /// ECS as the daemon sees it: counts, quotas.
    fn shim(&self) -> &EcsPeer {
        self.moto.ecs()
    }

    fn me(&self) -> String {
        self.world.members()[0].arn.clone()
    }

    fn status(&self) -> (String, Option<String>) {
        let v = self.world.describe(&self.me());
        (v.status.clone(), v.attribute(MARK).map(str::to_owned))
    }

    /// Polls moto until `want` holds; the time it took.
    fn wait(
        &mut self,
        what: &str,
        limit: Duration,
        want: impl Fn(&(String, Option<String>)) -> bool,
    ) -> Duration {
        let start = Instant::now();
        loop {
            let now = self.status();
            if want(&now) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < limit,
                "{what}: still {now:?} after {limit:?}; calls {:?}; the daemon said:\n{}",
                self.shim().counts(),
                self.daemon.seen.join("\n")
            );
            self.daemon.drain_for(Duration::from_millis(100));
        }
    }

    /// Waits for the first idle read (within 15 s of start).
    fn first_idle_read(&self) {
        let start = Instant::now();
        while self.shim().count("DescribeContainerInstances").calls == 0 {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no idle read within 30 s: {:?}",
                self.shim().counts()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        // The rest of that read (DescribeClusters) answers within a moment.
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn calls_per_minute(n: usize) -> (f64, String) {
    let s = Scale::start(n, "");
    s.first_idle_read();
    s.shim().reset_counts();
    let window = Duration::from_secs(130);
    std::thread::sleep(window);
    let counts = s.shim().counts();
    let total = s.shim().total_calls();
    for op in ["ListContainerInstances", "ListAttributes"] {
        assert_eq!(
            s.shim().count(op).calls,
            0,
            "idle, nothing lists the cluster ({n} instances): {counts:?}"
        );
    }
    let per_minute = f64::from(total) / (window.as_secs_f64() / 60.0);
    eprintln!("{n} instances: {total} calls in {window:?} idle = {per_minute:.2}/min ({counts:?})");
    (per_minute, format!("{counts:?}"))
}

#[test]
fn idle_calls_per_instance_stay_under_one_a_minute_at_20_and_at_450_instances() {
    let small = std::thread::spawn(|| calls_per_minute(20));
    let (large, large_counts) = calls_per_minute(450);
    let (small, small_counts) = small.join().expect("20-instance run");
    assert!(small <= 1.0, "20 instances: {small}/min {small_counts}");
    assert!(large <= 1.0, "450 instances: {large}/min {large_counts}");
    assert!(
        (small - large).abs() <= 1.0,
        "within one call: {small} vs {large}"
    );
}

#[test]
fn a_drain_decision_and_its_recheck_take_at_most_eight_calls_at_450_instances() {
    let mut s = Scale::start(450, "");
    s.first_idle_read();
    s.shim().reset_counts();
    s.fs.fill_to_used_percent(91.0);
    let took = s.wait(
        "drained with the mark",
        Duration::from_secs(30),
        |(st, m)| st == "DRAINING" && m.is_some(),
    );
    // The re-check follows 5 s after the drain.
    std::thread::sleep(Duration::from_secs(8));
    let total = s.shim().total_calls();
    let counts = s.shim().counts();
    eprintln!("450 instances: crossing -> DRAINING seen in {took:?}; {total} calls: {counts:?}");
    assert!(
        total <= 8,
        "{total} calls for one decision and its re-check: {counts:?}"
    );
    assert_eq!(s.shim().count("UpdateContainerInstancesState").calls, 1);
    // Said once the drain is made; the wait above polled the status, not the log.
    s.daemon.said(
        "set the container instance DRAINING",
        Duration::from_secs(5),
    );
}

#[test]
fn an_operators_drain_and_reactivation_unseen_by_the_view_do_not_stop_a_drain() {
    let mut s = Scale::start(10, "");
    // The operator drained this instance; diskguard's idle read saw it.
    s.world.set_status(&[&s.me()], "DRAINING");
    s.daemon.wait_for(
        "ECS container instance is DRAINING",
        Duration::from_secs(30),
    );
    // Then set it ACTIVE again; the next idle read is a minute away.
    s.world.set_status(&[&s.me()], "ACTIVE");
    // The crossing comes later than 5 s after that read: a read younger than that is as
    // good as a fresh one, an older one is read again.
    s.daemon.drain_for(Duration::from_secs(6));
    s.fs.fill_to_used_percent(91.0);
    let took = s.wait("drained at 91 %", Duration::from_secs(15), |(st, m)| {
        st == "DRAINING" && m.is_some()
    });
    eprintln!("operator flip, 91 %: DRAINING with the mark {took:?} after the fill");
    // Every line up to now read, so a delayed decision would be counted.
    s.daemon.drain_for(Duration::from_secs(1));
    assert_eq!(
        s.daemon.count("DrainDelayed"),
        0,
        "no decision waited: {:?}",
        s.daemon.seen
    );
}

#[test]
fn at_critical_an_operator_flip_unseen_by_the_view_still_drains_past_the_budget() {
    let mut s = Scale::start(10, "");
    let other = s.world.members()[1].arn.clone();
    s.world.set_status(&[&s.me()], "DRAINING");
    s.daemon.wait_for(
        "ECS container instance is DRAINING",
        Duration::from_secs(30),
    );
    s.world.set_status(&[&s.me()], "ACTIVE");
    // Someone else's drain spends the budget of one (10 % of 10).
    s.world.set_status(&[&other], "DRAINING");
    s.daemon.drain_for(Duration::from_secs(6));
    s.fs.fill_to_used_percent(96.5);
    let took = s.wait("drained at critical", Duration::from_secs(15), |(st, m)| {
        st == "DRAINING" && m.is_some()
    });
    eprintln!("operator flip, 96.5 %: DRAINING with the mark {took:?} after the fill");
    s.daemon
        .said("past the cluster's drain budget", Duration::from_secs(5));
}

#[test]
fn under_throttling_a_crossing_drains_later_and_gives_back_later_never_on_a_failed_read() {
    let mut s = Scale::start(10, "");
    s.first_idle_read();
    // Older than 5 s, the idle read is read again before any decision.
    s.daemon.drain_for(Duration::from_secs(6));
    // Every cluster resource read is throttled: the account's bucket is empty.
    s.shim().set_read_quota(0, 0.0);
    s.fs.fill_to_used_percent(91.0);
    let crossed = Instant::now();
    s.daemon.wait_for("DrainDelayed", Duration::from_secs(90));
    eprintln!(
        "first DrainDelayed {:?} after the crossing",
        crossed.elapsed()
    );
    // A claim (the mark on an ACTIVE instance) may be there: it is put before the budget
    // read that failed, withdrawn once that read has failed past CLAIM_KEEP, and put again
    // by the retry. Not a drain.
    assert_eq!(s.status().0, "ACTIVE", "never drained on a failed read");
    // The budget read's DRAINING list is the decision's read of this instance.
    let throttled = s.shim().count("ListContainerInstances").throttled;
    assert!(throttled >= 1, "{:?}", s.shim().counts());
    // The quota refills: the drain goes through.
    s.shim().set_read_quota(100, 20.0);
    let took = s.wait(
        "drained after the throttling",
        Duration::from_secs(60),
        |(st, m)| st == "DRAINING" && m.is_some(),
    );
    eprintln!("throttled crossing drained {took:?} after the quota refilled");
    // Give-back under throttling (once the re-check 5 s after the drain is done): waits,
    // then goes through.
    s.daemon.drain_for(Duration::from_secs(8));
    s.shim().set_read_quota(0, 0.0);
    s.fs.remove_fill();
    let delayed = s.daemon.count("DrainDelayed");
    s.daemon.wait_for("DrainDelayed", Duration::from_secs(90));
    assert!(s.daemon.count("DrainDelayed") > delayed);
    assert_eq!(
        s.status().0,
        "DRAINING",
        "never given back on a failed read"
    );
    s.shim().set_read_quota(100, 20.0);
    s.wait("given back", Duration::from_secs(60), |(st, m)| {
        st == "ACTIVE" && m.is_none()
    });
}
