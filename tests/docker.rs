//! Reclaim against a real, private dockerd whose data root is a loop-mounted ext4.

use diskguard_testkit as support;

use std::collections::HashSet;
use std::time::Duration;

use support::docker::images::{
    ContainerOpts, create_container, docker_ok, image_ids, import_image, run_container,
    run_exited_container,
};
use support::docker::world::{MIB, World, diskguard, exists, lines_with, used_percent, world};

/// The scene of the issue: 30 images used in a known order, every protection, dangling
/// images, and a disk at 85 %.
struct Scene {
    lru_images: Vec<String>,
    lru_containers: Vec<String>,
    dangling: Vec<String>,
    protected: Vec<String>,
}

fn stage(w: &mut World) -> Scene {
    let d = &w.d;
    // Imported 0..30, then used in a different order, so created time and last use disagree.
    let mut imported: Vec<String> = (0..30)
        .map(|i| import_image(d, &format!("lru{i}:v1"), (1 + i % 3) * MIB))
        .collect();
    let order: Vec<usize> = (0..30).map(|i| (i * 7) % 30).collect();
    let mut lru_containers = Vec::new();
    for &i in &order {
        lru_containers.push(run_exited_container(
            d,
            &imported[i],
            &ContainerOpts::named(&format!("used{i}")),
        ));
    }
    let lru_images: Vec<String> = order.iter().map(|&i| imported[i].clone()).collect();

    // Dangling: an image whose tag moved to a newer import.
    let mut dangling = vec![import_image(d, "moving:v1", MIB)];
    import_image(d, "moving:v1", MIB);
    dangling.push(import_image(d, "moving2:v1", MIB));
    import_image(d, "moving2:v1", MIB);

    let agent = import_image(d, "amazon/amazon-ecs-agent:latest", 2 * MIB);
    let running = import_image(d, "running:v1", 2 * MIB);
    run_container(d, &running, &ContainerOpts::named("running"));
    let kept = import_image(d, "kept:v1", 2 * MIB);
    let kept_c = run_exited_container(
        d,
        &kept,
        &ContainerOpts::named("kept").label("diskguard.keep", "true"),
    );
    // Older than stopped_container_age (4 s) by the time the pass runs, so only the
    // label protects it; and the recently stopped one is younger.
    std::thread::sleep(Duration::from_secs(5));
    let recent = import_image(d, "recent:v1", 2 * MIB);
    let recent_c = run_exited_container(d, &recent, &ContainerOpts::named("recent"));
    imported.clear();
    let protected = vec![agent, running, kept, kept_c, recent, recent_c];

    w.d.loopfs_mut()
        .expect("dockerd on a loop fs")
        .fill_to_used_percent(85.0);
    assert!(used_percent(&w.d) >= 85.0);
    Scene {
        lru_images,
        lru_containers,
        dangling,
        protected,
    }
}

