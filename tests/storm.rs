//! Reclaim under an event storm: crash-looping containers (`--restart always` on a
//! command that exits at once) send the engine's events stream a container event every
//! few hundred milliseconds while another container fills the disk past `prune_start`.
//! Every event used to refresh the inventory, and a pass only ran on a plan made from the
//! newest one, so under such a storm no pass ever started. Now the pass must start and
//! the first image delete must come — the latency is printed (the 1.5 s goal is measured
//! in BENCHMARKS.md); the test's bound only catches "never".

use diskguard_testkit as support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use support::docker::events::EngineEvents;
use support::docker::images::{ContainerOpts, docker_ok, import_image, run_container};
use support::fs::loopfs::fs_usage;
use support::processes::daemon::Daemon;
use support::{Dockerd, LoopFsOptions};

const MIB: u64 = 1 << 20;
/// Catches a pass that never comes; the goal itself is 1.5 s.
const NEVER: Duration = Duration::from_secs(15);

fn write_config(dir: &Path, host: &str, root: &Path) -> PathBuf {
    let path = dir.join("diskguard.toml");
    std::fs::write(
        &path,
        format!(
            // Defaults otherwise: 1 s sampling, the inventory every 30 s and after events.
            "[docker]\nhost = {host:?}\nroot = {:?}\nmin_image_age = \"0s\"\n\
             [etcd]\nenabled = false\n[ecs]\nenabled = false\n[cloudwatch]\nenabled = false\n",
            root.display().to_string()
        ),
    )
    .expect("config");
    path
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

#[test]
fn under_a_crash_loop_storm_a_pass_starts_and_the_first_image_is_deleted() {
    let d = Dockerd::start_on_loopfs(&LoopFsOptions::new(512));
    for i in 0..20 {
        import_image(&d, &format!("old{i}:v1"), 4 * MIB);
    }
    let crash = import_image(&d, "crash:v1", 0);
    let writer = import_image(&d, "writer:v1", 0);
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = write_config(tmp.path(), &d.docker_host(), d.data_root());
    let mut daemon = Daemon::start(&config);
    daemon.wait_for("Docker inventory read", Duration::from_secs(30));
    let events = EngineEvents::follow(&d, &[]);

    let stop = AtomicBool::new(false);
    let loopers = AtomicUsize::new(0);
    std::thread::scope(|s| {
        // The engine backs a crash loop off (100 ms, doubling): a new looper every
        // second keeps the storm at several container events a second throughout.
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) && loopers.load(Ordering::Relaxed) < 30 {
                docker_ok(
                    &d,
                    &[
                        "run",
                        "--detach",
                        "--restart",
                        "always",
                        "--network",
                        "none",
                        &crash,
                        "/bin/true",
                    ],
                );
                loopers.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        let storm_began = SystemTime::now();
        support::processes::peer::wait_until("the storm to start", Duration::from_secs(30), || {
            (events.count("container", "die") >= 10).then_some(())
        });

        // Enough to cross prune_start (80 %) by a margin, written into the writer's layer.
        let u = fs_usage(d.data_root());
        let capacity = (u.used_blocks() + u.blocks_avail) * u.block_size;
        let to_write =
            ((0.83 * capacity as f64) as u64).saturating_sub(u.used_blocks() * u.block_size) / MIB
                + 1;
        run_container(
            &d,
            &writer,
            &ContainerOpts::named("writer").shell(&format!(
                "dd if=/dev/zero of=/fill bs=1M count={to_write} 2>/dev/null; sleep 3600"
            )),
        );
        let crossed = loop {
            if fs_usage(d.data_root()).used_percent() >= 80.0 {
                break SystemTime::now();
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let deleted = events.first_after("image", "delete", crossed, NEVER);
        // The engine says `untag` when a removal begins and `delete` once the layers are
        // gone from disk: the gap between them is the engine's own work.
        let untagged = events.first_after("image", "untag", crossed, Duration::ZERO);
        stop.store(true, Ordering::Relaxed);
        let (started, line) = daemon.wait_for("reclaim pass started", NEVER);
        let Some(deleted) = deleted else {
            panic!(
                "no image deleted within {NEVER:?} of crossing prune_start; the daemon said:\n{}",
                daemon.seen.join("\n")
            );
        };
        let since = |t: SystemTime| t.duration_since(crossed).unwrap_or_default();
        let storm = events
            .all()
            .iter()
            .filter(|e| e.kind == "container" && e.at >= storm_began && e.at <= deleted.at)
            .count();
        let storm_secs = deleted
            .at
            .duration_since(storm_began)
            .unwrap_or_default()
            .as_secs_f64();
        println!(
            "storm: {storm} container events in {storm_secs:.1}s ({:.1}/s) from {} crash loopers",
            storm as f64 / storm_secs,
            loopers.load(Ordering::Relaxed)
        );
        println!(
            "crossing → pass started {} ms, → first untag {} ms, → first image delete {} ms ({line})",
            ms(since(started)),
            untagged.map_or(0, |u| ms(since(u.at))),
            ms(since(deleted.at))
        );
        assert!(
            storm as f64 / storm_secs >= 1.0,
            "the storm was real: {storm} container events in {storm_secs:.1}s"
        );
        assert!(since(deleted.at) < NEVER);
    });
    daemon.stop();
}
