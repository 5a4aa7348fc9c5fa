//! The Flatcar sysext image under a real systemd: merged with `systemd-sysext merge`, it
//! brings /usr/bin/diskguard and its unit, and the multi-user.target drop-in upholds the
//! service, so it starts without anything being enabled.
//!
//! Two stand-ins, both said here: the container's os-release is made Flatcar's (the image's
//! extension-release says ID=flatcar, and systemd-sysext refuses an extension for another
//! OS), and the image's filesystem is unpacked with unsquashfs into
//! /var/lib/extensions/diskguard, because a container has no loop devices to mount the .raw
//! (systemd-sysext merges a directory exactly as it merges a mounted image).

use diskguard_testkit as support;

use support::processes::peer::{Bin, binary, run_ok, temp_dir};
use support::systemd::node::{Serve, TEST_CONFIG, World, wait_running};

const FLATCAR_OS_RELEASE: &str = "NAME=\"Flatcar Container Linux by Kinvolk\"\nID=flatcar\nVERSION_ID=4081.2.0\nSYSEXT_LEVEL=1.0\n";

#[test]
fn merged_sysext_starts_diskguard_from_usr_through_upholds() {
    let world = World::new(Serve::Genuine);
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
    c.write_file(
        "/etc/diskguard/diskguard.toml",
        TEST_CONFIG.as_bytes(),
        0o644,
    );
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
