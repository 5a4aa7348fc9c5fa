//! The Flatcar sysext image under a real systemd: merged with `systemd-sysext merge`, it
//! brings /usr/bin/diskguard and its unit, and the multi-user.target drop-in upholds the
//! service, so it starts without anything being enabled; with a bad config, the unit's
//! start limit ends the attempts Upholds= keeps making.
//!
//! Two stand-ins, both said here: the container's os-release is made Flatcar's (the image's
//! extension-release says ID=flatcar, and systemd-sysext refuses an extension for another
//! OS), and the image's filesystem is unpacked with unsquashfs into
//! /var/lib/extensions/diskguard, because a container has no loop devices to mount the .raw
//! (systemd-sysext merges a directory exactly as it merges a mounted image).

use diskguard_testkit as support;

use std::time::Duration;

use support::processes::peer::{Bin, binary, run_ok, temp_dir};
use support::systemd::container::SystemdContainer;
use support::systemd::node::{SETTLE, Serve, TEST_CONFIG, World, wait_running};

const FLATCAR_OS_RELEASE: &str = "NAME=\"Flatcar Container Linux by Kinvolk\"\nID=flatcar\nVERSION_ID=4081.2.0\nSYSEXT_LEVEL=1.0\n";

/// Boots a node that looks like Flatcar, with `config` at /etc/diskguard/diskguard.toml,
/// and merges the release's sysext into it.
fn merged_node<'w>(world: &'w World, config: &str) -> SystemdContainer<'w> {
    let unpacked = temp_dir("sysext");
    let tree = unpacked.path().join("diskguard");
    run_ok(
        std::process::Command::new(binary(Bin::Unsquashfs))
            .args(["-q", "-no-progress", "-d"])
            .arg(&tree)
            .arg(&world.release.sysext),
    );
    let c = world.boot();
    c.stdout(&["rm", "-f", "/etc/os-release"]);
    c.write_file("/etc/os-release", FLATCAR_OS_RELEASE.as_bytes(), 0o644);
    c.write_file("/etc/diskguard/diskguard.toml", config.as_bytes(), 0o644);
    c.stdout(&["mkdir", "-p", "/var/lib/extensions"]);
    let copy = world
        .dockerd
        .docker()
        .args(["cp"])
        .arg(&tree)
        .arg(format!("{}:/var/lib/extensions/diskguard", c.name))
        .output()
        .expect("docker cp");
    assert!(
        copy.status.success(),
        "docker cp: {}",
        String::from_utf8_lossy(&copy.stderr)
    );

    let merge = c.exec(&["systemd-sysext", "merge"]);
    assert!(
        merge.status.success(),
        "systemd-sysext merge: {}",
        String::from_utf8_lossy(&merge.stderr)
    );
    c
}

#[test]
fn merged_sysext_starts_diskguard_from_usr_through_upholds() {
    let world = World::new(Serve::Genuine);
    let c = merged_node(&world, TEST_CONFIG);
    let status = c.stdout(&["systemd-sysext", "status"]);
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("/usr") && l.contains("diskguard")),
        "{status}"
    );
    // Merging changes /usr; systemd sees the new units on reload, and the target's
    // Upholds= starts the service.
    c.stdout(&["systemctl", "daemon-reload"]);
    let running = wait_running(&c);
    assert_eq!(running["NRestarts"], "0", "{running:?}");
    let unit = c.show(
        "diskguard.service",
        &["FragmentPath", "DropInPaths", "ExecStart", "UnitFileState"],
    );
    assert!(
        unit["ExecStart"].contains("path=/usr/bin/diskguard"),
        "{unit:?}"
    );
    assert!(unit["DropInPaths"].contains("10-sysext.conf"), "{unit:?}");
    let upheld_by = c.property("diskguard.service", "UpheldBy");
    assert!(
        upheld_by.contains("multi-user.target"),
        "UpheldBy={upheld_by}"
    );
    let version = c.stdout(&["/usr/bin/diskguard", "--version"]);
    assert!(version.contains(&world.release.sha), "{version}");

    c.assert_verify_clean(&["diskguard.service"]);
}

/// Upholds= starts a unit whatever its exit status: RestartPreventExitStatus=78 does not
/// apply to it. With a bad config, the unit's own start limit (StartLimitBurst= in
/// StartLimitIntervalSec=) is what bounds the attempts; systemd keeps asking (and logging
/// "tried this too often recently") every 10 s without starting it. The operator's way
/// out, as the README says: fix the file, `systemctl reset-failed diskguard`.
#[test]
fn merged_sysext_with_a_bad_config_is_started_at_most_its_start_limit() {
    let world = World::new(Serve::Genuine);
    let c = merged_node(&world, "[thresholds]\ndran = 90\n");
    c.stdout(&["systemctl", "daemon-reload"]);
    let held_back = "not starting since we tried this too often recently";
    let failed = c.wait_for(
        "diskguard.service",
        &["ActiveState", "Result", "ExecMainStatus"],
        SETTLE,
        "failed and held back by its start limit",
        |p| {
            p.get("ActiveState").is_some_and(|s| s == "failed")
                && c.journal("diskguard.service").contains(held_back)
        },
    );
    assert_eq!(failed["ExecMainStatus"], "78", "{failed:?}");
    let burst: usize = unit_setting("StartLimitBurst")
        .parse()
        .expect("StartLimitBurst");
    let exits = |log: &str| log.matches("status=78/CONFIG").count();
    let log = c.journal("diskguard.service");
    let at_limit = exits(&log);
    assert!(
        (1..=burst).contains(&at_limit),
        "{at_limit} exits with status 78, more than StartLimitBurst={burst}:\n{log}"
    );
    assert!(
        log.contains("thresholds.dran"),
        "the key is not named:\n{log}"
    );

    // Past one of systemd's 10 s retries of the upheld unit: asked again, not started.
    std::thread::sleep(Duration::from_secs(12));
    let log = c.journal("diskguard.service");
    let later = c.show("diskguard.service", &["ActiveState"]);
    assert_eq!(later["ActiveState"], "failed", "{later:?}\n{log}");
    assert_eq!(
        exits(&log),
        at_limit,
        "started again within the limit:\n{log}"
    );

    c.write_file(
        "/etc/diskguard/diskguard.toml",
        TEST_CONFIG.as_bytes(),
        0o644,
    );
    c.stdout(&["systemctl", "reset-failed", "diskguard.service"]);
    wait_running(&c);
}

/// A `Key=value` of units/diskguard.service.
fn unit_setting(key: &str) -> String {
    let unit = include_str!("../units/diskguard.service");
    unit.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("units/diskguard.service has no {key}="))
        .trim()
        .to_string()
}
