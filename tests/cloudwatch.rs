//! Metrics to CloudWatch through the test peer (moto behind the CBOR-translating proxy):
//! what was on disk is what reads back, one call per interval, outages buffered, the
//! final flush on SIGTERM.

use diskguard_testkit as support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use support::LoopFs;
use support::aws::cwpeer::{CwPeer, eventually};
use support::processes::daemon::Daemon;

const NS: &str = "DiskGuardTest";

fn config(dir: &Path, root: &Path, cloudwatch: &str) -> PathBuf {
    let path = dir.join("diskguard.toml");
    std::fs::write(
        &path,
        format!(
            "[sample]\ninterval = \"500ms\"\n\
             [docker]\nroot = {:?}\nhost = \"unix:///nonexistent/docker.sock\"\n\
             [etcd]\nenabled = false\n[ecs]\nenabled = false\n\
             [cloudwatch]\nenabled = true\nnamespace = \"{NS}\"\n{cloudwatch}\n",
            root.display().to_string()
        ),
    )
    .expect("config");
    path
}

fn start(peer: &CwPeer, cfg: &Path) -> Daemon {
    let endpoint = peer.endpoint();
    let env = [
        ("AWS_ENDPOINT_URL_CLOUDWATCH", endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ];
    let mut d = Daemon::start_with(cfg, &env);
    d.wait_for("publishing metrics to CloudWatch", Duration::from_secs(20));
    d
}

/// The peer, an empty 64 MiB disk, and diskguard publishing with `cloudwatch` settings.
fn world(cloudwatch: &str) -> (CwPeer, LoopFs, tempfile::TempDir, Daemon) {
    let peer = CwPeer::start();
    let fs = LoopFs::new(64);
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path(), fs.path(), cloudwatch);
    let d = start(&peer, &cfg);
    (peer, fs, tmp, d)
}

fn host() -> String {
    diskguard::report::cloudwatch::hostname()
}

fn stat(points: &[serde_json::Value], key: &str) -> Vec<f64> {
    points.iter().filter_map(|p| p[key].as_f64()).collect()
}

#[test]
fn what_was_on_disk_reads_back_with_one_call_per_interval() {
    let peer = CwPeer::start();
    let mut fs = LoopFs::new(64);
    fs.fill_to_used_percent(50.0);
    let tmp = tempfile::tempdir().expect("tempdir");
    // High resolution, so that each interval's datapoint can be told apart below.
    let cfg = config(
        tmp.path(),
        fs.path(),
        "interval = \"2s\"\nhigh_resolution = true",
    );
    let began = SystemTime::now();
    let started = Instant::now();
    let d = start(&peer, &cfg);
    std::thread::sleep(Duration::from_secs(5));
    fs.fill_to_used_percent(85.0);
    std::thread::sleep(Duration::from_secs(5));
    let ran = started.elapsed();
    d.stop();

    let h = host();
    let dims = [("Host", h.as_str()), ("Volume", "docker")];
    let points = peer.statistics(NS, "DiskUsedPercent", &dims, began, 60);
    assert!(
        !points.is_empty(),
        "no DiskUsedPercent for {dims:?}; metrics: {:#?}",
        peer.list_metrics(NS)
    );
    let min = stat(&points, "Minimum")
        .into_iter()
        .fold(f64::MAX, f64::min);
    let max = stat(&points, "Maximum")
        .into_iter()
        .fold(f64::MIN, f64::max);
    let samples: f64 = stat(&points, "SampleCount").iter().sum();
    assert!(
        (49.0..=60.0).contains(&min),
        "minimum {min} is the 50 % fill"
    );
    assert!(max >= 85.0, "maximum {max} is the 85 % fill");
    // A sample every 500 ms for the whole run, give or take start-up.
    let expected = ran.as_secs_f64() * 2.0;
    assert!(
        samples >= expected * 0.7 && samples <= expected + 4.0,
        "{samples} samples in {ran:?}"
    );

    // Exactly one PutMetricData per interval: ReclaimErrors is one value per interval, so
    // its datapoints (1 s periods) are the intervals sent, and each arrived once.
    let intervals = peer.statistics(NS, "ReclaimErrors", &[("Host", &host())], began, 1);
    assert!(
        intervals
            .iter()
            .all(|p| p["SampleCount"].as_f64() == Some(1.0)),
        "{intervals:#?}"
    );
    let calls = peer.calls("PutMetricData");
    assert_eq!(
        calls,
        intervals.len() as u64,
        "one call per interval (ran {ran:?})"
    );
    assert!(
        calls as f64 >= ran.as_secs_f64() / 2.0 - 1.0,
        "{calls} calls in {ran:?}"
    );

    // Dimensions as specified: Volume on volume metrics, none on the instance ones.
    let metrics = peer.metric_dimensions(NS);
    let dims_of = |name: &str| -> Vec<Vec<String>> {
        metrics
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, d)| d.clone())
            .collect()
    };
    assert_eq!(
        dims_of("DiskFreeBytes"),
        vec![vec!["Host".to_owned(), "Volume".to_owned()]]
    );
    assert_eq!(dims_of("ReclaimedBytes"), vec![vec!["Host".to_owned()]]);
    assert!(dims_of("Draining").is_empty(), "no Draining off ECS");
    assert!(metrics.len() <= 12, "{} billed metrics", metrics.len());
}

