//! The leftovers report against a real, private dockerd on a loop-mounted ext4: what is left
//! on Docker's disk, by Docker's own account and as overlay2 directories nothing references.
//! Run as root after `scripts/test-deps.sh` (or `make test`); without dockerd, busybox or
//! loop devices the harness fails and says what to install.

use diskguard_testkit as support;

use std::collections::HashSet;
use std::io::Write;

use diskguard::docker::leftovers::{LeftoverKind, Leftovers};
use support::docker::images::{
    ContainerOpts, docker_ok, import_image, run_container, run_exited_container,
};
use support::docker::world::{MIB, World, world};

/// The directory the volume test writes, and the orphan directory's payload.
const VOLUME_BYTES: u64 = 150 * MIB;
const ORPHAN_BYTES: u64 = 30 * MIB;

fn report(w: &World) -> Leftovers {
    let (rt, _settings, source) = support::docker::client::docker_source(&w.config);
    rt.block_on(source.leftovers())
        .expect("leftovers from the private dockerd")
}

/// The overlay2 directory names `docker inspect` gives for an image or container.
fn layer_dirs(w: &World, id: &str) -> Vec<String> {
    let data = docker_ok(
        &w.d,
        &["inspect", "--format", "{{json .GraphDriver.Data}}", id],
    );
    let data: std::collections::HashMap<String, String> =
        serde_json::from_str(&data).unwrap_or_else(|e| panic!("GraphDriver of {id}: {e}: {data}"));
    diskguard::docker::leftovers::layer_dir_names(&data)
}

fn within_5_percent(got: u64, want: u64) -> bool {
    got.abs_diff(want) * 20 <= want
}

/// A directory under `<root>/overlay2` that no image or container references, holding
/// `bytes` in `diff/` as a layer would (written, not sparse, so it is allocated).
fn orphan_dir(w: &World, name: &str, bytes: u64) {
    let diff =
        w.d.data_root()
            .join("overlay2")
            .join(name)
            .join("diff/var/log");
    std::fs::create_dir_all(&diff).unwrap_or_else(|e| panic!("mkdir {}: {e}", diff.display()));
    let mut f = std::fs::File::create(diff.join("huge.log")).expect("orphan file");
    let chunk = vec![0xa5u8; MIB as usize];
    for _ in 0..bytes / MIB {
        f.write_all(&chunk).expect("writing the orphan file");
    }
    f.sync_all().expect("sync");
}

