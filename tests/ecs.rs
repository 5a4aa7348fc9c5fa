//! Drain and undrain against moto's ECS, with the ECS agent's introspection API and IMDS
//! served by small local servers in their documented formats.

use diskguard_testkit as support;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::LoopFs;
use support::aws::ecs_agent::AgentMode;
use support::aws::ecs_cluster::{
    Cluster, MARK, aws_env, aws_env_with_imds, cluster, config, daemon,
};
use support::aws::ecs_world::REGION;
use support::aws::faultproxy::{Fault, FaultProxy};
use support::processes::daemon::Daemon;

#[test]
fn drains_past_90_percent_and_gives_back_after_recovery() {
    let c = cluster(10);
    let mut fs = LoopFs::new(64);
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path(), fs.path(), &c.agent.url(), "");
    let mut d = daemon(&c, &cfg, &c.moto.endpoint(), &[]);
    assert_eq!(c.status(), ("ACTIVE".to_owned(), None));

    fs.fill_to_used_percent(91.0);
    c.wait(
        "drained with the mark",
        Duration::from_secs(20),
        |(s, m)| s == "DRAINING" && m.is_some(),
    );
    let mark = c.status().1.expect("mark");
    assert!(
        mark.ends_with('Z') && mark.contains('T'),
        "RFC 3339 UTC: {mark}"
    );
    d.wait_for(
        "set the container instance DRAINING",
        Duration::from_secs(5),
    );

    fs.remove_fill();
    let freed = Instant::now();
    c.wait(
        "ACTIVE again without the mark",
        Duration::from_secs(30),
        |(s, m)| s == "ACTIVE" && m.is_none(),
    );
    assert!(
        freed.elapsed() >= Duration::from_secs(3),
        "not before recover_after"
    );
    d.wait_for(
        "set the container instance ACTIVE again",
        Duration::from_secs(5),
    );
    // Every other instance untouched.
    let counts = c.world.count_by_status();
    assert_eq!(counts.get("ACTIVE"), Some(&10), "{counts:?}");
    d.stop();
}

/// A cluster, a 256 MiB disk filled to `pct` before diskguard starts (so its history
/// begins flat), and diskguard with a 10 m drain lead over a 60 s forecast window.
fn forecast_world(pct: f64) -> (Cluster, LoopFs, tempfile::TempDir, Daemon) {
    let c = cluster(10);
    let mut fs = LoopFs::new(256);
    fs.fill_to_used_percent(pct);
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        tmp.path(),
        fs.path(),
        &c.agent.url(),
        "drain_lead = \"10m\"\nforecast_window = \"60s\"",
    );
    let d = daemon(&c, &cfg, &c.moto.endpoint(), &[]);
    (c, fs, tmp, d)
}

#[test]
fn a_flat_disk_at_88_percent_does_not_drain() {
    let (c, _fs, _tmp, mut d) = forecast_world(88.0);
    d.drain_for(Duration::from_secs(36));
    assert_eq!(
        c.status(),
        ("ACTIVE".to_owned(), None),
        "a flat disk at 88% does not drain:\n{}",
        d.seen.join("\n")
    );
    d.stop();
}

#[test]
fn a_steady_fill_drains_before_90_percent() {
    let (c, fs, _tmp, mut d) = forecast_world(81.0);

    // ~0.5 MiB/s from 81 %: full in a few minutes, well inside the 10 m lead, while the
    // forecast needs 30 s of history first.
    let grow = fs.path().join("growing");
    let start = Instant::now();
    let mut f = std::fs::File::create(&grow).expect("create");
    let chunk = vec![7u8; 256 * 1024];
    // The SDK's adaptive retry slows every call of the client after a throttle, and each
    // failed round is taken again on a fresh read with a claim: minutes on a busy machine.
    while c.status().0 != "DRAINING" {
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "no predictive drain; the daemon said:\n{}",
            d.seen.join("\n")
        );
        std::io::Write::write_all(&mut f, &chunk).expect("write");
        f.sync_all().expect("sync");
        std::thread::sleep(Duration::from_millis(500));
    }
    let used = support::fs::loopfs::fs_usage(fs.path()).used_percent();
    assert!(
        used < 90.0,
        "drained by the forecast, before the threshold: {used:.1}%"
    );
    assert!(
        start.elapsed() >= Duration::from_secs(25),
        "not before the forecast had its history"
    );
    let (_, line) = d.wait_for(
        "set the container instance DRAINING",
        Duration::from_secs(5),
    );
    assert!(!line.contains("critical"), "{line}");
    d.stop();
}

