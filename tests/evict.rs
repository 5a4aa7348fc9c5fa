//! Eviction against a real, private dockerd on a loop-mounted ext4: a container writing
//! at ~100 MB/s is stopped and removed before the disk is full, while a canary keeps
//! writing; the ECS agent, pause, protected and kept containers are never the one.

use diskguard_testkit as support;

use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use support::docker::images::{ContainerOpts, docker_ok, import_image, run_container};
use support::docker::world::{MIB, World, world};
use support::fs::watch::{PeakWatch, container_state};
use support::processes::daemon::{Daemon, log_number};
use support::processes::peer::{free_port, http_tcp};

/// ~100 MB/s into the container's own layer: 5 MiB with dd, a 50 ms pause, again.
const FAST_WRITER: &str = "i=0; while true; do dd if=/dev/zero of=/w$i bs=1M count=5 2>/dev/null; i=$((i+1)); usleep 50000; done";
/// A small append every 100 ms; exits 1 the first time a write fails.
const CANARY: &str = "while echo alive >> /canary.log; do usleep 100000; done; exit 1";

fn ecs_labels(opts: ContainerOpts, family: &str) -> ContainerOpts {
    opts.label("com.amazonaws.ecs.task-definition-family", family)
        .label(
            "com.amazonaws.ecs.task-arn",
            &format!("arn:aws:ecs:us-east-1:123456789012:task/prod/{family}-0001"),
        )
        .label("com.amazonaws.ecs.container-name", "main")
}

/// A Docker disk of `mib` MiB filled to `pct`, a canary running, and diskguard watching
/// it with `top` (top-level keys) and `docker` (`[docker]` keys) in its configuration.
fn scene(mib: u64, pct: f64, top: &str, docker: &str) -> (World, String, Daemon) {
    let mut w = world(mib, docker);
    if !top.is_empty() {
        let text = std::fs::read_to_string(&w.config).expect("config");
        std::fs::write(&w.config, format!("{top}\n{text}")).expect("write config");
    }
    let image = import_image(&w.d, "app:v1", MIB);
    let canary = run_container(
        &w.d,
        &image,
        &ecs_labels(ContainerOpts::named("canary"), "canary").shell(CANARY),
    );
    w.d.loopfs_mut().expect("loop fs").fill_to_used_percent(pct);
    let mut daemon = Daemon::start(&w.config);
    daemon.wait_for("Docker inventory read", Duration::from_secs(30));
    (w, canary, daemon)
}

/// Writes `mib` MiB a second (1 MiB at a time) for `seconds`, then sleeps.
fn writer(mib: u32, seconds: u32) -> String {
    format!(
        "i=0; while [ $i -lt {n} ]; do dd if=/dev/zero of=/w$i bs=1M count=1 2>/dev/null; i=$((i+1)); usleep {pause}; done; sleep 3600",
        n = seconds * mib,
        pause = 1_000_000 / mib,
    )
}

#[test]
fn a_fast_writer_is_evicted_before_the_disk_is_full_and_the_canary_lives() {
    let (w, canary, mut daemon) = scene(1024, 70.0, "", "");
    let image = import_image(&w.d, "bad:v1", MIB);
    let watch = PeakWatch::start(w.d.data_root().to_owned());
    let started = Instant::now();
    let bad = run_container(
        &w.d,
        &image,
        &ecs_labels(ContainerOpts::named("bad"), "bad-task").shell(FAST_WRITER),
    );
    let (_, line) = daemon.wait_for("evicting container bad", Duration::from_secs(60));
    for field in [
        "task_family=\"bad-task\"",
        "task_arn=\"arn:aws:ecs:",
        "written_bytes=",
        "bytes_per_second=",
    ] {
        assert!(line.contains(field), "{field} in {line}");
    }
    daemon.wait_for("evicted container bad", Duration::from_secs(30));
    let took = started.elapsed();
    thread::sleep(Duration::from_secs(1));
    let peak = watch.peak();
    println!("eviction: writer started → removed in {took:?}, peak {peak:.1}%");
    assert!(peak < 100.0, "the disk reached {peak:.1}%");
    assert_eq!(
        container_state(&w.d, &bad),
        "gone",
        "removed, its layer freed"
    );
    assert_eq!(
        container_state(&w.d, &canary),
        "running",
        "the canary never failed a write"
    );
    daemon.stop();
}