#[test]
fn an_outage_is_buffered_and_every_interval_arrives_once_with_its_own_timestamp() {
    let began = SystemTime::now();
    let (peer, _fs, _tmp, mut d) = world("interval = \"2s\"\nhigh_resolution = true");
    std::thread::sleep(Duration::from_secs(4));
    // Down for five intervals.
    peer.go_down();
    std::thread::sleep(Duration::from_secs(10));
    peer.heal();
    d.wait_for("CloudWatch answers again", Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(2));
    d.stop();
    assert!(peer.failed("PutMetricData") >= 1);

    // ReclaimErrors is one value per interval: per 1 s period, exactly one sample each,
    // one every 2 s, and no gap across the outage.
    let points = peer.statistics(NS, "ReclaimErrors", &[("Host", &host())], began, 1);
    let stamps: Vec<f64> = stat(&points, "Timestamp");
    assert!(
        points
            .iter()
            .all(|p| p["SampleCount"].as_f64() == Some(1.0)),
        "each interval once: {points:#?}"
    );
    assert!(
        stamps.len() >= 7,
        "{} intervals arrived: {points:#?}",
        stamps.len()
    );
    for w in stamps.windows(2) {
        assert_eq!(w[1] - w[0], 2.0, "no interval lost or merged: {stamps:?}");
    }
}

#[test]
fn a_buffer_smaller_than_the_outage_drops_the_oldest_and_counts_it() {
    let (peer, _fs, _tmp, mut d) =
        world("interval = \"1s\"\nhigh_resolution = true\nmax_buffered_intervals = 2");
    std::thread::sleep(Duration::from_secs(2));
    peer.go_down();
    let (_, first) = d.wait_for("dropped the oldest", Duration::from_secs(20));
    assert!(first.contains("dropped_total=1"), "{first}");
    std::thread::sleep(Duration::from_secs(2));
    peer.heal();
    d.wait_for("CloudWatch answers again", Duration::from_secs(60));
    d.stop();
    assert!(peer.failed("PutMetricData") >= 1, "the outage was real");
}

#[test]
fn sigterm_flushes_the_current_interval_within_two_seconds() {
    let began = SystemTime::now();
    let (peer, _fs, _tmp, d) = world("interval = \"60s\"");
    std::thread::sleep(Duration::from_secs(2));
    // Usually 0; 1 when the run happened to cross a minute boundary.
    let before = peer.calls("PutMetricData");
    let stopping = Instant::now();
    d.stop();
    assert!(
        stopping.elapsed() < Duration::from_secs(2),
        "exit took {:?}",
        stopping.elapsed()
    );
    assert!(
        eventually(Duration::from_secs(2), || peer.calls("PutMetricData")
            == before + 1),
        "the partial minute was flushed, once"
    );
    let points = peer.statistics(
        NS,
        "DiskUsedPercent",
        &[("Host", &host()), ("Volume", "docker")],
        began,
        60,
    );
    assert!(!points.is_empty(), "the flushed interval reads back");
}