#[test]
fn budget_suppresses_a_drain_below_critical_and_critical_overrides_it() {
    let c = cluster(10);
    // Someone else drained another instance: 1 of 10, and 10 % allows 1.
    let other = c.world.members()[1].arn.clone();
    c.world.set_status(&[&other], "DRAINING");
    let mut fs = LoopFs::new(64);
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path(), fs.path(), &c.agent.url(), "");
    let mut d = daemon(&c, &cfg, &c.moto.endpoint(), &[]);

    fs.fill_to_used_percent(91.0);
    d.wait_for(
        "would drain, but 1 of the cluster's instances are already DRAINING",
        Duration::from_secs(20),
    );
    d.drain_for(Duration::from_secs(3));
    assert_eq!(c.status().0, "ACTIVE", "suppressed by the budget");
    assert_eq!(d.count("would drain, but"), 1, "said once per episode");

    fs.fill_to_used_percent(96.0);
    c.wait(
        "critical drains past the budget",
        Duration::from_secs(20),
        |(s, m)| s == "DRAINING" && m.is_some(),
    );
    let (_, line) = d.wait_for(
        "set the container instance DRAINING",
        Duration::from_secs(5),
    );
    assert!(line.contains("past the cluster's drain budget"), "{line}");
    d.stop();
}

#[test]
fn never_undrains_someone_elses_drain_and_clears_a_stale_mark() {
    let c = cluster(3);
    let fs = LoopFs::new(64);
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path(), fs.path(), &c.agent.url(), "");

    // Drained by an operator (no mark), disk nearly empty: stays DRAINING.
    c.world.set_status(&[&c.me()], "DRAINING");
    let d = daemon(&c, &cfg, &c.moto.endpoint(), &[]);
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        c.status(),
        ("DRAINING".to_owned(), None),
        "someone else's drain is left alone"
    );
    d.stop();

    // diskguard drained it, an operator set it ACTIVE again: only the stale mark goes.
    c.world.set_status(&[&c.me()], "ACTIVE");
    c.world.put_attribute(&c.me(), MARK, "2026-11-26T04:00:00Z");
    let mut d = daemon(&c, &cfg, &c.moto.endpoint(), &[]);
    // The first idle read comes within 15 s; the mark goes on the read after it.
    c.wait("stale mark removed", Duration::from_secs(30), |(s, m)| {
        s == "ACTIVE" && m.is_none()
    });
    d.wait_for(
        "removed diskguard's stale drain mark",
        Duration::from_secs(5),
    );
    d.stop();
}

#[test]
fn introspection_failures_keep_local_mode_and_the_identity_is_picked_up_when_it_appears() {
    let c = cluster(2);
    c.agent.set_mode(AgentMode::NotFound);
    let fs = LoopFs::new(64);
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path(), fs.path(), &c.agent.url(), "");
    let env = aws_env(&c.moto.endpoint());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut d = Daemon::start_with(&cfg, &env);
    d.wait_for("ready", Duration::from_secs(10));
    for (mode, said) in [
        (AgentMode::NotFound, "HTTP 404"),
        (AgentMode::Unavailable, "HTTP 503"),
        (AgentMode::Garbage, "unusable answer"),
        (AgentMode::Refuse, "unreachable"),
    ] {
        c.agent.set_mode(mode);
        // The first line can come before "ready", which the wait above already read.
        if d.count(said) == 0 {
            d.wait_for(said, Duration::from_secs(30));
        }
    }
    c.agent
        .set_mode(AgentMode::healthy(c.world.cluster(), &c.me()));
    d.wait_for("found this ECS container instance", Duration::from_secs(30));
    for said in ["HTTP 404", "HTTP 503", "unusable answer", "unreachable"] {
        assert_eq!(
            d.count(said),
            1,
            "one line per state change for {said}:\n{}",
            d.seen.join("\n")
        );
    }
    assert!(d.seen.iter().any(|l| l.contains("local mode")));
    d.stop();
}

#[test]
fn drain_survives_throttling_and_server_errors_while_sampling_and_watchdog_go_on() {
    let c = cluster(4);
    let proxy = FaultProxy::start(&c.moto.endpoint());
    let mut fs = LoopFs::new(64);
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path(), fs.path(), &c.agent.url(), "");
    let notify_path = tmp.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("bind notify socket");
    notify
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let notify_env = notify_path.display().to_string();
    let d = daemon(
        &c,
        &cfg,
        &proxy.endpoint(),
        &[("NOTIFY_SOCKET", &notify_env), ("WATCHDOG_USEC", "1000000")],
    );

    proxy.inject(Some("PutAttributes"), Fault::Throttle, 6);
    proxy.inject(Some("UpdateContainerInstancesState"), Fault::ServerError, 6);
    fs.fill_to_used_percent(91.0);
    let start = Instant::now();
    let mut pings = Vec::new();
    let mut buf = [0u8; 512];
    // The SDK's adaptive retry slows every call of the client after a throttle, and each
    // failed round is taken again on a fresh read with a claim: minutes on a busy machine.
    while c.status().0 != "DRAINING" {
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "never drained; proxy saw {:?}",
            proxy.counts()
        );
        let until = Instant::now() + Duration::from_millis(300);
        while Instant::now() < until {
            if let Ok(n) = notify.recv(&mut buf) {
                if String::from_utf8_lossy(&buf[..n]).contains("WATCHDOG=1") {
                    pings.push(Instant::now());
                }
            }
        }
    }
    assert!(c.status().1.is_some(), "drained with the mark");
    assert!(
        proxy.count("PutAttributes").failed >= 6
            && proxy.count("UpdateContainerInstancesState").failed >= 6
    );
    assert!(pings.len() >= 2, "watchdog pings while ECS failed");
    for w in pings.windows(2) {
        assert!(
            w[1] - w[0] < Duration::from_secs(1),
            "watchdog gap {:?}",
            w[1] - w[0]
        );
    }
    d.stop();
}

