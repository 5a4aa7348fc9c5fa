//! Faults of the world around the agent, each against the real peer: a Docker API that
//! accepts connections and never answers, a disk full to its last block, ECS and
//! CloudWatch gone for a (simulated) ten minutes, no instance metadata service, and
//! SIGTERM in the middle of a reclaim pass. The agent must keep sampling, keep feeding
//! the watchdog, keep answering `status`, lose or repeat no metric, and stop at once.

use diskguard_testkit as support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use support::aws::cwpeer::{CwPeer, eventually};
use support::aws::ecs_agent::{AgentMode, EcsAgent};
use support::aws::ecs_world::{EcsWorld, REGION};
use support::aws::faultproxy::{Fault, FaultProxy};
use support::docker::images::import_image;
use support::docker::slowsock::SlowSocket;
use support::docker::stallsock::StallSocket;
use support::processes::daemon::Daemon;
use support::processes::notify::NotifySocket;
use support::processes::procstat::wait_exit;
use support::{Dockerd, LoopFs, LoopFsOptions, Moto};

const MIB: u64 = 1 << 20;
const NS: &str = "DiskGuardFaults";
/// systemd's `WatchdogSec=2s`: diskguard pings every second. A loop blocked by a hung
/// call would stay silent for that call's whole timeout (10–30 s), far past this; the
/// margin keeps a busy CI machine from failing the test on scheduling noise.
const WATCHDOG: Duration = Duration::from_secs(2);

/// A config: `docker_host` and the Docker root, etcd off, then `extra` sections.
fn config(dir: &Path, root: &Path, docker_host: &str, extra: &str) -> PathBuf {
    let path = dir.join("diskguard.toml");
    std::fs::write(
        &path,
        format!(
            "[docker]\nhost = {docker_host:?}\nroot = {:?}\nmin_image_age = \"0s\"\n\
             [etcd]\nenabled = false\n{extra}\n",
            root.display().to_string()
        ),
    )
    .expect("config");
    path
}

/// A socket that does not exist: the host's Docker is never reached.
const NO_DOCKER: &str = "unix:///nonexistent/docker.sock";

