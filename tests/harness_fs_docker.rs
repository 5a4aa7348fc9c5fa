//! Smoke tests for the filesystem and Docker half of the harness in
//! `tests/support`: loop-mounted ext4, a private dockerd on it, imported
//! images and containers. Each one drives a real peer, so a broken harness
//! fails here rather than inside a diskguard test. The other peers are in
//! `harness_services.rs`. Run as root after `scripts/test-deps.sh`.

use diskguard_testkit as support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::docker::dockerd::shim_socket_paths;
use support::docker::images::{self, ContainerOpts};
use support::fs::loopfs::{loop_devices_backed_by, mount_of};
use support::fs::mounts::is_mounted;
use support::processes::peer;
use support::processes::procs::{pid_alive, processes_mentioning};
use support::{Dockerd, LoopFs, LoopFsOptions};

#[test]
fn loopfs_mounts_ext4_and_cleans_up_after_panic() {
    let seen: std::sync::Mutex<Option<(PathBuf, PathBuf, String)>> = std::sync::Mutex::new(None);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let fs = LoopFs::new(32);
        let entry = mount_of(fs.path()).expect("loop fs mount missing from mountinfo");
        assert_eq!(entry.mount_point, fs.path());
        assert_eq!(entry.fstype, "ext4");
        assert_eq!(entry.source, fs.device());
        assert!(
            fs.device().starts_with("/dev/loop"),
            "device {}",
            fs.device()
        );
        std::fs::write(fs.path().join("hello"), b"hi").expect("writing to loop fs");
        *seen.lock().expect("lock") = Some((
            fs.path().to_owned(),
            fs.image().to_owned(),
            fs.device().to_owned(),
        ));
        panic!("deliberate panic with the LoopFs guard alive");
    }));
    assert!(result.is_err(), "the closure should have panicked");
    let (mount, image, device) = seen.lock().expect("lock").clone().expect("closure ran");
    assert!(
        !is_mounted(&mount),
        "{} still mounted after panic",
        mount.display()
    );
    assert!(
        loop_devices_backed_by(&image).is_empty(),
        "{device} still backed by {}",
        image.display()
    );
    assert!(!image.exists(), "image {} not deleted", image.display());
}

#[test]
fn loopfs_busy_mount_is_lazily_unmounted_and_its_loop_device_freed() {
    let fs = LoopFs::new(32);
    let (mount, image) = (fs.path().to_owned(), fs.image().to_owned());
    // An open file keeps the filesystem busy, so plain umount fails.
    let busy = std::fs::File::create(mount.join("held-open")).expect("open file on loop fs");
    drop(fs);
    assert!(
        !is_mounted(&mount),
        "busy mount {} not lazily unmounted",
        mount.display()
    );
    drop(busy);
    // The detached fs is released with its last user; autoclear frees the device.
    peer::wait_until("loop device to be freed", Duration::from_secs(10), || {
        loop_devices_backed_by(&image).is_empty().then_some(())
    });
}

#[test]
fn loopfs_fill_reaches_requested_byte_and_inode_percent() {
    let mut fs = LoopFs::with_options(&LoopFsOptions::new(64).inodes(2048));
    let before = fs.usage();
    assert!(
        before.used_percent() < 10.0,
        "fresh fs already {:.1}% used",
        before.used_percent()
    );
    assert!(
        before.blocks_free > before.blocks_avail,
        "default mkfs should reserve blocks for root"
    );
    assert!(
        (2048..2048 + 512).contains(&before.inodes),
        "asked for 2048 inodes, got {}",
        before.inodes
    );

    fs.fill_to_used_percent(80.0);
    let u = fs.usage();
    assert!(
        (80.0..82.0).contains(&u.used_percent()),
        "used {:.2}% after filling to 80%",
        u.used_percent()
    );
    // df rounds Use% up; the helper's percentage must agree with it.
    let df = peer::run_ok(Command::new("df").args(["--output=pcent"]).arg(fs.path()));
    let df_pct: f64 = df
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .trim_end_matches('%')
        .parse()
        .expect("df pcent");
    assert!(
        df_pct >= 80.0 && df_pct - u.used_percent() < 1.0,
        "df says {df_pct}%, helper {:.2}%",
        u.used_percent()
    );

    fs.fill_inodes_to_percent(90.0);
    let u = fs.usage();
    assert!(
        (90.0..92.0).contains(&u.inode_used_percent()),
        "inodes {:.2}% after filling to 90%",
        u.inode_used_percent()
    );

    fs.fill_to_used_percent(100.0);
    assert_eq!(
        fs.usage().blocks_avail,
        0,
        "100% must leave nothing available to non-root"
    );

    fs.remove_fill();
    let after = fs.usage();
    assert_eq!(
        after.inodes_used(),
        before.inodes_used(),
        "inodes not returned by remove_fill"
    );
    assert!(
        after.used_percent() < before.used_percent() + 1.0,
        "space not returned: {after:?} vs {before:?}"
    );
}