#[test]
fn one_pass_climbs_the_ladder_in_lru_order_and_stops_at_target() {
    let mut w = world(512, "");
    let scene = stage(&mut w);
    let images_before = image_ids(&w.d).len();

    let dry = diskguard(&w.config, &["prune", "--dry-run"]);
    assert_eq!(
        dry.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let planned = lines_with(&dry, "would");
    assert_eq!(
        image_ids(&w.d).len(),
        images_before,
        "dry run removed nothing"
    );

    let real = diskguard(&w.config, &["prune"]);
    let text = String::from_utf8_lossy(&real.stdout);
    assert_eq!(
        real.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&real.stderr)
    );
    let removed = lines_with(&real, "removed");
    // The dry run sums the items' estimated sizes; the pass reads the disk after each
    // removal and stops at the target. Stopped containers are estimated at 0 B but their
    // logs and init layers free a little, so the disk may reach the target one step
    // before the estimate says (seen once in CI: 72.0 MiB freed where 67.0 were planned
    // by that step). Otherwise the two lists are the same, in the same order.
    assert!(
        planned.starts_with(&removed) && planned.len() - removed.len() <= 1,
        "the pass removed the dry run's list, or all of it but the last step:\nplanned {planned:?}\n{text}"
    );

    // The exact order: dangling (oldest first), stopped containers by exit time, then
    // images least recently used first.
    let ids: Vec<&str> = removed.iter().map(|(_, id)| id.as_str()).collect();
    let n_images = ids.len() - 2 - 30;
    // Dangling images go first, oldest first by the engine's one-second `Created`; both
    // here were made within about a second, so only the set is asserted.
    let first_two: HashSet<&str> = ids[..2].iter().copied().collect();
    assert_eq!(
        first_two,
        scene.dangling.iter().map(String::as_str).collect(),
        "dangling first:\n{text}"
    );
    let mut expected: Vec<&str> = ids[..2].to_vec();
    expected.extend(scene.lru_containers.iter().map(String::as_str));
    expected.extend(scene.lru_images.iter().take(n_images).map(String::as_str));
    assert_eq!(ids, expected, "removal order:\n{text}");
    assert!(
        n_images >= 5,
        "unused images were needed to reach the target:\n{text}"
    );

    let after = used_percent(&w.d);
    assert!(
        after <= 70.0,
        "stopped at or below prune_target: {after:.1}%\n{text}"
    );
    for id in &scene.protected {
        assert!(exists(&w.d, id), "protected {id} was removed:\n{text}");
    }
    let gone: HashSet<&str> = ids.iter().copied().collect();
    for id in scene.lru_images.iter().skip(n_images) {
        assert!(
            !gone.contains(id.as_str()) && exists(&w.d, id),
            "pass went past the target"
        );
    }
}

#[test]
fn image_that_becomes_in_use_between_plan_and_act_is_skipped_and_counted() {
    use diskguard::act::reclaim::{Outcome, PassSettings, run_pass};
    use diskguard::policy::{plan_reclaim, reclaim_goal};

    let mut w = world(256, "");
    let images: Vec<String> = (0..12)
        .map(|i| import_image(&w.d, &format!("img{i}:v1"), 4 * MIB))
        .collect();
    std::thread::sleep(Duration::from_millis(1100)); // past min_image_age
    w.d.loopfs_mut()
        .expect("loop fs")
        .fill_to_used_percent(85.0);

    let (rt, settings, source) = support::docker::client::docker_source(&w.config);
    let inventory = rt.block_on(source.inventory(false)).expect("inventory");
    let stats = diskguard::sample::stat(w.d.data_root()).expect("statvfs");
    let steps = plan_reclaim(
        &inventory,
        reclaim_goal(&stats, 70.0),
        false,
        &settings.docker,
        std::time::SystemTime::now(),
    );
    let first = steps.first().expect("something planned").id.clone();
    assert!(images.contains(&first));

    // Between plan and act, a container starts using the first image.
    let user = create_container(&w.d, &first, &ContainerOpts::named("latecomer"));
    let pass = PassSettings {
        root: w.d.data_root().to_owned(),
        target_percent: Some(70.0),
        concurrency: 4,
        deadline: Duration::from_secs(60),
    };
    let report = rt.block_on(run_pass(&source, &steps, &pass, &|| false));
    assert!(
        matches!(report.steps[0].1, Outcome::InUse(_)),
        "{:?}",
        report.steps[0]
    );
    assert_eq!(report.in_use(), 1, "{}", report.summary());
    assert_eq!(
        report.errors(),
        0,
        "a conflict is not an error: {}",
        report.summary()
    );
    assert!(exists(&w.d, &first) && exists(&w.d, &user));
    // The plan held more than the goal (it counted the skipped image): other images
    // still bring the disk down.
    assert!(report.removed().count() >= 1);
    let rest = plan_reclaim(
        &rt.block_on(source.inventory(false)).expect("inventory"),
        reclaim_goal(
            &diskguard::sample::stat(w.d.data_root()).expect("statvfs"),
            70.0,
        ),
        false,
        &settings.docker,
        std::time::SystemTime::now(),
    );
    let again = rt.block_on(run_pass(&source, &rest, &pass, &|| false));
    assert!(
        !again.steps.iter().any(|(s, _)| s.id == first),
        "in-use image is no longer planned"
    );
    assert!(
        used_percent(&w.d) <= 70.0,
        "{}\n{}",
        report.summary(),
        again.summary()
    );
}

