//! Reclaim's edge cases against a real, private dockerd: a tag that moves under a
//! removal, an item the engine keeps failing, images known only by digest, stopped
//! containers' real sizes, and images past their maximum unused age.

use diskguard_testkit as support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::docker::images::{
    ContainerOpts, docker_ok, image_ids, import_image, run_container, run_exited_container,
};
use support::docker::registry::Registry;
use support::docker::slowsock::{Action, SlowSocket};
use support::docker::world::{MIB, diskguard, exists, lines_with, used_percent, world};
use support::processes::daemon::Daemon;

fn image_of(d: &support::Dockerd, reference: &str) -> Option<String> {
    let out = d
        .docker()
        .args(["image", "inspect", "--format", "{{.Id}}", reference])
        .output()
        .expect("docker image inspect");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[test]
fn a_tag_moved_to_another_image_during_removal_is_left_alone() {
    use diskguard::act::reclaim::{PassSettings, run_pass};
    let w = world(256, "");
    let old = import_image(&w.d, "multi:a", 2 * MIB);
    docker_ok(&w.d, &["tag", "multi:a", "multi:b"]);
    docker_ok(&w.d, &["tag", "multi:a", "multi:c"]);
    let fresh = import_image(&w.d, "fresh:v1", 2 * MIB);

    // The first time anything asks for `multi:a` by name, a deploy moves that tag to the
    // freshly pulled image — after the old image's tags were read, before the tag is
    // deleted. A removal that trusts the tags it read would untag the fresh image.
    let moved = Arc::new(AtomicBool::new(false));
    let (flag, socket, fresh_id) = (Arc::clone(&moved), w.d.docker_host(), fresh.clone());
    let hook = SlowSocket::hooked(&w.d.socket(), move |_method, path| {
        if path.contains("/images/multi:a") && !flag.swap(true, Ordering::SeqCst) {
            let status = std::process::Command::new("/usr/bin/docker")
                .args(["-H", &socket, "tag", &fresh_id, "multi:a"])
                .status()
                .expect("docker tag");
            assert!(status.success(), "moving the tag");
        }
        Action::Forward
    });
    let cfg = w._tmp.path().join("hooked.toml");
    let text = std::fs::read_to_string(&w.config).expect("config");
    std::fs::write(&cfg, text.replace(&w.d.docker_host(), &hook.docker_host())).expect("write");

    let (rt, _settings, source) = support::docker::client::docker_source(&cfg);
    let step = diskguard::policy::ReclaimStep {
        rung: diskguard::policy::Rung::UnusedImage,
        id: old.clone(),
        name: "multi:a,multi:b,multi:c".into(),
        bytes: 2 * MIB,
    };
    let pass = PassSettings {
        root: w.d.data_root().to_owned(),
        target_percent: None,
        concurrency: 1,
        deadline: Duration::from_secs(30),
    };
    let report = rt.block_on(run_pass(&source, &[step], &pass, &|| false));
    assert!(moved.load(Ordering::SeqCst), "the race was staged");
    assert_eq!(report.removed().count(), 1, "{}", report.summary());
    assert!(!exists(&w.d, &old), "the planned image is gone");
    assert_eq!(
        image_of(&w.d, "multi:a").as_deref(),
        Some(fresh.as_str()),
        "the moved tag still names the fresh image"
    );
    assert!(exists(&w.d, &fresh));
}

#[test]
fn an_item_the_engine_keeps_failing_is_skipped_and_the_ladder_goes_on() {
    let mut w = world(256, "");
    let images: Vec<String> = (0..20)
        .map(|i| import_image(&w.d, &format!("img{i}:v1"), 4 * MIB))
        .collect();
    // The three least recently used images cannot be removed: the engine answers 500,
    // as it does for a layer it cannot delete. Three in a row also end a pass.
    let broken: Vec<String> = images[..3].to_vec();
    let deletes: Arc<Mutex<Vec<String>>> = Arc::default();
    let (bad, seen) = (broken.clone(), Arc::clone(&deletes));
    let hook = SlowSocket::hooked(&w.d.socket(), move |method, path| {
        if method == "DELETE" {
            if let Some(id) = bad.iter().find(|id| path.contains(id.as_str())) {
                seen.lock().expect("lock").push(id.clone());
                return Action::Fail(500, "injected: driver failed to remove the layer".into());
            }
        }
        Action::Forward
    });
    let cfg = w._tmp.path().join("hooked.toml");
    let text = std::fs::read_to_string(&w.config).expect("config");
    std::fs::write(&cfg, text.replace(&w.d.docker_host(), &hook.docker_host())).expect("write");
    std::thread::sleep(Duration::from_millis(1100)); // past min_image_age
    let mut daemon = Daemon::start(&cfg);
    daemon.wait_for("Docker inventory read", Duration::from_secs(30));
    w.d.loopfs_mut()
        .expect("loop fs")
        .fill_to_used_percent(85.0);

    let (_, first) = daemon.wait_for("reclaim pass done", Duration::from_secs(60));
    assert!(!first.contains(" 0 errors"), "{first}");
    daemon.wait_for("leaving them out", Duration::from_secs(30));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while used_percent(&w.d) > 70.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the ladder stopped at the broken items:\n{}",
            daemon.seen.join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let tried = deletes.lock().expect("lock").clone();
    for id in &broken {
        assert!(
            tried.iter().filter(|t| *t == id).count() <= 1,
            "{id} tried again in the same episode: {tried:?}"
        );
        assert!(exists(&w.d, id));
    }
    daemon.stop();
}

#[test]
fn images_known_only_by_digest_are_aged_and_protected_like_tagged_ones() {
    let mut w = world(512, "");
    let registry = Registry::start();
    let host = registry.host();
    let mut digests = Vec::new();
    for name in ["app", "protected/agent"] {
        let remote = format!("{host}/{name}:v1");
        import_image(&w.d, &remote, 4 * MIB);
        docker_ok(&w.d, &["push", &remote]);
        let digest = docker_ok(
            &w.d,
            &[
                "image",
                "inspect",
                "--format",
                "{{index .RepoDigests 0}}",
                &remote,
            ],
        )
        .trim()
        .to_owned();
        docker_ok(&w.d, &["rmi", &remote]);
        docker_ok(&w.d, &["pull", &digest]);
        digests.push(digest);
    }
    let ids: Vec<String> = digests
        .iter()
        .map(|d| image_of(&w.d, d).expect("pulled by digest"))
        .collect();
    for id in &ids {
        let tags = docker_ok(
            &w.d,
            &["image", "inspect", "--format", "{{len .RepoTags}}", id],
        );
        assert_eq!(tags.trim(), "0", "digest only: {id}");
    }
    w.d.loopfs_mut()
        .expect("loop fs")
        .fill_to_used_percent(85.0);

    // Pulled a moment ago, so younger than min_image_age (1 h here): nothing to remove.
    let young = |cfg: &std::path::Path| diskguard(cfg, &["prune", "--dry-run"]);
    let cfg_age = w._tmp.path().join("aged.toml");
    let base = std::fs::read_to_string(&w.config).expect("config");
    std::fs::write(
        &cfg_age,
        base.replace("min_image_age = \"1s\"", "min_image_age = \"1h\""),
    )
    .expect("write");
    let out = young(&cfg_age);
    let planned: Vec<String> = lines_with(&out, "would")
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    assert!(
        ids.iter().all(|id| !planned.contains(id)),
        "young digest-only images planned as dangling: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    // With no minimum age, the app image goes; the protected one stays, matched by its
    // repo digest.
    let cfg_zero = w._tmp.path().join("zero.toml");
    std::fs::write(
        &cfg_zero,
        base.replace(
            "min_image_age = \"1s\"",
            "min_image_age = \"0s\"\nprotect = [\"*/protected/*:*\"]",
        ),
    )
    .expect("write");
    let out = diskguard(&cfg_zero, &["prune"]);
    let removed: Vec<(String, String)> = lines_with(&out, "removed");
    assert!(
        removed
            .iter()
            .any(|(rung, id)| rung == "unused_image" && *id == ids[0]),
        "the app image is removed as an unused image: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!exists(&w.d, &ids[0]));
    assert!(exists(&w.d, &ids[1]), "the protected image stays");
}

#[test]
fn dry_run_counts_a_stopped_containers_writable_layer() {
    let mut w = world(256, "");
    let image = import_image(&w.d, "job:v1", MIB);
    let stopped = run_exited_container(
        &w.d,
        &image,
        &ContainerOpts::named("job").shell("dd if=/dev/zero of=/out bs=1M count=24 2>/dev/null"),
    );
    std::thread::sleep(Duration::from_secs(5)); // past stopped_container_age (4 s)
    w.d.loopfs_mut()
        .expect("loop fs")
        .fill_to_used_percent(85.0);
    let out = diskguard(&w.config, &["prune", "--dry-run"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.contains(&stopped))
        .unwrap_or_else(|| panic!("the stopped container is planned: {text}"));
    let mib: f64 = line
        .split_whitespace()
        .rev()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0);
    assert!(
        line.ends_with("MiB") && mib >= 23.0,
        "planned at its real size, not 0 B: {line}"
    );
}

#[test]
fn images_past_the_maximum_unused_age_go_even_on_a_roomy_disk() {
    let w = world(256, "max_unused_image_age = \"3s\"");
    let old = import_image(&w.d, "old:v1", MIB);
    let used = import_image(&w.d, "used:v1", MIB);
    let kept = import_image(&w.d, "amazon/amazon-ecs-agent:latest", MIB);
    run_container(
        &w.d,
        &used,
        &ContainerOpts::named("svc").shell("sleep 3600"),
    );
    std::thread::sleep(Duration::from_secs(4));
    assert!(used_percent(&w.d) < 50.0, "a roomy disk");
    let mut daemon = Daemon::start(&w.config);
    daemon.wait_for(
        "unused for longer than docker.max_unused_image_age",
        Duration::from_secs(30),
    );
    daemon.wait_for("reclaim pass done", Duration::from_secs(30));
    let left = image_ids(&w.d);
    assert!(!left.contains(&old), "the old image is removed");
    assert!(left.contains(&used), "an image in use stays");
    assert!(left.contains(&kept), "a protected image stays");
    daemon.stop();
}