/// A one-shot command, and how long it took.
fn diskguard(config: &Path, args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_diskguard"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("DISKGUARD_CONFIG")
        .env_remove("NOTIFY_SOCKET")
        .output()
        .expect("the diskguard binary runs");
    (out, started.elapsed())
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The daemon under a notify socket with a watchdog, as systemd runs it.
fn supervised(config: &Path, notify: &NotifySocket, env: &[(&str, &str)]) -> Daemon {
    let watchdog = notify.env(WATCHDOG);
    let mut all: Vec<(&str, &str)> = watchdog.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.extend_from_slice(env);
    Daemon::start_with(config, &all)
}

/// No gap between watchdog pings from `since` to now reached `WATCHDOG_USEC`.
fn assert_watchdog_fed(notify: &NotifySocket, since: Instant, what: &str) {
    let now = Instant::now();
    let silence = notify.longest_watchdog_silence(since, now);
    let pings = notify.pings_between(since, now);
    println!(
        "{what}: {pings} watchdog pings over {:.1}s, longest silence {} ms",
        (now - since).as_secs_f64(),
        silence.as_millis()
    );
    assert!(
        silence < WATCHDOG,
        "{what}: the watchdog went {silence:?} without a ping (WATCHDOG_USEC = {WATCHDOG:?})"
    );
}

/// SIGTERM; the process must be gone within `limit` and exit 0. Returns how long it
/// took, and the first line said after SIGTERM that contains `expect` (if given).
fn terminate(
    mut daemon: Daemon,
    limit: Duration,
    expect: Option<&str>,
) -> (Duration, Option<String>) {
    let sent = Instant::now();
    kill(Pid::from_raw(daemon.pid() as i32), Signal::SIGTERM).expect("SIGTERM");
    let said = expect.map(|needle| daemon.wait_for(needle, limit).1);
    // Not reaped yet (a zombie), so `stop` below still collects the exit code.
    let exited = wait_exit(daemon.pid(), limit + Duration::from_secs(3));
    let took = sent.elapsed();
    assert!(exited, "still running {took:?} after SIGTERM");
    assert!(
        took < limit,
        "exit took {took:?} after SIGTERM (limit {limit:?})"
    );
    daemon.stop();
    (took, said)
}

#[test]
fn a_stalled_docker_api_times_out_while_the_watchdog_is_fed_and_status_says_stalled() {
    let fs = LoopFs::new(64);
    let stalled = StallSocket::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        tmp.path(),
        fs.path(),
        &stalled.docker_host(),
        "[ecs]\nenabled = false\n[cloudwatch]\nenabled = false",
    );
    let notify = NotifySocket::bind();
    let began = Instant::now();
    let mut daemon = supervised(&cfg, &notify, &[]);
    let ready = notify.wait_for("READY=1", Duration::from_secs(10));
    println!("READY {} ms after start", (ready - began).as_millis());

    // `status` and `status --json` at the same time, while the daemon's own connect hangs.
    let (table, json) = std::thread::scope(|s| {
        let table = s.spawn(|| diskguard(&cfg, &["status"]));
        let json = s.spawn(|| diskguard(&cfg, &["status", "--json"]));
        (
            table.join().expect("status thread"),
            json.join().expect("status thread"),
        )
    });
    let (out, took) = table;
    println!("status answered in {} ms", took.as_millis());
    assert_eq!(out.status.code(), Some(0), "status exit: {}", text(&out));
    let said = text(&out);
    assert!(
        said.contains(&format!(
            "Docker at {} is stalled: it accepted the connection but did not answer within 10s",
            stalled.docker_host()
        )),
        "status names the stall: {said}"
    );
    assert!(said.contains("not reachable"), "{said}");
    // Bounded by the one-shot patience (10 s), not by the 30 s call timeout.
    assert!(took < Duration::from_secs(20), "status took {took:?}");
    let (out, _) = json;
    assert_eq!(out.status.code(), Some(0), "status --json: {}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("status --json is JSON");
    assert_eq!(report["docker"]["connected"], false, "{report:#}");
    assert!(
        report["docker"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("is stalled")),
        "{report:#}"
    );

    // The daemon's own connect gives up at its call timeout and says so; meanwhile the
    // sampling loop went on.
    let (_, line) = daemon.wait_for("cannot reach Docker", Duration::from_secs(60));
    println!("daemon: {line}");
    assert!(daemon.running(), "the daemon survives a stalled Docker");
    assert!(
        stalled.accepted() >= 3,
        "the stall was real: {} connections accepted",
        stalled.accepted()
    );
    assert_watchdog_fed(&notify, ready, "stalled Docker");
    // A Docker call still hanging does not hold up the exit.
    let (took, _) = terminate(daemon, Duration::from_secs(2), None);
    println!("exit {} ms after SIGTERM", took.as_millis());
}

/// Every file under `dir` with its size and modification time.
fn tree(dir: &Path) -> BTreeSet<(PathBuf, u64, Option<SystemTime>)> {
    let mut out = BTreeSet::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let meta = entry.metadata().expect("metadata");
            if meta.is_dir() {
                todo.push(entry.path());
            }
            out.insert((entry.path(), meta.len(), meta.modified().ok()));
        }
    }
    out
}

/// Writes as root until the filesystem refuses: df's 100 % leaves the blocks reserved
/// for root, and this takes those too, down to the last one. (statfs still counts
/// ext4's own reserve for metadata, about 2 %, as free: nobody can write there.)
fn fill_to_the_last_block(dir: &Path) {
    use std::io::Write;
    let path = dir.join("all-of-it");
    let mut f = std::fs::File::create(&path).expect("create the fill file");
    for chunk in [1 << 20, 4096] {
        let buf = vec![0x5Au8; chunk];
        while f.write_all(&buf).is_ok() {}
        // Delayed allocation: only a sync makes the blocks final (and may itself find
        // no room for the last ones).
        let _ = f.sync_all();
    }
}

