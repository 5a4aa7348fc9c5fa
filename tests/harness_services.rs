//! Smoke tests for the service half of the harness in `tests/support`:
//! moto_server, etcd, and the cleanup after a test process that is killed
//! with its peers running. Each one drives a real peer, so a broken harness
//! fails here rather than inside a diskguard test. The loop filesystem and
//! dockerd are in `harness_fs_docker.rs`. Run as root after `scripts/test-deps.sh`.

use diskguard_testkit as support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::docker::dockerd::sweep_stale;
use support::docker::images::{self, ContainerOpts};
use support::fs::loopfs::{mount_of, mounts};
use support::processes::peer;
use support::processes::procs::{pid_alive, processes_mentioning};
use support::{Dockerd, Etcd, LoopFs, LoopFsOptions, Moto};

#[test]
fn moto_server_answers_ecs_list_clusters() {
    let moto = Moto::start();
    eprintln!("moto_server ready in {:?}", moto.startup_time());
    assert!(moto.endpoint().starts_with("http://127.0.0.1:"));
    let target = "AmazonEC2ContainerServiceV20141113";
    let r = moto.aws_json(&format!("{target}.ListClusters"), "ecs", "{}");
    assert_eq!(r.status, 200, "ListClusters: {}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("ListClusters JSON");
    assert_eq!(v["clusterArns"], serde_json::json!([]));

    let r = moto.aws_json(
        &format!("{target}.CreateCluster"),
        "ecs",
        r#"{"clusterName":"dg"}"#,
    );
    assert_eq!(r.status, 200, "CreateCluster: {}", r.text());
    let v: serde_json::Value = serde_json::from_slice(
        &moto
            .aws_json(&format!("{target}.ListClusters"), "ecs", "{}")
            .body,
    )
    .expect("JSON");
    assert_eq!(
        v["clusterArns"][0],
        "arn:aws:ecs:us-east-1:123456789012:cluster/dg"
    );
}

#[test]
fn etcd_starts_with_small_quota() {
    let quota = 4 * 1024 * 1024;
    let etcd = Etcd::start(quota);
    eprintln!("etcd ready in {:?}", etcd.startup_time());
    assert_eq!(
        etcd.metric("etcd_server_quota_backend_bytes"),
        Some(quota as f64)
    );
    // base64("diskguard") / base64("ok"): the v3 JSON gateway takes bytes.
    let put = etcd.request(
        "POST",
        "/v3/kv/put",
        r#"{"key":"ZGlza2d1YXJk","value":"b2s="}"#,
    );
    assert_eq!(put.status, 200, "put: {}", put.text());
    let get = etcd.request("POST", "/v3/kv/range", r#"{"key":"ZGlza2d1YXJk"}"#);
    assert!(
        get.text().contains(r#""value":"b2s=""#),
        "range: {}",
        get.text()
    );
    assert!(etcd.data_dir().join("member/snap/db").exists());
}

#[test]
fn etcd_keeps_its_data_dir_on_a_given_loopfs() {
    // etcd preallocates two 64 MB WAL segments on first boot.
    let fs = LoopFs::new(256);
    let etcd = Etcd::start_in(2 * 1024 * 1024, fs.path());
    assert!(etcd.data_dir().starts_with(fs.path()));
    assert_eq!(
        mount_of(&etcd.data_dir().join("member/snap/db")).map(|m| m.source),
        Some(fs.device().to_owned())
    );
    drop(etcd);
}

/// Not a test on its own: the child half of the test below. It starts peers,
/// reports them on stdout, and waits to be SIGKILLed.
#[test]
#[ignore = "helper process for killed_test_process_leaves_nothing_behind"]
fn helper_holds_peers_until_killed() {
    if std::env::var_os("DISKGUARD_HELPER").is_none() {
        return;
    }
    let d = Dockerd::start_on_loopfs(&LoopFsOptions::new(256));
    images::import_image(&d, "diskguard-test/orphan:1", 1000);
    images::run_container(&d, "diskguard-test/orphan:1", &ContainerOpts::default());
    let etcd = Etcd::start(1 << 20);
    let tmp = d.socket().parent().expect("dir").display().to_string();
    println!("READY {} {} {tmp}", d.pid(), etcd.pid());
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn killed_test_process_leaves_nothing_behind() {
    let exe = std::env::current_exe().expect("current test binary");
    let mut child = Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            "helper_holds_peers_until_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("DISKGUARD_HELPER", "1")
        .stdout(Stdio::piped())
        // Inherited so a helper that fails before READY shows why.
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning helper test process");
    let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    // The harness prints "test helper_… ... " before our line, without a newline.
    let line = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.split_once("READY ").map(|(_, rest)| rest.to_owned()))
        .expect("helper never got ready");
    let fields: Vec<&str> = line.split(' ').collect();
    let (dockerd_pid, etcd_pid, dir): (u32, u32, &str) = (
        fields[0].parse().expect("pid"),
        fields[1].parse().expect("pid"),
        fields[2],
    );
    child.kill().expect("SIGKILL helper");
    child.wait().expect("reaping helper");

    // Parent-death signal: the peers die with the test process.
    peer::wait_until(
        "peers to die with their test process",
        Duration::from_secs(10),
        || (!pid_alive(dockerd_pid) && !pid_alive(etcd_pid)).then_some(()),
    );
    // The container's shim and the loop mount outlive it until the next sweep.
    // (Another test process starting now may run the sweep first; either
    // way the helper's dirs must be gone afterwards.)
    sweep_stale();
    assert!(!Path::new(dir).exists(), "sweep left {dir}");
    let helper_prefix = format!("diskguard-t{}-", child.id());
    let left = processes_mentioning(&helper_prefix);
    assert!(left.is_empty(), "left running: {left:?}");
    let mounted: Vec<_> = mounts()
        .into_iter()
        .filter(|m| m.mount_point.display().to_string().contains(&helper_prefix))
        .collect();
    assert!(mounted.is_empty(), "left mounted: {mounted:?}");
}
