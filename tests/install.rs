//! The install path under a real systemd (PID 1 in a container on the tests' private
//! dockerd): user data applied as coreos-cloudinit / Ignition would, the install oneshot
//! downloading the release tarball from a loopback server and checking its sha256, and
//! diskguard.service behaving as its unit says — READY and STATUS=, the watchdog, exit 78
//! without a restart loop, a quick stop, structured journal fields. See `support::systemd::node`
//! for what the node is and why nothing leaves the machine.

use diskguard_testkit as support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::systemd::node::{SETTLE, Serve, World, wait_running};

/// `systemctl stop` must come back within this (the limit).
const STOP_LIMIT: Duration = Duration::from_secs(2);

#[test]
fn cloud_config_installs_the_verified_tarball_and_starts_diskguard() {
    let mut world = World::new(Serve::Genuine);
    // Above prune_start, so diskguard logs a level change with VOLUME and LEVEL fields.
    world.docker_root.fill_to_used_percent(85.0);
    let (c, commands) = world.boot_with_cloud_config();

    let start = commands
        .iter()
        .find(|r| r.unit == "diskguard.service")
        .expect("the cloud-config starts diskguard.service");
    assert!(
        start.ok,
        "systemctl start diskguard.service: {}",
        start.output
    );
    // No Docker in the container, so Flatcar's ECS agent unit cannot start; diskguard only
    // Wants it, and must start regardless.
    let ecs = commands
        .iter()
        .find(|r| r.unit == "amazon-ecs-agent.service")
        .expect("the cloud-config starts the ECS agent");
    assert!(!ecs.ok, "the ECS agent started without Docker?");

    world.assert_installed_once(&c);

    let running = wait_running(&c);
    let status = &running["StatusText"];
    assert!(
        status.contains("docker 8") && status.contains("prune"),
        "StatusText {status:?} does not show the Docker volume at ~85%"
    );
    let version = c.stdout(&["/opt/bin/diskguard", "--version"]);
    assert!(version.contains(&world.release.sha), "{version}");

    // journald got diskguard's structured fields, and the hardened service reached the
    // Docker socket.
    let json = c.stdout(&[
        "journalctl",
        "-u",
        "diskguard.service",
        "-o",
        "json",
        "--no-pager",
    ]);
    let entries: Vec<Value> = json
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let field = |e: &Value, k: &str| e.get(k).and_then(Value::as_str).map(str::to_owned);
    assert!(
        entries
            .iter()
            .any(|e| field(e, "VOLUME").as_deref() == Some("docker")
                && field(e, "LEVEL").as_deref() == Some("prune")
                && field(e, "USAGE_PERCENT").is_some()
                && field(e, "SYSLOG_IDENTIFIER").as_deref() == Some("diskguard")),
        "no entry with VOLUME=docker LEVEL=prune USAGE_PERCENT in:\n{json}"
    );
    assert!(
        entries
            .iter()
            .any(|e| field(e, "MESSAGE").is_some_and(|m| m.starts_with("connected to Docker"))),
        "diskguard never reached the Docker socket:\n{}",
        c.journal("diskguard.service")
    );

    // The installed units, as systemd on the node sees them.
    c.assert_verify_clean(&[
        "/etc/systemd/system/diskguard.service",
        "/etc/systemd/system/diskguard-install.service",
    ]);
}

#[test]
fn tampered_tarball_fails_the_install_and_diskguard_never_starts() {
    let world = World::new(Serve::Tampered);
    let (c, commands) = world.boot_with_cloud_config();

    let start = commands
        .iter()
        .find(|r| r.unit == "diskguard.service")
        .expect("the cloud-config starts diskguard.service");
    assert!(!start.ok, "diskguard.service started on a tampered tarball");
    let install = c.show("diskguard-install.service", &["ActiveState", "Result"]);
    assert_eq!(install["ActiveState"], "failed", "{install:?}");
    assert_eq!(install["Result"], "exit-code", "{install:?}");
    world.assert_install_refused(&c);
}