#[test]
fn a_disk_full_to_the_last_block_keeps_the_agent_answering_and_it_writes_nothing_there() {
    let fs = LoopFs::new(64);
    fill_to_the_last_block(fs.path());
    Command::new("sync")
        .arg("-f")
        .arg(fs.path())
        .status()
        .expect("sync");
    let probe = fs.path().join("one-more");
    assert!(
        std::fs::write(&probe, [0u8; 4096]).is_err(),
        "the disk must be full to the last block, even for root"
    );
    std::fs::remove_file(&probe).expect("remove the probe");
    Command::new("sync")
        .arg("-f")
        .arg(fs.path())
        .status()
        .expect("sync");
    let before = fs.usage();
    let files_before = tree(fs.path());
    println!("full: {before:?}");
    assert_eq!(before.blocks_avail, 0, "no block left: {before:?}");

    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        tmp.path(),
        fs.path(),
        NO_DOCKER,
        "[ecs]\nenabled = false\n[cloudwatch]\nenabled = false",
    );
    let notify = NotifySocket::bind();
    let mut daemon = supervised(&cfg, &notify, &[]);
    let ready = notify.wait_for("READY=1", Duration::from_secs(10));
    daemon.wait_for("entered level critical", Duration::from_secs(10));

    let (out, took) = diskguard(&cfg, &["status", "--json"]);
    assert_eq!(out.status.code(), Some(0), "status: {}", text(&out));
    println!("status answered in {} ms", took.as_millis());
    let report: Value = serde_json::from_slice(&out.stdout).expect("status --json is JSON");
    assert_eq!(report["level"], "critical", "{report:#}");
    assert_eq!(report["volumes"][0]["used_percent"], 100.0, "{report:#}");
    assert_eq!(report["volumes"][0]["free_bytes"], 0, "{report:#}");
    let (out, took) = diskguard(&cfg, &["check"]);
    println!("check answered in {} ms", took.as_millis());
    assert_eq!(out.status.code(), Some(2), "check: {}", text(&out));
    assert!(
        text(&out).starts_with("DISKGUARD CRITICAL"),
        "{}",
        text(&out)
    );

    // A few more seconds of sampling at 100 %, with the reclaim it wants impossible.
    daemon.drain_for(Duration::from_secs(3));
    assert!(daemon.running(), "the agent keeps running on a full disk");
    assert_watchdog_fed(&notify, ready, "full disk");
    terminate(daemon, Duration::from_secs(2), None);

    Command::new("sync")
        .arg("-f")
        .arg(fs.path())
        .status()
        .expect("sync");
    assert_eq!(
        fs.usage(),
        before,
        "blocks or inodes changed on the full disk"
    );
    assert_eq!(
        tree(fs.path()),
        files_before,
        "a file appeared or changed on the full disk"
    );
}

/// When the daemon said `needle` (by its own log timestamp), whether it already has or
/// does within `limit`.
fn said(daemon: &mut Daemon, needle: &str, limit: Duration) -> SystemTime {
    let line = daemon.said(needle, limit);
    let stamp = line.split_whitespace().next().unwrap_or_default();
    humantime::parse_rfc3339(stamp).unwrap_or_else(|_| panic!("no timestamp: {line}"))
}

