//! `diskguard doctor` against fixtures: etcd's data dir and Docker's root on one loop fs
//! or on two; every finding triggered by its bad default and cleared by applying its own
//! one-line fix — files, loop filesystems and a private dockerd, all real; and, on an ECS
//! instance, its Auto Scaling group from moto (the instance id from the IMDS mock).

use diskguard_testkit as support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::Moto;
use support::aws::asg::AutoScaling;
use support::aws::ecs_cluster::aws_env_with_imds;
use support::aws::ecs_world::{EcsWorld, REGION};
use support::aws::imds::{Imds, InstanceIdentity};
use support::docker::images::{docker_ok, import_image};
use support::{Dockerd, LoopFs, LoopFsOptions};

const MIB: u64 = 1 << 20;

/// The files a host has: daemon.json, ecs.config, a systemd dir with diskguard's unit and
/// etcd's; and the config that points doctor at them.
struct Host {
    dir: tempfile::TempDir,
    docker_host: String,
    docker_root: PathBuf,
    root_fs: PathBuf,
    /// The `[ecs]` section: off for the file fixtures (no IMDS, no AWS), on for the Auto
    /// Scaling check.
    ecs: &'static str,
    env: Vec<(&'static str, String)>,
}

impl Host {
    fn new(docker_host: &str, docker_root: &Path) -> Host {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("systemd/etcd-member.service.d")).expect("mkdir");
        let host = Host {
            docker_host: docker_host.to_owned(),
            docker_root: docker_root.to_owned(),
            // The temp dir is on the host's filesystem, not on any loop fs.
            root_fs: dir.path().to_owned(),
            dir,
            ecs: "enabled = false",
            env: Vec::new(),
        };
        host.write(
            "daemon.json",
            r#"{"log-driver": "json-file", "log-opts": {"max-size": "10m", "max-file": "3"}}"#,
        );
        host.write("ecs.config", "ECS_CLUSTER=prod\nECS_IMAGE_CLEANUP_INTERVAL=10m\nECS_NUM_IMAGES_DELETE_PER_CYCLE=20\n");
        // As Flatcar ships it; the drop-in below moves the data dir.
        host.write(
            "systemd/etcd-member.service",
            "[Service]\nEnvironment=\"ETCD_DATA_DIR=/var/lib/etcd\"\nExecStart=/usr/lib/coreos/etcd-wrapper\n",
        );
        host.write(
            "systemd/diskguard.service",
            "[Service]\nType=notify\nExecStart=/opt/bin/diskguard run\nWatchdogSec=30s\n",
        );
        host
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).expect("write fixture");
    }

    fn remove(&self, name: &str) {
        std::fs::remove_file(self.path(name)).expect("remove fixture");
    }

    /// etcd's data dir, as etcd-member's drop-in says (discovery, not the config).
    fn etcd_data_dir(&self, dir: &Path) {
        std::fs::create_dir_all(dir).expect("mkdir etcd dir");
        self.write(
            "systemd/etcd-member.service.d/20-data-dir.conf",
            &format!(
                "[Service]\nEnvironment=\"ETCD_DATA_DIR={}\"\n",
                dir.display()
            ),
        );
    }

    fn doctor(&self) -> (i32, Value) {
        let s = |p: PathBuf| p.display().to_string();
        let config = self.path("diskguard.toml");
        std::fs::write(
            &config,
            format!(
                "[docker]\nhost = {:?}\nroot = {:?}\n[etcd]\nenabled = false\n[ecs]\n{}\n\
                 [host]\nsystemd_dirs = [{:?}]\ndocker_daemon_json = {:?}\necs_config = {:?}\nroot_fs = {:?}\n",
                self.docker_host,
                s(self.docker_root.clone()),
                self.ecs,
                s(self.path("systemd")),
                s(self.path("daemon.json")),
                s(self.path("ecs.config")),
                s(self.root_fs.clone()),
            ),
        )
        .expect("config");
        let out = Command::new(env!("CARGO_BIN_EXE_diskguard"))
            .arg("--config")
            .arg(&config)
            .args(["doctor", "--json"])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("diskguard runs");
        let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "doctor --json: {e}: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap_or(-1), json)
    }

    fn ids(&self) -> Vec<String> {
        let (code, json) = self.doctor();
        let ids: Vec<String> = json["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .map(|f| f["id"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(
            code,
            i32::from(!ids.is_empty()),
            "exit 0 clean, 1 findings: {json:#}"
        );
        ids
    }
}