#[test]
fn frozen_diskguard_is_killed_by_the_watchdog_and_restarted() {
    let world = World::new(Serve::Genuine);
    let (c, _) = world.boot_with_cloud_config();
    let before = wait_running(&c);
    let pid = before["MainPID"].clone();
    // The shell's kill: the image has no procps.
    c.stdout(&["sh", "-c", &format!("kill -STOP {pid}")]);

    let after = c.wait_for(
        "diskguard.service",
        &["ActiveState", "SubState", "NRestarts", "MainPID"],
        SETTLE,
        "restarted after the watchdog fired",
        |p| {
            p.get("NRestarts").is_some_and(|n| n != "0")
                && p.get("ActiveState").is_some_and(|s| s == "active")
                && p.get("MainPID").is_some_and(|m| *m != pid && m != "0")
        },
    );
    assert_eq!(after["NRestarts"], "1", "{after:?}");
    let log = c.journal("diskguard.service");
    assert!(
        log.contains("Watchdog timeout") && log.contains("Failed with result 'watchdog'"),
        "no watchdog kill in the journal:\n{log}"
    );
}

#[test]
fn bad_config_fails_with_status_78_and_no_restart_loop() {
    let world = World::new(Serve::Genuine);
    let (c, _) = world.boot_with_cloud_config();
    wait_running(&c);
    c.write_file(
        "/etc/diskguard/diskguard.toml",
        b"[thresholds]\ndran = 90\n",
        0o644,
    );
    let restart = c.exec(&["systemctl", "restart", "diskguard.service"]);
    assert!(
        !restart.status.success(),
        "restart with a bad config succeeded"
    );

    let failed = c.wait_for(
        "diskguard.service",
        &[
            "ActiveState",
            "Result",
            "ExecMainStatus",
            "NRestarts",
            "RestartUSec",
        ],
        SETTLE,
        "failed",
        |p| p.get("ActiveState").is_some_and(|s| s == "failed"),
    );
    assert_eq!(failed["ExecMainStatus"], "78", "{failed:?}");
    assert_eq!(failed["Result"], "exit-code", "{failed:?}");
    // Twice the restart delay: a restart, had one been scheduled, would have happened.
    let restart_delay =
        humantime::parse_duration(&failed["RestartUSec"]).unwrap_or(Duration::from_secs(5));
    std::thread::sleep(restart_delay * 2);
    let later = c.show("diskguard.service", &["ActiveState", "NRestarts"]);
    assert_eq!(later["ActiveState"], "failed", "{later:?}");
    assert_eq!(
        later["NRestarts"], "0",
        "restarted after exit 78: {later:?}"
    );
    let log = c.journal("diskguard.service");
    assert!(log.contains("status=78/CONFIG"), "journal:\n{log}");
    assert!(
        log.contains("thresholds.dran"),
        "the key is not named:\n{log}"
    );
}

#[test]
fn systemctl_stop_returns_within_2s_and_diskguard_exits_cleanly() {
    let world = World::new(Serve::Genuine);
    let (c, _) = world.boot_with_cloud_config();
    wait_running(&c);
    let started = Instant::now();
    c.stdout(&["systemctl", "stop", "diskguard.service"]);
    let took = started.elapsed();
    eprintln!("systemctl stop diskguard.service took {took:?} (docker exec included)");
    assert!(took < STOP_LIMIT, "systemctl stop took {took:?}");
    let stopped = c.show(
        "diskguard.service",
        &["ActiveState", "Result", "ExecMainStatus"],
    );
    assert_eq!(stopped["ActiveState"], "inactive", "{stopped:?}");
    assert_eq!(stopped["Result"], "success", "{stopped:?}");
    assert_eq!(stopped["ExecMainStatus"], "0", "{stopped:?}");
}

#[test]
fn ignition_leaves_a_verified_tarball_that_the_install_unit_only_unpacks() {
    let world = World::new(Serve::Genuine);
    let c = world.boot_with_ignition();
    // Ignition (the applier, playing it) fetched the tarball once and checked its hash.
    assert_eq!(world.requests(), 1);
    c.stdout(&["systemctl", "start", "diskguard.service"]);
    wait_running(&c);
    assert_eq!(world.requests(), 1, "the install unit downloaded again");
    let log = c.journal("diskguard-install.service");
    assert!(
        log.contains("is there and its sha256 matches"),
        "install log:\n{log}"
    );
}