#[test]
fn loopfs_reserved_percent_and_journal_are_configurable() {
    let fs = LoopFs::with_options(&LoopFsOptions::new(64).reserved_percent(0).without_journal());
    let u = fs.usage();
    // ext4 still holds back ~2% (capped at 4096 blocks) from bavail, whatever -m says.
    let held_back = (u.blocks_free - u.blocks_avail) as f64 / u.blocks as f64;
    assert!(
        held_back < 0.03,
        "-m 0 should hold back only ext4's ~2%, got {:.2}%",
        held_back * 100.0
    );
    let default = LoopFs::new(64).usage();
    let default_held = (default.blocks_free - default.blocks_avail) as f64 / default.blocks as f64;
    assert!(
        default_held >= 0.05,
        "mkfs default should reserve 5% for root, got {:.2}%",
        default_held * 100.0
    );
    let features = peer::run_ok(Command::new("dumpe2fs").arg("-h").arg(fs.device()));
    assert!(
        !features.contains("has_journal"),
        "journal still present: {features}"
    );
}

#[test]
fn private_dockerd_serves_its_own_socket_on_the_loop_mount() {
    let t = Instant::now();
    let d = Dockerd::start_on_loopfs(&LoopFsOptions::new(512));
    eprintln!(
        "dockerd ready in {:?} ({:?} with mkfs and mount)",
        d.startup_time(),
        t.elapsed()
    );
    assert!(d.ping());
    assert_eq!(d.docker_host(), format!("unix://{}", d.socket().display()));
    assert_ne!(d.socket(), Path::new("/var/run/docker.sock"));

    let info: serde_json::Value =
        serde_json::from_slice(&d.api("GET", "/info", b"").body).expect("/info is JSON");
    assert_eq!(info["DockerRootDir"], d.data_root().display().to_string());
    assert_eq!(info["Driver"], "overlay2");
    let fs = d.loopfs().expect("started on a loop fs");
    let on = mount_of(d.data_root()).expect("data root not on any mount");
    assert_eq!(
        on.source,
        fs.device(),
        "data root {} is not on the loop device",
        d.data_root().display()
    );
    // The CLI reaches the same daemon, not the host's.
    let cli_root = images::docker_ok(&d, &["info", "--format", "{{.DockerRootDir}}"]);
    assert_eq!(cli_root, d.data_root().display().to_string());

    // dockerd's own containerd lives under the private exec root.
    let exec_root = d.exec_root().display().to_string();
    let containerd = processes_mentioning(&format!("{exec_root}/containerd/containerd.toml"));
    assert_eq!(
        containerd.len(),
        1,
        "expected one private containerd, got {containerd:?}"
    );

    let pid = d.pid();
    let dir = d.socket().parent().expect("socket dir").to_owned();
    let mount = fs.path().to_owned();
    let t = Instant::now();
    drop(d);
    eprintln!("dockerd teardown took {:?}", t.elapsed());
    assert!(!pid_alive(pid), "dockerd {pid} survived Drop");
    let left = processes_mentioning(&dir.display().to_string());
    assert!(left.is_empty(), "processes left after Drop: {left:?}");
    assert!(
        !is_mounted(&mount),
        "loop fs {} still mounted after Drop",
        mount.display()
    );
}

#[test]
fn dockerd_runs_on_a_caller_provided_data_root() {
    // Declared first so it is dropped after the daemon that uses it.
    let fs = LoopFs::with_options(&LoopFsOptions::new(256).reserved_percent(0));
    let d = Dockerd::start(fs.path().join("engine"));
    assert!(d.loopfs().is_none());
    let root = images::docker_ok(&d, &["info", "--format", "{{.DockerRootDir}}"]);
    assert_eq!(Path::new(&root), fs.path().join("engine"));
    drop(d);
    assert!(
        is_mounted(fs.path()),
        "the caller's fs must outlive the daemon"
    );
    assert!(fs.path().join("engine/image").is_dir());
}