#[test]
fn multi_tagged_image_is_removed_once_by_id() {
    let w = world(256, "");
    let id = import_image(&w.d, "multi:a", 2 * MIB);
    docker_ok(&w.d, &["tag", "multi:a", "multi:b"]);
    docker_ok(&w.d, &["tag", "multi:a", "other/multi:c"]);
    let (rt, _settings, source) = support::docker::client::docker_source(&w.config);
    let inventory = rt.block_on(source.inventory(false)).expect("inventory");
    let image = inventory
        .images
        .iter()
        .find(|i| i.id == id)
        .expect("listed once");
    assert_eq!(image.tags.len(), 3);
    assert_eq!(inventory.images.iter().filter(|i| i.id == id).count(), 1);
    let step = diskguard::policy::ReclaimStep {
        rung: diskguard::policy::Rung::UnusedImage,
        id: id.clone(),
        name: image.tags.join(","),
        bytes: image.size_bytes,
    };
    let pass = diskguard::act::reclaim::PassSettings {
        root: w.d.data_root().to_owned(),
        target_percent: Some(0.0),
        concurrency: 1,
        deadline: Duration::from_secs(30),
    };
    let report = rt.block_on(diskguard::act::reclaim::run_pass(
        &source,
        &[step],
        &pass,
        &|| false,
    ));
    assert_eq!(report.removed().count(), 1, "{}", report.summary());
    assert!(!exists(&w.d, &id));
}

#[test]
fn status_shows_the_real_plan_and_the_top_writers() {
    let mut w = world(256, "");
    let unused: Vec<String> = (0..6)
        .map(|i| import_image(&w.d, &format!("spare{i}:v1"), 4 * MIB))
        .collect();
    let busy = import_image(&w.d, "busy:v1", MIB);
    run_container(
        &w.d,
        &busy,
        &ContainerOpts::named("busy-writer")
            .label("com.amazonaws.ecs.task-definition-family", "batch")
            .shell("dd if=/dev/zero of=/out bs=1M count=24 2>/dev/null; sleep 3600"),
    );
    // Two talkers: ~3 MiB of stdout with no limit, and a little with one.
    run_container(
        &w.d,
        &busy,
        &ContainerOpts::named("talker")
            .label("com.amazonaws.ecs.task-definition-family", "chatty")
            .shell("yes 0123456789012345678901234567890123456789 | head -n 75000; sleep 3600"),
    );
    run_container(
        &w.d,
        &busy,
        &ContainerOpts::named("tidy")
            .log_opt("max-size", "1m")
            .shell("echo hello; sleep 3600"),
    );
    std::thread::sleep(Duration::from_millis(1500)); // the write, and past min_image_age
    w.d.loopfs_mut()
        .expect("loop fs")
        .fill_to_used_percent(85.0);

    let out = diskguard(&w.config, &["status", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["docker"]["connected"], true, "{json:#}");
    let plan = json["plan"].as_array().expect("plan");
    assert!(!plan.is_empty());
    for item in plan {
        assert_eq!(item["action"], "remove_image", "{json:#}");
        assert!(
            unused.iter().any(|id| item["target"] == id.as_str()),
            "only spare images: {json:#}"
        );
    }
    let top = &json["docker"]["top_writers"][0];
    assert_eq!(top["name"], "busy-writer", "{json:#}");
    assert_eq!(top["task_family"], "batch");
    assert!(top["writable_layer_bytes"].as_u64().expect("bytes") >= 24 * MIB);

    // The running containers' logs, largest first, with their limits.
    let logs = json["docker"]["logs"].as_array().expect("logs");
    assert_eq!(logs[0]["name"], "talker", "{json:#}");
    assert_eq!(logs[0]["task_family"], "chatty");
    assert!(
        logs[0]["bytes"].as_u64().expect("bytes") >= 3 * MIB,
        "{json:#}"
    );
    assert_eq!(logs[0]["max_size"], serde_json::Value::Null);
    let tidy = logs
        .iter()
        .find(|l| l["name"] == "tidy")
        .expect("tidy's log");
    assert_eq!(tidy["max_size"], "1m");

    let table = diskguard(&w.config, &["status"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("top writer 1: busy-writer"), "{text}");
    assert!(
        text.contains("log 1: talker") && text.contains("(task chatty), no size limit"),
        "{text}"
    );
}