/// ReclaimErrors datapoints (one value per interval) under `dims`, as (timestamp, samples).
fn intervals(peer: &CwPeer, dims: &[(&str, &str)], since: SystemTime) -> Vec<(f64, f64)> {
    peer.statistics(NS, "ReclaimErrors", dims, since, 1)
        .iter()
        .map(|p| {
            (
                p["Timestamp"].as_f64().unwrap_or_default(),
                p["SampleCount"].as_f64().unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn ecs_and_cloudwatch_down_for_ten_simulated_minutes_then_every_interval_arrives_once() {
    // moto for ECS with this host registered, the ECS agent's introspection naming it,
    // and a fault proxy in front of ECS; the CloudWatch peer with its own moto.
    let moto = Moto::start();
    let world = EcsWorld::seed(&moto, "prod", 3);
    let me = world.members()[0].arn.clone();
    let agent = EcsAgent::start(AgentMode::healthy(world.cluster(), &me));
    let ecs = FaultProxy::start(&moto.endpoint());
    let cw = CwPeer::start();
    let fs = LoopFs::new(64);
    let tmp = tempfile::tempdir().expect("tempdir");
    // One-second CloudWatch intervals stand for the default one-minute ones: ten of them
    // down is the "ten minutes" in ten seconds, interval for interval (the
    // buffer, the one-call-per-interval rule and the timestamps do not depend on the
    // length). ECS's own retry schedule runs in real seconds.
    let cfg = config(
        tmp.path(),
        fs.path(),
        NO_DOCKER,
        &format!(
            "[sample]\ninterval = \"500ms\"\n\
             [ecs]\nintrospection_url = {:?}\n\
             [cloudwatch]\nenabled = true\nnamespace = \"{NS}\"\ninterval = \"1s\"\nhigh_resolution = true",
            agent.url()
        ),
    );
    let (ecs_url, cw_url) = (ecs.endpoint(), cw.endpoint());
    // Off EC2: no instance metadata, and never the link-local address.
    let imds = format!("http://127.0.0.1:{}", closed_port());
    let env = [
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.as_str()),
        ("AWS_ENDPOINT_URL_ECS", ecs_url.as_str()),
        ("AWS_ENDPOINT_URL_CLOUDWATCH", cw_url.as_str()),
        ("AWS_REGION", REGION),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ];
    // ECS is down from before the start (every call's connection closed unanswered), so
    // the agent's first read of its instance already fails.
    ecs.inject(None, Fault::Drop, u32::MAX);
    let began = SystemTime::now();
    let notify = NotifySocket::bind();
    let mut daemon = supervised(&cfg, &notify, &env);
    let ready = notify.wait_for("READY=1", Duration::from_secs(10));
    daemon.wait_for("found this ECS container instance", Duration::from_secs(20));
    daemon.wait_for("publishing metrics to CloudWatch", Duration::from_secs(20));
    assert!(
        eventually(Duration::from_secs(10), || cw.calls("PutMetricData") >= 2),
        "CloudWatch took metrics before the outage"
    );

    cw.go_down();
    let down = SystemTime::now();
    std::thread::sleep(Duration::from_secs(10));
    // The first read of the cluster lands at a random point of its first 15 s (so a
    // fleet started together reads evenly): ECS stays down until the agent has met it.
    said(
        &mut daemon,
        "cannot read the ECS container instance",
        Duration::from_secs(30),
    );
    cw.heal();
    ecs.clear();
    let healed = SystemTime::now();
    // Either may come back first.
    let cw_back = said(
        &mut daemon,
        "CloudWatch answers again",
        Duration::from_secs(60),
    );
    // A failed idle read is tried again at the idle spacing (60–72 s here), not sooner:
    // an ECS outage meets the whole fleet at once, and retrying faster would throttle the
    // account the moment ECS answers again.
    let ecs_back = said(
        &mut daemon,
        "the ECS container instance can be read again",
        Duration::from_secs(90),
    );
    let secs = |t: SystemTime| t.duration_since(healed).unwrap_or_default().as_secs_f64();
    println!(
        "after healing: CloudWatch back in {:.1}s, ECS view back in {:.1}s",
        secs(cw_back),
        secs(ecs_back)
    );
    // The buffered intervals go out one call each, back to back; then two live ones.
    let sent = cw.calls("PutMetricData");
    assert!(
        eventually(Duration::from_secs(20), || cw.calls("PutMetricData")
            >= sent + 2),
        "live intervals flow again"
    );
    assert_watchdog_fed(&notify, ready, "ECS and CloudWatch down");
    assert!(
        ecs.counts().values().map(|c| c.failed).sum::<u32>() >= 1,
        "the ECS outage was real: {:?}",
        ecs.counts()
    );
    terminate(daemon, Duration::from_secs(2), None);
    let stopped = SystemTime::now();
    assert!(
        cw.failed("PutMetricData") >= 1,
        "the CloudWatch outage was real"
    );

    // Every interval once. Intervals closed before the identity was known carry `Host`
    // alone; the rest `ClusterName` too, through the ECS outage, since the cluster comes
    // from introspection, not from a successful ECS read. (moto matches the dimensions
    // asked for as a subset, so the `Host` query sees both kinds.)
    let host = diskguard::report::cloudwatch::hostname();
    let with_cluster = intervals(
        &cw,
        &[("ClusterName", world.cluster()), ("Host", &host)],
        began,
    );
    let every = intervals(&cw, &[("Host", &host)], began);
    assert!(
        every.iter().all(|(_, n)| *n == 1.0),
        "an interval arrived twice: {every:?}"
    );
    let stamps: Vec<f64> = every.iter().map(|(t, _)| *t).collect();
    for w in stamps.windows(2) {
        assert_eq!(w[1] - w[0], 1.0, "an interval lost or repeated: {stamps:?}");
    }
    assert_eq!(
        cw.calls("PutMetricData"),
        stamps.len() as u64,
        "one delivered call per interval, none twice"
    );
    let ran = stopped.duration_since(began).unwrap_or_default();
    assert!(
        stamps.len() as f64 >= ran.as_secs_f64() - 4.0,
        "{} intervals in {ran:?}: {stamps:?}",
        stamps.len()
    );
    // The outage's own intervals carry the cluster.
    let down_secs = down
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let in_outage = with_cluster
        .iter()
        .filter(|(t, _)| *t >= down_secs && *t < down_secs + 10.0)
        .count();
    assert!(
        in_outage >= 9,
        "intervals from the outage keep ClusterName: {in_outage} of 10"
    );
    println!(
        "{} intervals delivered once each over {:.1}s ({} buffered through the outage)",
        stamps.len(),
        ran.as_secs_f64(),
        in_outage
    );
}

/// A loopback port with nothing listening (bound, then closed).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// IMDS absent as off EC2: the endpoint refuses connections. Not
/// `AWS_EC2_METADATA_DISABLED`, which would skip IMDS without trying it.
fn no_imds_env(cw: &CwPeer) -> Vec<(&'static str, String)> {
    vec![
        (
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            format!("http://127.0.0.1:{}", closed_port()),
        ),
        ("AWS_EC2_METADATA_DISABLED", "false".into()),
        ("AWS_ENDPOINT_URL_CLOUDWATCH", cw.endpoint()),
        ("AWS_REGION", REGION.into()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
    ]
}

#[test]
fn without_imds_the_agent_runs_in_local_mode_names_the_host_and_stops_at_once() {
    let cw = CwPeer::start();
    let fs = LoopFs::new(64);
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        tmp.path(),
        fs.path(),
        NO_DOCKER,
        &format!(
            "[ecs]\nintrospection_url = \"http://127.0.0.1:{}\"\n\
             [cloudwatch]\nenabled = true\nnamespace = \"{NS}\"\ninterval = \"1s\"",
            closed_port()
        ),
    );
    let env = no_imds_env(&cw);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut daemon = Daemon::start_with(&cfg, &env);
    daemon.wait_for("staying in local mode", Duration::from_secs(20));
    let (_, line) = daemon.wait_for("publishing metrics to CloudWatch", Duration::from_secs(20));
    assert!(
        line.contains("\"Host\""),
        "the instance is named by Host: {line}"
    );
    assert!(
        eventually(Duration::from_secs(10), || cw.calls("PutMetricData") >= 2),
        "metrics go out without IMDS"
    );
    assert!(daemon.running());
    assert_eq!(daemon.count("found this ECS container instance"), 0);
    let (took, _) = terminate(daemon, Duration::from_secs(2), None);
    println!("exit {} ms after SIGTERM", took.as_millis());

    let metrics = cw.metric_dimensions(NS);
    assert!(
        metrics
            .iter()
            .any(|(n, d)| n == "DiskUsedPercent" && d == &["Host", "Volume"]),
        "{metrics:#?}"
    );
    assert!(
        metrics
            .iter()
            .all(|(_, d)| !d.iter().any(|n| n == "InstanceId")),
        "no InstanceId without IMDS: {metrics:#?}"
    );
}

#[test]
fn without_imds_an_introspected_identity_names_the_cluster_and_the_host() {
    let moto = Moto::start();
    let world = EcsWorld::seed(&moto, "prod", 2);
    let me = world.members()[0].arn.clone();
    let agent = EcsAgent::start(AgentMode::healthy(world.cluster(), &me));
    let cw = CwPeer::start();
    let fs = LoopFs::new(64);
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        tmp.path(),
        fs.path(),
        NO_DOCKER,
        &format!(
            "[ecs]\nintrospection_url = {:?}\n\
             [cloudwatch]\nenabled = true\nnamespace = \"{NS}\"\ninterval = \"1s\"",
            agent.url()
        ),
    );
    let mut env = no_imds_env(&cw);
    env.push(("AWS_ENDPOINT_URL_ECS", moto.endpoint()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut daemon = Daemon::start_with(&cfg, &env);
    daemon.wait_for("found this ECS container instance", Duration::from_secs(20));
    daemon.wait_for("publishing metrics to CloudWatch", Duration::from_secs(20));
    let host = diskguard::report::cloudwatch::hostname();
    assert!(
        eventually(Duration::from_secs(15), || {
            !cw.statistics(
                NS,
                "DiskUsedPercent",
                &[
                    ("ClusterName", world.cluster()),
                    ("Host", &host),
                    ("Volume", "docker"),
                ],
                SystemTime::now() - Duration::from_secs(60),
                60,
            )
            .is_empty()
        }),
        "metrics carry ClusterName and Host: {:#?}",
        cw.metric_dimensions(NS)
    );
    let (took, _) = terminate(daemon, Duration::from_secs(2), None);
    println!("exit {} ms after SIGTERM", took.as_millis());
    assert!(
        cw.metric_dimensions(NS)
            .iter()
            .all(|(_, d)| !d.iter().any(|n| n == "InstanceId")),
        "no InstanceId without IMDS"
    );
}

#[test]
fn sigterm_mid_pass_exits_within_two_seconds_and_says_the_pass_stopped() {
    let mut d = Dockerd::start_on_loopfs(&LoopFsOptions::new(512));
    for i in 0..40 {
        import_image(&d, &format!("img{i}:v1"), MIB);
    }
    // Each request waits 300 ms on its way to dockerd: the pass takes seconds, so the
    // SIGTERM lands in its middle.
    let slow = SlowSocket::start(&d.socket(), Duration::from_millis(300));
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        tmp.path(),
        d.data_root(),
        &slow.docker_host(),
        "[sample]\ninterval = \"1s\"\n[ecs]\nenabled = false\n[cloudwatch]\nenabled = false",
    );
    let mut daemon = Daemon::start(&cfg);
    daemon.wait_for("Docker inventory read", Duration::from_secs(30));
    d.loopfs_mut().expect("loop fs").fill_to_used_percent(85.0);
    daemon.wait_for("reclaim pass started", Duration::from_secs(30));
    let (took, done) = terminate(daemon, Duration::from_secs(2), Some("reclaim pass done"));
    let done = done.unwrap_or_default();
    println!(
        "exit {} ms after SIGTERM mid-pass: {done}",
        took.as_millis()
    );
    assert!(
        done.contains("stopped on shutdown"),
        "the pass says it stopped on shutdown: {done}"
    );
    assert!(
        !d.loopfs()
            .is_some_and(|fs| fs.usage().used_percent() <= 70.0),
        "the pass was cut short, not finished"
    );
}