#[test]
fn etcd_on_dockers_loop_fs_is_reported_and_on_its_own_is_not() {
    let docker_fs = LoopFs::new(64);
    let etcd_fs = LoopFs::new(64);
    let docker_root = docker_fs.path().join("docker");
    std::fs::create_dir_all(&docker_root).expect("mkdir");
    let host = Host::new("unix:///nonexistent/docker.sock", &docker_root);
    host.etcd_data_dir(&docker_fs.path().join("etcd"));
    let (code, json) = host.doctor();
    assert_eq!(code, 1);
    let shared = json["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["id"] == "etcd-shares-docker-fs")
        .unwrap_or_else(|| panic!("no etcd-shares-docker-fs: {json:#}"));
    assert!(
        shared["problem"]
            .as_str()
            .is_some_and(|p| p.contains("same filesystem"))
    );
    assert_eq!(shared["docs"], "docs/doctor.md#etcd-shares-docker-fs");
    assert!(
        json["not_checked"].to_string().contains("nonexistent"),
        "Docker not answering is said, not a finding: {json:#}"
    );
    host.etcd_data_dir(&etcd_fs.path().join("etcd"));
    assert!(!host.ids().contains(&"etcd-shares-docker-fs".to_owned()));
}

fn run(d: &Dockerd, name: &str, image: &str, log_limit: bool) {
    let mut args = vec![
        "run",
        "--detach",
        "--network",
        "none",
        "--init",
        "--name",
        name,
    ];
    if log_limit {
        args.extend(["--log-opt", "max-size=10m"]);
    }
    args.push(image);
    docker_ok(d, &args);
}

#[test]
fn every_finding_is_triggered_by_a_fixture_and_cleared_by_its_own_fix() {
    let d = Dockerd::start_on_loopfs(&LoopFsOptions::new(256));
    import_image(&d, "app:1.0", MIB);
    run(&d, "app", "app:1.0", true);
    let mut root = LoopFs::new(64);
    let mut small = LoopFs::with_options(&LoopFsOptions::new(64).inodes(2048));
    let etcd_fs = LoopFs::new(64);
    let mut host = Host::new(&d.docker_host(), d.data_root());
    host.etcd_data_dir(&etcd_fs.path().join("etcd"));
    assert_eq!(host.ids(), Vec::<String>::new(), "the fixtures start clean");

    let expect =
        |host: &Host, id: &str| assert_eq!(host.ids(), vec![id.to_owned()], "triggering {id}");
    let clean = |host: &Host, id: &str| assert_eq!(host.ids(), Vec::<String>::new(), "fixing {id}");

    let daemon_json = std::fs::read_to_string(host.path("daemon.json")).expect("read");
    host.write("daemon.json", r#"{"log-driver": "json-file"}"#);
    expect(&host, "docker-log-no-max-size");
    host.write("daemon.json", &daemon_json);
    clean(&host, "docker-log-no-max-size");

    host.etcd_data_dir(&d.data_root().join("etcd"));
    expect(&host, "etcd-shares-docker-fs");
    host.etcd_data_dir(&etcd_fs.path().join("etcd"));
    clean(&host, "etcd-shares-docker-fs");

    // Docker's root on the "root filesystem" (a loop fs standing in for it), 85 % full.
    root.fill_to_used_percent(85.0);
    let on_root = root.path().join("var-lib-docker");
    std::fs::create_dir_all(&on_root).expect("mkdir");
    (host.docker_root, host.root_fs) = (on_root, root.path().to_owned());
    expect(&host, "docker-root-on-root-fs");
    host.docker_root = d.data_root().to_owned();
    clean(&host, "docker-root-on-root-fs");

    let ecs = std::fs::read_to_string(host.path("ecs.config")).expect("read");
    host.write("ecs.config", "ECS_CLUSTER=prod\n");
    expect(&host, "ecs-image-cleanup-defaults");
    host.write(
        "ecs.config",
        "ECS_CLUSTER=prod
ECS_IMAGE_CLEANUP_INTERVAL=10m
ECS_NUM_IMAGES_DELETE_PER_CYCLE=20
",
    );
    clean(&host, "ecs-image-cleanup-defaults");
    host.write(
        "ecs.config",
        &format!("{ecs}ECS_DISABLE_IMAGE_CLEANUP=true\n"),
    );
    expect(&host, "ecs-image-cleanup-disabled");
    host.write("ecs.config", &ecs);
    clean(&host, "ecs-image-cleanup-disabled");
    host.write(
        "ecs.config",
        &format!("{ecs}ECS_IMAGE_PULL_BEHAVIOR=prefer-cached\n"),
    );
    expect(&host, "ecs-prefer-cached");
    host.write(
        "ecs.config",
        &format!("{ecs}ECS_IMAGE_PULL_BEHAVIOR=default\n"),
    );
    clean(&host, "ecs-prefer-cached");

    import_image(&d, "cron:latest", MIB);
    run(&d, "cron", "cron:latest", true);
    expect(&host, "image-latest-only");
    docker_ok(&d, &["rm", "--force", "cron"]);
    docker_ok(&d, &["tag", "cron:latest", "cron:2.1"]);
    docker_ok(&d, &["rmi", "cron:latest"]);
    run(&d, "cron", "cron:2.1", true);
    clean(&host, "image-latest-only");

    run(&d, "chatty", "app:1.0", false);
    expect(&host, "container-log-no-limit");
    // It names the container with its log, and both fixes.
    let (_, json) = host.doctor();
    let f = &json["findings"][0];
    let problem = f["problem"].as_str().unwrap_or_default();
    assert!(problem.contains("chatty (log "), "{f:#}");
    let fix = f["fix"].as_str().unwrap_or_default();
    for both in ["max-size", "new containers only", "logConfiguration"] {
        assert!(fix.contains(both), "{both}: {f:#}");
    }
    docker_ok(&d, &["rm", "--force", "chatty"]);
    run(&d, "chatty", "app:1.0", true);
    clean(&host, "container-log-no-limit");

    small.fill_inodes_to_percent(95.0);
    host.docker_root = small.path().to_owned();
    expect(&host, "inode-headroom-low");
    small.remove_fill();
    clean(&host, "inode-headroom-low");
    host.docker_root = d.data_root().to_owned();

    let unit = std::fs::read_to_string(host.path("systemd/diskguard.service")).expect("read");
    host.remove("systemd/diskguard.service");
    expect(&host, "diskguard-unit-missing");
    host.write("systemd/diskguard.service", &unit);
    clean(&host, "diskguard-unit-missing");
    host.write(
        "systemd/diskguard.service",
        &unit.replace("WatchdogSec=30s\n", ""),
    );
    expect(&host, "diskguard-unit-no-watchdog");
    host.write("systemd/diskguard.service", &unit);
    clean(&host, "diskguard-unit-no-watchdog");

    // The text form says the same, with the fix and the link.
    let (_, json) = host.doctor();
    assert_eq!(
        json["not_checked"],
        serde_json::json!([]),
        "everything was looked at"
    );
}

/// An ECS host whose instance id the IMDS mock gives, with Auto Scaling in moto.
fn ecs_host(moto: &Moto, imds: &Imds) -> Host {
    let mut host = Host::new(
        "unix:///nonexistent/docker.sock",
        Path::new("/nonexistent/docker-root"),
    );
    host.ecs = "enabled = true";
    host.env = aws_env_with_imds(&moto.endpoint(), &imds.endpoint());
    // The daemon reaches every AWS service at the peer; Auto Scaling passes through it.
    host.env
        .push(("AWS_ENDPOINT_URL_AUTO_SCALING", moto.endpoint()));
    host
}

fn warning_ids(json: &Value) -> Vec<String> {
    json["warnings"]
        .as_array()
        .unwrap_or_else(|| panic!("no warnings list: {json:#}"))
        .iter()
        .map(|f| f["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn an_instance_in_a_group_is_named_with_its_grace_period_and_one_outside_is_a_warning() {
    let moto = Moto::start();
    let world = EcsWorld::seed(&moto, "prod", 2);
    let (inside, outside) = (
        world.members()[0].ec2_instance_id.clone(),
        world.members()[1].ec2_instance_id.clone(),
    );
    AutoScaling::new(&moto).create_group(
        "ecs-nodes",
        Duration::from_secs(240),
        &world.members()[..1],
    );

    let imds = Imds::start(InstanceIdentity::new(&inside, REGION));
    let (code, json) = ecs_host(&moto, &imds).doctor();
    let group = &json["auto_scaling_group"];
    assert_eq!(group["name"], "ecs-nodes", "{json:#}");
    assert_eq!(group["instance_id"], inside.as_str());
    assert_eq!(group["health_check_grace_period_seconds"], 240);
    assert_eq!(group["tagged_for_escalation"], true);
    assert_eq!(warning_ids(&json), Vec::<String>::new());
    assert!(
        !json["not_checked"].to_string().contains("Auto Scaling"),
        "{json:#}"
    );
    let calls = moto.ecs().autoscaling_counts();
    assert_eq!(
        (
            calls.get("DescribeAutoScalingInstances"),
            calls.get("DescribeAutoScalingGroups")
        ),
        (Some(&1), Some(&1)),
        "{calls:?}"
    );
    // Docker is absent here (not checked, not a finding): the exit code is the findings'.
    assert_eq!(
        code,
        i32::from(json["findings"].as_array().is_some_and(|f| !f.is_empty()))
    );

    let imds = Imds::start(InstanceIdentity::new(&outside, REGION));
    let (code, json) = ecs_host(&moto, &imds).doctor();
    assert_eq!(
        warning_ids(&json),
        vec!["not-in-auto-scaling-group".to_owned()]
    );
    let problem = json["warnings"][0]["problem"].as_str().unwrap_or_default();
    assert!(
        problem.starts_with("escalation unavailable: not in an Auto Scaling group")
            && problem.contains(&outside),
        "{problem}"
    );
    assert_eq!(json["auto_scaling_group"], Value::Null);
    assert_eq!(
        code,
        i32::from(json["findings"].as_array().is_some_and(|f| !f.is_empty())),
        "a warning does not fail doctor"
    );
}

#[test]
fn a_failed_auto_scaling_call_is_not_checked_and_names_the_call() {
    let moto = Moto::start();
    let world = EcsWorld::seed(&moto, "prod", 1);
    let me = world.members()[0].ec2_instance_id.clone();
    let imds = Imds::start(InstanceIdentity::new(&me, REGION));
    let mut host = ecs_host(&moto, &imds);
    // Nothing listens there: the call fails (after the SDK's retries) and doctor says so.
    let closed = format!("http://127.0.0.1:{}", support::processes::peer::free_port());
    host.env
        .retain(|(k, _)| *k != "AWS_ENDPOINT_URL_AUTO_SCALING");
    host.env.push(("AWS_ENDPOINT_URL_AUTO_SCALING", closed));
    let (_, json) = host.doctor();
    let not_checked = json["not_checked"].to_string();
    assert!(
        not_checked.contains(&format!(
            "Auto Scaling group: Auto Scaling DescribeAutoScalingInstances for instance {me}: "
        )),
        "{json:#}"
    );
    assert_eq!(warning_ids(&json), Vec::<String>::new());
    assert_eq!(json["auto_scaling_group"], Value::Null);
}
