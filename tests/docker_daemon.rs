//! The daemon against a real, private dockerd: it reacts to a filling disk, names what
//! filled it, survives dockerd dying mid-pass, and in observe mode removes nothing.

use diskguard_testkit as support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use support::docker::images::{ContainerOpts, image_ids, import_image, run_container};
use support::docker::slowsock::SlowSocket;
use support::fs::loopfs::fs_usage;
use support::processes::daemon::Daemon;
use support::{Dockerd, LoopFsOptions};

const MIB: u64 = 1 << 20;

fn write_config(dir: &Path, host: &str, root: &Path, extra: &str) -> PathBuf {
    let path = dir.join("diskguard.toml");
    std::fs::write(
        &path,
        format!(
            "{extra}\n[sample]\ninterval = \"1s\"\ninventory_interval = \"2s\"\n\
             [docker]\nhost = {host:?}\nroot = {:?}\nmin_image_age = \"1s\"\n[etcd]\nenabled = false\n",
            root.display().to_string()
        ),
    )
    .expect("config");
    path
}

fn used_percent(root: &Path) -> f64 {
    fs_usage(root).used_percent()
}

#[test]
fn daemon_reacts_to_a_container_filling_its_layer_and_names_it() {
    let d = Dockerd::start_on_loopfs(&LoopFsOptions::new(512));
    for i in 0..20 {
        import_image(&d, &format!("old{i}:v1"), 4 * MIB);
    }
    let writer_image = import_image(&d, "writer:v1", MIB);
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = write_config(tmp.path(), &d.docker_host(), d.data_root(), "");
    std::thread::sleep(Duration::from_millis(1100)); // past min_image_age
    let mut daemon = Daemon::start(&config);
    daemon.wait_for("Docker inventory read", Duration::from_secs(30));

    // Enough to cross prune_start (80 %) by a margin, written into the container's layer.
    let u = fs_usage(d.data_root());
    let capacity = (u.used_blocks() + u.blocks_avail) * u.block_size;
    let to_write =
        ((0.83 * capacity as f64) as u64).saturating_sub(u.used_blocks() * u.block_size) / MIB + 1;
    let script =
        format!("sleep 1; dd if=/dev/zero of=/fill bs=1M count={to_write} 2>/dev/null; sleep 3600");
    run_container(
        &d,
        &writer_image,
        &ContainerOpts::named("writer")
            .label("com.amazonaws.ecs.task-definition-family", "web")
            .label("com.amazonaws.ecs.container-name", "app")
            .shell(&script),
    );
    // Watch the crossing from here, every 10 ms.
    let crossed = loop {
        if used_percent(d.data_root()) >= 80.0 {
            break SystemTime::now();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (started, line) = daemon.wait_for("reclaim pass started", Duration::from_secs(30));
    let latency = started.duration_since(crossed).unwrap_or_default();
    println!("reaction latency: {} ms ({line})", latency.as_millis());
    // The goal (1.5 s) is measured in BENCHMARKS.md; this bound only catches a daemon
    // that does not react on its own at all.
    assert!(
        latency < Duration::from_secs(10),
        "pass started {latency:?} after the crossing"
    );
    // The actor measures writers right after the pass, never before it.
    let (_, done) = daemon.wait_for("reclaim pass done", Duration::from_secs(60));
    assert!(done.contains(" 0 errors"), "{done}");
    let (_, writers) = daemon.wait_for("top writers on the Docker volume", Duration::from_secs(30));
    assert!(
        writers.contains("writer") && writers.contains("(task web, container app)"),
        "{writers}"
    );
    let top = writers.split("volume: ").nth(1).unwrap_or("");
    assert!(top.starts_with("writer "), "the writer is first: {writers}");
    daemon.stop();
}

#[test]
fn dockerd_killed_mid_pass_then_restarted_and_the_next_pass_completes() {
    let mut d = Dockerd::start_on_loopfs(&LoopFsOptions::new(512));
    for i in 0..40 {
        import_image(&d, &format!("img{i}:v1"), MIB);
    }
    // Each request waits 300 ms on its way to dockerd, so the pass takes long enough to
    // be interrupted.
    let slow = SlowSocket::start(&d.socket(), Duration::from_millis(300));
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = write_config(tmp.path(), &slow.docker_host(), d.data_root(), "");
    std::thread::sleep(Duration::from_millis(1100));
    let mut daemon = Daemon::start(&config);
    daemon.wait_for("Docker inventory read", Duration::from_secs(30));

    d.loopfs_mut().expect("loop fs").fill_to_used_percent(85.0);
    daemon.wait_for("reclaim pass started", Duration::from_secs(30));
    // At once: every request waits 300 ms in the forwarder before it reaches dockerd, so
    // the first removals in flight find it dead.
    d.kill9();
    let (_, done) = daemon.wait_for("reclaim pass done", Duration::from_secs(120));
    assert!(
        !done.contains(" 0 errors"),
        "the interrupted pass counts its errors: {done}"
    );
    assert!(daemon.running(), "the daemon survives dockerd dying");

    d.restart();
    daemon.wait_for("Docker events stream reconnected", Duration::from_secs(60));
    daemon.wait_for("reclaim pass started", Duration::from_secs(60));
    let (_, done) = daemon.wait_for("reclaim pass done", Duration::from_secs(120));
    assert!(done.contains(" 0 errors"), "{done}");
    Command::new("sync")
        .arg("-f")
        .arg(d.data_root())
        .status()
        .expect("sync");
    assert!(used_percent(d.data_root()) <= 70.0, "{done}");
    daemon.stop();
}

#[test]
fn observe_mode_logs_the_plan_and_removes_nothing() {
    let mut d = Dockerd::start_on_loopfs(&LoopFsOptions::new(256));
    for i in 0..10 {
        import_image(&d, &format!("img{i}:v1"), 4 * MIB);
    }
    let before = image_ids(&d);
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        tmp.path(),
        &d.docker_host(),
        d.data_root(),
        "mode = \"observe\"",
    );
    std::thread::sleep(Duration::from_millis(1100));
    let mut daemon = Daemon::start(&config);
    daemon.wait_for("Docker inventory read", Duration::from_secs(30));
    d.loopfs_mut().expect("loop fs").fill_to_used_percent(85.0);
    let (_, line) = daemon.wait_for("observe mode: would reclaim", Duration::from_secs(30));
    daemon.wait_for("observe mode: would remove", Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        image_ids(&d),
        before,
        "observe mode removed something after: {line}"
    );
    assert!(
        daemon
            .seen
            .iter()
            .all(|l| !l.contains("reclaim pass started"))
    );
    daemon.stop();
}
