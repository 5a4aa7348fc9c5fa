//! Docker benchmarks against a private dockerd on a loop-mounted ext4 (root and the test
//! peers needed: `make deps`). `cargo bench --bench docker`; figures go to BENCHMARKS.md.
//!
//! 1. Reclaiming 100 unused ~7 MB images: `diskguard prune` vs `docker image prune -a`,
//!    side by side on the same image set, three rounds each.
//! 2. Inventory time with 1,000 images and 500 containers, cold (first read, every
//!    image inspected once) and warm (the steady state every `inventory_interval`).

use diskguard_testkit as support;

use std::io::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use support::docker::images::{ContainerOpts, docker_ok, image_ids, import_image};
use support::{Dockerd, LoopFsOptions};

const MIB: u64 = 1 << 20;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn import_set(d: &Dockerd, round: usize) {
    for i in 0..100 {
        // busybox (~2 MB) + 5 MiB payload ≈ 7 MB each.
        import_image(d, &format!("bench{round}-{i}:v1"), 5 * MIB);
    }
}

fn prune_comparison(d: &Dockerd, config: &std::path::Path) -> (Vec<Duration>, Vec<Duration>) {
    let (mut docker_times, mut ours) = (Vec::new(), Vec::new());
    for round in 0..3 {
        import_set(d, round * 2);
        let t = Instant::now();
        docker_ok(d, &["image", "prune", "-a", "-f"]);
        docker_times.push(t.elapsed());
        assert!(image_ids(d).is_empty(), "docker image prune -a left images");

        import_set(d, round * 2 + 1);
        std::thread::sleep(Duration::from_millis(1100)); // min_image_age
        let t = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_diskguard"))
            .arg("--config")
            .arg(config)
            .arg("prune")
            .output()
            .expect("diskguard prune");
        ours.push(t.elapsed());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            image_ids(d).is_empty(),
            "diskguard prune left images:\n{text}"
        );
        eprintln!(
            "round {round}: docker {:?}, diskguard {:?} — {}",
            docker_times[round],
            ours[round],
            text.lines().last().unwrap_or("")
        );
    }
    (docker_times, ours)
}

/// 1,000 distinct images sharing one layer, in one `docker load` (importing them one by
/// one would take minutes): a docker-save archive written by hand.
fn load_thousand_images(d: &Dockerd) {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = r#"
import hashlib, io, json, os, sys, tarfile
out = sys.argv[1]
layer = io.BytesIO()
with tarfile.open(fileobj=layer, mode="w") as t:
    data = b"diskguard bench layer\n"
    info = tarfile.TarInfo("bench.txt"); info.size = len(data); t.addfile(info, io.BytesIO(data))
layer = layer.getvalue()
diff = "sha256:" + hashlib.sha256(layer).hexdigest()
manifest = []
with tarfile.open(out, mode="w") as t:
    def add(name, data):
        info = tarfile.TarInfo(name); info.size = len(data); t.addfile(info, io.BytesIO(data))
    add("layer/layer.tar", layer)
    for i in range(1000):
        config = json.dumps({"architecture": "amd64", "os": "linux",
            "created": "2026-01-01T00:00:%02dZ" % (i % 60),
            "config": {"Cmd": ["/bench.txt"], "Labels": {"bench": str(i)}},
            "rootfs": {"type": "layers", "diff_ids": [diff]}}).encode()
        name = hashlib.sha256(config).hexdigest() + ".json"
        add(name, config)
        manifest.append({"Config": name, "RepoTags": ["bench/many%d:v1" % i], "Layers": ["layer/layer.tar"]})
    add("manifest.json", json.dumps(manifest).encode())
"#;
    let archive = dir.path().join("images.tar");
    let ok = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&archive)
        .status()
        .expect("python3");
    assert!(ok.success());
    docker_ok(d, &["load", "-i", archive.to_str().expect("utf-8 path")]);
}

fn inventory_timing(d: &Dockerd, config: &std::path::Path) -> (usize, usize, Duration, Duration) {
    load_thousand_images(d);
    for i in 0..500 {
        // Created, never started: the cheapest real containers to make by the hundred.
        support::docker::images::create_container(
            d,
            &format!("bench/many{}:v1", i * 2),
            &ContainerOpts::named(&format!("c{i}")),
        );
    }
    let (rt, _settings, source) = support::docker::client::docker_source(config);
    let t = Instant::now();
    let inv = rt.block_on(source.inventory(false)).expect("inventory");
    let cold = t.elapsed();
    let warm: Vec<Duration> = (0..7)
        .map(|_| {
            let t = Instant::now();
            rt.block_on(source.inventory(false)).expect("inventory");
            t.elapsed()
        })
        .collect();
    (inv.images.len(), inv.containers.len(), cold, median(warm))
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "docker benchmarks: run with `cargo bench --bench docker` (root and test peers needed)"
        );
        return;
    }
    let d = Dockerd::start_on_loopfs(&LoopFsOptions::new(3072));
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("diskguard.toml");
    // Target 1 %: the pass must take every unused image, as `image prune -a` does.
    std::fs::write(
        &config,
        format!(
            "[thresholds]\nprune_target = 0.5\nprune_start = 1\nrecover = 0.8\ndrain = 2\ncritical = 3\n\
             [docker]\nhost = {:?}\nroot = {:?}\nmin_image_age = \"1s\"\nprune_build_cache = false\n[etcd]\nenabled = false\n",
            d.docker_host(),
            d.data_root().display().to_string()
        ),
    )
    .expect("config");

    let (docker_times, ours) = prune_comparison(&d, &config);
    let (images, containers, cold, warm) = inventory_timing(&d, &config);

    let (dm, om) = (median(docker_times.clone()), median(ours.clone()));
    let report = format!(
        "| 100 unused ~7 MB images | `docker image prune -a` | `diskguard prune` | ratio |\n|---|---|---|---|\n\
         | median of 3 | {:.2} s | {:.2} s | {:.2} |\n| runs | {} | {} | |\n\n\
         | inventory | images | containers | cold (first read) | warm (median of 7) |\n|---|---|---|---|---|\n\
         | `DockerSource::inventory` | {images} | {containers} | {:.3} s | {:.3} s |\n",
        dm.as_secs_f64(),
        om.as_secs_f64(),
        om.as_secs_f64() / dm.as_secs_f64(),
        docker_times
            .iter()
            .map(|t| format!("{:.2}", t.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(" / "),
        ours.iter()
            .map(|t| format!("{:.2}", t.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(" / "),
        cold.as_secs_f64(),
        warm.as_secs_f64(),
    );
    println!("{report}");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-docker.md");
    if let Ok(mut f) = std::fs::File::create(&path) {
        let _ = f.write_all(report.as_bytes());
    }
}