#[test]
fn imported_image_has_the_requested_payload_size() {
    let d = Dockerd::start_on_loopfs(&LoopFsOptions::new(512));
    let payload = 7 * 1000 * 1000;
    let t = Instant::now();
    let id = images::import_image(&d, "diskguard-test/payload:7mb", payload);
    eprintln!("import of a 7 MB image took {:?}", t.elapsed());
    assert!(id.starts_with("sha256:") && id.len() == 71, "id {id}");
    let size = images::image_size(&d, "diskguard-test/payload:7mb");
    assert!(
        size >= payload,
        "image {size} B smaller than its {payload} B payload"
    );
    assert!(
        size < payload + 4_000_000,
        "image {size} B is far larger than payload + busybox"
    );
    assert!(images::image_ids(&d).contains(&id));

    images::tag_image(&d, &id, "diskguard-test/payload:alias");
    let tags = images::docker_ok(
        &d,
        &["image", "inspect", "--format", "{{json .RepoTags}}", &id],
    );
    assert!(
        tags.contains("diskguard-test/payload:alias") && tags.contains("payload:7mb"),
        "tags {tags}"
    );
    let other = images::import_image(&d, "diskguard-test/payload:other", payload);
    assert_ne!(other, id, "two imports of random payloads must differ");
    images::remove_image(&d, &other);
    assert!(!images::image_ids(&d).contains(&other));
}

#[test]
fn containers_reach_running_created_and_exited_states() {
    let d = Dockerd::start_on_loopfs(&LoopFsOptions::new(256));
    images::import_image(&d, "diskguard-test/box:1", 1000);
    let running = images::run_container(
        &d,
        "diskguard-test/box:1",
        &ContainerOpts::named("runner").label("diskguard.test", "yes"),
    );
    let created = images::create_container(&d, "diskguard-test/box:1", &ContainerOpts::default());
    let exited = images::run_exited_container(
        &d,
        "diskguard-test/box:1",
        &ContainerOpts::default().shell("echo hi > /tmp/x"),
    );
    assert_eq!(images::container_state(&d, &running), "running");
    let address = d.exec_root().join("containerd/containerd.sock");
    let shim_socket = shim_socket_paths(&[format!("{}/moby/{running}", address.display())]);
    assert!(shim_socket[0].exists(), "no shim socket at {shim_socket:?}");
    assert_eq!(images::container_state(&d, &created), "created");
    assert_eq!(images::container_state(&d, &exited), "exited");
    let label = images::docker_ok(
        &d,
        &[
            "inspect",
            "--format",
            "{{index .Config.Labels \"diskguard.test\"}}",
            "runner",
        ],
    );
    assert_eq!(label, "yes");
    assert_eq!(images::container_ids(&d, false), vec![running.clone()]);
    assert_eq!(images::container_ids(&d, true).len(), 3);

    let t = Instant::now();
    images::stop_container(&d, &running);
    assert_eq!(images::container_state(&d, &running), "exited");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        t.elapsed()
    );
    images::remove_container(&d, &running);
    assert_eq!(images::container_ids(&d, true).len(), 2);

    // A container still running at Drop must not leave its shim (or the
    // shim's socket in /run/containerd/s) behind.
    let last = images::run_container(&d, "diskguard-test/box:1", &ContainerOpts::default());
    let socket = shim_socket_paths(&[format!("{}/moby/{last}", address.display())]);
    let dir = d
        .socket()
        .parent()
        .expect("socket dir")
        .display()
        .to_string();
    drop(d);
    assert!(processes_mentioning(&dir).is_empty());
    assert!(
        !socket[0].exists(),
        "shim socket {:?} left behind",
        socket[0]
    );
}

#[test]
fn dockerd_restarts_after_sigkill_on_same_data_root() {
    let mut d = Dockerd::start_on_loopfs(&LoopFsOptions::new(256));
    let id = images::import_image(&d, "diskguard-test/survivor:1", 100_000);
    images::run_container(
        &d,
        "diskguard-test/survivor:1",
        &ContainerOpts::named("busy"),
    );
    let old_pid = d.pid();

    d.kill9();
    assert!(!pid_alive(old_pid), "dockerd {old_pid} alive after SIGKILL");
    assert!(!d.ping(), "socket still answers with dockerd killed");
    // Like a real crash: containerd goes with dockerd, the shim stays.
    let exec_root = d.exec_root().display().to_string();
    peer::wait_until(
        "containerd to die with dockerd",
        Duration::from_secs(10),
        || {
            processes_mentioning(&format!("{exec_root}/containerd/containerd.toml"))
                .is_empty()
                .then_some(())
        },
    );
    assert_eq!(
        processes_mentioning(&format!("-address {exec_root}/containerd/containerd.sock")).len(),
        1
    );

    d.restart();
    eprintln!("dockerd restart after SIGKILL took {:?}", d.startup_time());
    assert_ne!(d.pid(), old_pid);
    assert!(d.ping());
    assert!(
        images::image_ids(&d).contains(&id),
        "image lost across restart"
    );
    assert!(
        images::container_ids(&d, true).len() == 1,
        "container record lost across restart"
    );
    // Without live-restore, dockerd stops the containers left by the crash;
    // under --init that is prompt rather than a 10 s SIGTERM timeout.
    assert_eq!(images::container_state(&d, "busy"), "exited");
    assert!(
        d.startup_time() < Duration::from_secs(5),
        "restart took {:?}",
        d.startup_time()
    );
}