/// Floods stdout with 4 KiB lines: dockerd writes them into the json log, not the
/// container's own cgroup or layer.
const STDOUT_FLOOD: &str = "yes $(head -c 4000 /dev/zero | tr '\\0' x)";

#[test]
fn a_container_flooding_stdout_is_evicted_as_the_writer_before_the_disk_is_full() {
    let (w, canary, mut daemon) = scene(1024, 70.0, "", "");
    let image = import_image(&w.d, "chatty:v1", MIB);
    let watch = PeakWatch::start(w.d.data_root().to_owned());
    let started = Instant::now();
    // Docker's default log options: json-file, no max-size.
    let flood = run_container(
        &w.d,
        &image,
        &ecs_labels(ContainerOpts::named("flood"), "chatty-task").shell(STDOUT_FLOOD),
    );
    let (_, line) = daemon.wait_for("evicting container flood", Duration::from_secs(60));
    assert!(line.contains("task_family=\"chatty-task\""), "{line}");
    let rate = log_number(&line, "bytes_per_second");
    daemon.wait_for("evicted container flood", Duration::from_secs(30));
    let took = started.elapsed();
    thread::sleep(Duration::from_secs(1));
    let peak = watch.peak();
    println!(
        "stdout flood at {:.0} MB/s: started → removed in {took:?}, peak {peak:.1}%",
        rate / 1e6
    );
    // How fast dockerd writes the log is the machine's (87–181 MB/s here, BENCHMARKS.md); the test
    // asserts that the meter saw a flood at all, which the cgroup v2 meter alone did not.
    assert!(rate >= 20e6, "metered as a flood: {line}");
    assert!(peak < 100.0, "the disk reached {peak:.1}%");
    assert_eq!(
        container_state(&w.d, &flood),
        "gone",
        "its log went with it"
    );
    assert_eq!(container_state(&w.d, &canary), "running");
    daemon.stop();
}

#[test]
fn the_ecs_agent_pause_protected_and_kept_containers_are_never_evicted() {
    // 2 GiB at 81 %: ~390 MiB left. The four spared containers write 4 MiB/s each for
    // 20 s and are the biggest writers; `next` writes 1 MiB/s. Together the disk is full
    // in ~20 s, sooner than a drain could help: an eviction is due, and only `next` may go.
    let (w, _canary, mut daemon) = scene(2048, 81.0, "", "protect = [\"amazon/*\", \"mine/*\"]");
    let agent = import_image(&w.d, "amazon/amazon-ecs-agent:latest", MIB);
    let mine = import_image(&w.d, "mine/db:v1", MIB);
    let plain = import_image(&w.d, "plain:v1", MIB);
    let spared_writer = writer(4, 20);
    let spared = [
        run_container(
            &w.d,
            &agent,
            &ContainerOpts::named("ecs-agent").shell(&spared_writer),
        ),
        run_container(
            &w.d,
            &plain,
            &ContainerOpts::named("pause")
                .label("com.amazonaws.ecs.container-name", "~internal~ecs~pause")
                .shell(&spared_writer),
        ),
        run_container(
            &w.d,
            &mine,
            &ContainerOpts::named("mine").shell(&spared_writer),
        ),
        run_container(
            &w.d,
            &plain,
            &ContainerOpts::named("kept")
                .label("diskguard.keep", "true")
                .shell(&spared_writer),
        ),
    ];
    let next = run_container(
        &w.d,
        &plain,
        &ecs_labels(ContainerOpts::named("next"), "next-task").shell(&writer(1, 60)),
    );
    let (_, line) = daemon.wait_for("evicting container next", Duration::from_secs(60));
    for why in [
        "the ECS agent",
        "pause container",
        "image is protected",
        "diskguard.keep=true",
    ] {
        assert!(
            line.contains(why),
            "passed over with the reason {why}: {line}"
        );
    }
    daemon.wait_for("evicted container next", Duration::from_secs(30));
    assert_eq!(container_state(&w.d, &next), "gone");
    // With only spared writers left, nothing goes, and diskguard says why.
    daemon.wait_for("nothing may be evicted", Duration::from_secs(60));
    for id in &spared {
        assert_eq!(container_state(&w.d, id), "running", "{id} spared");
    }
    assert_eq!(
        daemon.count("evicting container"),
        1,
        "{}",
        daemon.seen.join("\n")
    );
    daemon.stop();
}