fn cli(cfg: &Path, c: &Cluster, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_diskguard"));
    cmd.arg("--config").arg(cfg).args(args);
    for (k, v) in aws_env(&c.moto.endpoint()) {
        cmd.env(k, v);
    }
    cmd.output().expect("diskguard runs")
}

#[test]
fn drain_and_undrain_by_hand_obey_ownership_unless_forced() {
    let c = cluster(3);
    let fs = LoopFs::new(64);
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path(), fs.path(), &c.agent.url(), "");
    let text = |o: &Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };

    let out = cli(&cfg, &c, &["drain"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(c.status().0, "DRAINING");
    assert!(c.status().1.is_some());
    let status: serde_json::Value =
        serde_json::from_slice(&cli(&cfg, &c, &["status", "--json"]).stdout).expect("json");
    assert_eq!(status["ecs"]["status"], "DRAINING");
    assert_eq!(status["ecs"]["drained_by_diskguard"], true);
    assert_eq!(status["ecs"]["cluster"], "prod");
    assert_eq!(status["local_mode"], false);
    let check = cli(&cfg, &c, &["check"]);
    assert!(
        text(&check).contains("ECS DRAINING (drained by diskguard)"),
        "{}",
        text(&check)
    );

    let out = cli(&cfg, &c, &["undrain"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(c.status(), ("ACTIVE".to_owned(), None));

    c.world.set_status(&[&c.me()], "DRAINING");
    let out = cli(&cfg, &c, &["undrain"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "someone else's drain: {}",
        text(&out)
    );
    assert!(text(&out).contains("--force"));
    assert_eq!(c.status().0, "DRAINING");
    let out = cli(&cfg, &c, &["undrain", "--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(c.status(), ("ACTIVE".to_owned(), None));
}

#[test]
fn without_introspection_the_instance_is_found_from_the_cluster_and_imds() {
    use support::aws::imds::{Imds, InstanceIdentity};
    let c = cluster(3);
    c.agent.set_mode(AgentMode::Refuse);
    let me = c.world.members()[0].clone();
    let imds = Imds::start(InstanceIdentity::new(&me.ec2_instance_id, REGION));
    let fs = LoopFs::new(64);
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        tmp.path(),
        fs.path(),
        &c.agent.url(),
        "[ecs]\ncluster = \"prod\"",
    );
    // The [ecs] table above would repeat the one config() writes: merge by hand.
    let text = std::fs::read_to_string(&cfg)
        .expect("read config")
        .replace("[ecs]\ncluster = \"prod\"\n", "");
    std::fs::write(&cfg, text.replace("[ecs]\n", "[ecs]\ncluster = \"prod\"\n"))
        .expect("write config");
    let env = aws_env_with_imds(&c.moto.endpoint(), &imds.endpoint());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut d = Daemon::start_with(&cfg, &env);
    let (_, line) = d.wait_for("found this ECS container instance", Duration::from_secs(30));
    assert!(line.contains(&me.arn), "{line}");
    assert!(
        line.contains("registration"),
        "found through the lookup: {line}"
    );
    assert!(imds.token_requests() >= 1, "IMDSv2: a token first");
    d.stop();
}

#[test]
fn observe_mode_says_it_would_drain_and_changes_nothing() {
    let c = cluster(3);
    let mut fs = LoopFs::new(64);
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path(), fs.path(), &c.agent.url(), "");
    let text = std::fs::read_to_string(&cfg).expect("read config");
    std::fs::write(&cfg, format!("mode = \"observe\"\n{text}")).expect("write config");
    let mut d = daemon(&c, &cfg, &c.moto.endpoint(), &[]);
    fs.fill_to_used_percent(91.0);
    d.wait_for(
        "observe mode: would drain the container instance",
        Duration::from_secs(20),
    );
    d.drain_for(Duration::from_secs(3));
    assert_eq!(c.status(), ("ACTIVE".to_owned(), None));
    assert_eq!(d.count("observe mode: would drain"), 1, "said once");
    d.stop();
}