#[test]
fn metrics_keep_their_cluster_name_while_ecs_cannot_be_read() {
    use support::aws::ecs_agent::{AgentMode, EcsAgent};
    // The ECS agent names the cluster; the ECS API itself never answers.
    let agent = EcsAgent::start(AgentMode::healthy(
        "prod",
        "arn:aws:ecs:us-east-1:123456789012:container-instance/prod/0a1b2c3d",
    ));
    let peer = CwPeer::start();
    let fs = LoopFs::new(64);
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path(), fs.path(), "interval = \"2s\"").to_owned();
    let text = std::fs::read_to_string(&cfg).expect("config");
    std::fs::write(
        &cfg,
        text.replace(
            "[ecs]\nenabled = false\n",
            &format!(
                "[ecs]\nenabled = true\nintrospection_url = {:?}\n",
                agent.url()
            ),
        ),
    )
    .expect("write config");
    let closed = format!("http://127.0.0.1:{}", support::processes::peer::free_port());
    let endpoint = peer.endpoint();
    let env = [
        ("AWS_ENDPOINT_URL_CLOUDWATCH", endpoint.as_str()),
        ("AWS_ENDPOINT_URL_ECS", closed.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ];
    let mut d = Daemon::start_with(&cfg, &env);
    d.wait_for("found this ECS container instance", Duration::from_secs(20));
    d.wait_for(
        "cannot read the ECS container instance",
        Duration::from_secs(60),
    );
    let named = eventually(Duration::from_secs(30), || {
        peer.list_metrics(NS).iter().any(|m| {
            m["MetricName"] == "DiskUsedPercent"
                && m["Dimensions"].as_array().is_some_and(|dims| {
                    dims.iter()
                        .any(|x| x["Name"] == "ClusterName" && x["Value"] == "prod")
                })
        })
    });
    assert!(
        named,
        "DiskUsedPercent with ClusterName=prod: {:#?}",
        peer.list_metrics(NS)
    );
    d.stop();
}

#[test]
fn imds_turned_off_is_never_asked_and_metrics_name_the_host() {
    use support::aws::imds::{Imds, InstanceIdentity};
    // An IMDS on loopback that would answer: with AWS_EC2_METADATA_DISABLED=true nothing
    // may ask it (nor the link-local address it stands for).
    let imds = Imds::start(InstanceIdentity::new("i-0123456789abcdef0", "us-east-1"));
    let peer = CwPeer::start();
    let fs = LoopFs::new(64);
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path(), fs.path(), "interval = \"2s\"");
    let endpoint = peer.endpoint();
    let imds_endpoint = imds.endpoint();
    let env = [
        ("AWS_ENDPOINT_URL_CLOUDWATCH", endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds_endpoint.as_str()),
    ];
    let mut d = Daemon::start_with(&cfg, &env);
    let (_, line) = d.wait_for("publishing metrics to CloudWatch", Duration::from_secs(20));
    assert!(line.contains("Host"), "the host names the metrics: {line}");
    let named = eventually(Duration::from_secs(20), || {
        peer.list_metrics(NS).iter().any(|m| {
            m["Dimensions"].as_array().is_some_and(|dims| {
                dims.iter()
                    .any(|x| x["Name"] == "Host" && x["Value"] == host().as_str())
            })
        })
    });
    assert!(named, "metrics with Host: {:#?}", peer.list_metrics(NS));
    d.stop();
    assert_eq!(
        imds.token_requests() + imds.metadata_requests(),
        0,
        "IMDS was asked"
    );
}