#[test]
fn observe_mode_names_the_writer_and_stops_nothing() {
    let (w, _canary, mut daemon) = scene(1024, 70.0, "mode = \"observe\"", "");
    let image = import_image(&w.d, "bad:v1", MIB);
    let bad = run_container(
        &w.d,
        &image,
        &ecs_labels(ContainerOpts::named("bad"), "bad-task").shell(
            // Writes 300 MiB and stops: enough to be seen, not enough to fill the disk.
            "i=0; while [ $i -lt 60 ]; do dd if=/dev/zero of=/w$i bs=1M count=5 2>/dev/null; i=$((i+1)); usleep 50000; done; sleep 3600",
        ),
    );
    let (_, line) = daemon.wait_for(
        "observe mode: would evict container bad",
        Duration::from_secs(60),
    );
    assert!(line.contains("bad-task"), "{line}");
    thread::sleep(Duration::from_secs(2));
    assert_eq!(
        container_state(&w.d, &bad),
        "running",
        "observe mode stops nothing"
    );
    assert_eq!(daemon.count("evicting container"), 0);
    daemon.stop();
}

fn chattr(flag: &str, path: &Path) {
    let out = Command::new("chattr")
        .arg(flag)
        .arg(path)
        .output()
        .expect("chattr (e2fsprogs)");
    assert!(
        out.status.success(),
        "chattr {flag} {}: {out:?}",
        path.display()
    );
}

/// The `Evictions` count of `family` on the daemon's /metrics, 0 when it has no series.
fn evictions(listen: &str, family: &str) -> u64 {
    let text = http_tcp(listen, "GET", "/metrics", &[], b"")
        .expect("scrape /metrics")
        .text();
    text.lines()
        .filter(|l| l.starts_with("diskguard_evictions") && l.contains(&format!("\"{family}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|n| n as u64)
        .sum()
}

#[test]
fn a_container_that_stops_but_cannot_be_removed_is_counted_once_and_removed_when_it_can_be() {
    let listen = format!("127.0.0.1:{}", free_port());
    // The configuration starts with a table, so this one can go first.
    let prometheus = format!("[prometheus]\nlisten = \"{listen}\"");
    let (w, _canary, mut daemon) = scene(1024, 70.0, &prometheus, "");
    let image = import_image(&w.d, "bad:v1", MIB);
    // A file the storage driver cannot unlink while it is immutable: the stop works, the
    // removal fails (500 from overlay2), as with a layer busy or a driver in trouble.
    let bad = run_container(
        &w.d,
        &image,
        &ecs_labels(ContainerOpts::named("bad"), "bad-task")
            .shell(&format!("touch /pinned; sleep 2; {FAST_WRITER}")),
    );
    let upper = docker_ok(
        &w.d,
        &["inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", &bad],
    );
    let pinned = Path::new(&upper).join("pinned");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !pinned.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            pinned.display()
        );
        thread::sleep(Duration::from_millis(50));
    }
    chattr("+i", &pinned);

    daemon.wait_for("evicting container bad", Duration::from_secs(60));
    let (_, line) = daemon.wait_for(
        "stopped container bad (it writes no more), but could not remove it",
        Duration::from_secs(30),
    );
    println!("removal failed as arranged: {line}");
    let state = container_state(&w.d, &bad);
    assert!(state == "exited" || state == "dead", "stopped: {state}");
    assert_eq!(
        evictions(&listen, "bad-task"),
        1,
        "counted when it stopped writing"
    );

    // Once the file can go, a retry removes the container, and it is not counted again.
    let since = Instant::now();
    chattr("-i", &pinned);
    daemon.wait_for(
        "evicted container bad: stopped and removed",
        Duration::from_secs(30),
    );
    println!("removed {:?} after it became removable", since.elapsed());
    assert_eq!(container_state(&w.d, &bad), "gone");
    assert_eq!(evictions(&listen, "bad-task"), 1, "counted once");
    assert_eq!(daemon.count("evicting container bad"), 1);
    assert_eq!(daemon.count("could not evict"), 0);
    daemon.stop();
}