#[test]
fn the_report_lists_an_unused_volume_and_an_orphaned_layer_dir_largest_first() {
    let w = world(1024, "");
    let base = import_image(&w.d, "base:v1", 2 * MIB);
    import_image(&w.d, "unused:v1", 20 * MIB);

    // A named volume filled by a container that is gone since.
    docker_ok(&w.d, &["volume", "create", "pgdata"]);
    let count = format!("count={}", VOLUME_BYTES / MIB);
    docker_ok(
        &w.d,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            "pgdata:/data",
            "base:v1",
            "/bin/dd",
            "if=/dev/urandom",
            "of=/data/blob",
            "bs=1M",
            &count,
        ],
    );
    let stopped = run_exited_container(
        &w.d,
        "base:v1",
        &ContainerOpts::named("stopped").shell("dd if=/dev/urandom of=/junk bs=1M count=5"),
    );
    let running = run_container(&w.d, "base:v1", &ContainerOpts::named("running"));
    let orphan = "0badc0de".repeat(8);
    orphan_dir(&w, &orphan, ORPHAN_BYTES);

    let r = report(&w);
    let listing = format!("{:#?}", r.items);

    let volume = (r.items.iter())
        .find(|i| i.kind == LeftoverKind::Volume && i.name == "pgdata")
        .unwrap_or_else(|| panic!("the volume is listed by name:\n{listing}"));
    assert!(
        within_5_percent(volume.bytes, VOLUME_BYTES),
        "volume measured {} for {VOLUME_BYTES} written",
        volume.bytes
    );
    assert_eq!(volume.in_use, Some(0), "no container references pgdata");

    let unreferenced: Vec<_> = (r.items.iter())
        .filter(|i| i.kind == LeftoverKind::UnreferencedDir)
        .collect();
    assert_eq!(
        unreferenced
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>(),
        [orphan.as_str()],
        "only the orphan is unreferenced:\n{listing}"
    );
    assert!(
        within_5_percent(unreferenced[0].bytes, ORPHAN_BYTES),
        "orphan measured {} for {ORPHAN_BYTES} written",
        unreferenced[0].bytes
    );
    assert!(!unreferenced[0].at_least);

    // The layers of images, of the running container (its -init layer too) and of the
    // stopped one are Docker's, whatever else the report says.
    let mut used: HashSet<String> = HashSet::new();
    for id in [base.as_str(), "unused:v1", &running, &stopped] {
        used.extend(layer_dirs(&w, id));
    }
    assert!(
        used.iter().any(|d| d.ends_with("-init")),
        "a container's init layer is among them: {used:?}"
    );
    assert!(unreferenced.iter().all(|i| !used.contains(&i.name)));
    // Nothing was built: the build cache is BuildKit's empty databases (~90 KiB). More
    // would be image or container layers (≥ 2 MiB each here) that the GraphDriver data
    // failed to claim and only the layer store named.
    let cache: u64 = (r.items.iter())
        .filter(|i| i.kind == LeftoverKind::BuildCache)
        .map(|i| i.bytes)
        .sum();
    assert!(
        cache < MIB,
        "build cache {cache} B on an engine that never built:\n{listing}"
    );

    let image = (r.items.iter())
        .find(|i| i.kind == LeftoverKind::Image && i.name == "unused:v1")
        .unwrap_or_else(|| panic!("the unused image is listed:\n{listing}"));
    assert_eq!(image.in_use, Some(0));
    let base_image = (r.items.iter())
        .find(|i| i.kind == LeftoverKind::Image && i.name == "base:v1")
        .unwrap_or_else(|| panic!("the base image is listed:\n{listing}"));
    assert_eq!(
        base_image.in_use,
        Some(2),
        "used by the stopped and the running container"
    );
    let layer = (r.items.iter())
        .find(|i| i.kind == LeftoverKind::Container && i.name == "stopped")
        .unwrap_or_else(|| panic!("the stopped container's layer is listed:\n{listing}"));
    assert!(layer.bytes >= 5 * MIB, "writable layer {}", layer.bytes);

    assert!(
        r.items.windows(2).all(|p| p[0].bytes >= p[1].bytes),
        "largest first:\n{listing}"
    );
    assert_eq!(r.items[0].name, "pgdata", "{listing}");
    assert_eq!(r.total, r.items.iter().map(|i| i.bytes).sum::<u64>());
    assert!(
        r.unaccounted_errors.is_empty(),
        "{:?}",
        r.unaccounted_errors
    );

    let line = r.summary(3);
    assert!(
        line.starts_with("left on the disk: volume pgdata 15") && line.contains("(unused)"),
        "{line}"
    );
    assert!(
        line.contains(&format!("unreferenced overlay2 dir {}…", &orphan[..12])),
        "{line}"
    );
    eprintln!("{line}");
    eprintln!(
        "volume: {} B for {VOLUME_BYTES} B written; orphan: {} B for {ORPHAN_BYTES} B written",
        volume.bytes, unreferenced[0].bytes
    );
}

#[test]
fn a_volume_in_use_counts_its_container_and_nothing_is_unreferenced_on_a_clean_engine() {
    let w = world(256, "");
    import_image(&w.d, "base:v1", 2 * MIB);
    docker_ok(&w.d, &["volume", "create", "cache"]);
    docker_ok(
        &w.d,
        &[
            "run",
            "--detach",
            "--name",
            "user",
            "--network",
            "none",
            "--init",
            "-v",
            "cache:/c",
            "base:v1",
            "/bin/sh",
            "-c",
            "dd if=/dev/urandom of=/c/f bs=1M count=8; touch /c/done; sleep 86400",
        ],
    );
    let done = w.d.data_root().join("volumes/cache/_data/done");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !done.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the container never wrote {}",
            done.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let r = report(&w);
    let listing = format!("{:#?}", r.items);
    let volume = (r.items.iter())
        .find(|i| i.kind == LeftoverKind::Volume && i.name == "cache")
        .unwrap_or_else(|| panic!("the volume is listed:\n{listing}"));
    assert_eq!(volume.in_use, Some(1), "{listing}");
    assert!(
        r.items
            .iter()
            .all(|i| i.kind != LeftoverKind::UnreferencedDir),
        "every layer dir of a clean engine is referenced:\n{listing}"
    );
    assert!(r.summary(5).contains("volume cache"), "{}", r.summary(5));
}
