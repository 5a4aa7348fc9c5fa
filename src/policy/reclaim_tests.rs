//! The reclaim rows added with digest-only images, zero minimum ages and the maximum
//! unused-image age.

use super::tests::{GB, container, image, now, plan_for, snapshot, stats};
use super::*;
use crate::config::Settings;
use crate::sample::{BuildCache, ContainerState, Inventory};

fn digest_only(
    id: &str,
    reference: &str,
    size: u64,
    last_used_ago: u64,
) -> crate::sample::ImageInfo {
    let mut i = image(id, None, size, last_used_ago);
    i.digests = vec![reference.to_owned()];
    i
}

fn inventory(images: Vec<crate::sample::ImageInfo>) -> Inventory {
    Inventory {
        generation: 1,
        images,
        containers: Vec::new(),
        // Read and empty: the last rung has nothing to offer here.
        build_cache: Some(BuildCache {
            reclaimable_bytes: 0,
        }),
    }
}

#[test]
fn a_digest_only_image_is_aged_and_named_like_a_tagged_one() {
    let inv = inventory(vec![
        // Pulled by digest a minute ago: not dangling, so min_image_age (1 h) holds it.
        digest_only("img-fresh", "app@sha256:aa", GB, 60),
        digest_only("img-old", "app@sha256:bb", GB, 90_000),
        image("img-dangling", None, GB, 60),
    ]);
    let plan = plan_for(&snapshot(stats(85.0, 1.0), Some(inv), None));
    let steps: Vec<(&str, Rung, &str)> = plan
        .reclaim
        .iter()
        .map(|s| (s.id.as_str(), s.rung, s.name.as_str()))
        .collect();
    assert_eq!(
        steps,
        [
            ("img-dangling", Rung::DanglingImage, "<none> img-dangling"),
            ("img-old", Rung::UnusedImage, "app@sha256:bb"),
        ]
    );
}

#[test]
fn protect_patterns_match_repo_digests() {
    let inv = inventory(vec![
        digest_only("img-agent", "amazon/amazon-ecs-agent@sha256:cc", GB, 90_000),
        digest_only("img-mine", "registry.local/mine@sha256:dd", GB, 90_000),
        digest_only("img-app", "app@sha256:ee", GB, 90_000),
    ]);
    let mut settings = Settings::default();
    settings
        .docker
        .protect
        .push(glob::Pattern::new("registry.local/mine@*").expect("pattern"));
    let history = History::new(
        std::time::Duration::from_secs(300),
        std::time::Duration::from_secs(1),
    );
    let plan = decide(
        &snapshot(stats(96.0, 1.0), Some(inv), None),
        &history,
        &State::default(),
        &settings,
        now(),
    );
    let ids: Vec<&str> = plan.reclaim.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["img-app"], "critical, yet both protected images stay");
}

#[test]
fn zero_minimum_ages_plan_what_was_just_used() {
    let mut inv = inventory(vec![image("img-new", Some("app:v9"), GB, 1)]);
    inv.containers.push(container(
        "c-just-exited",
        "img-other",
        ContainerState::Exited,
        1,
    ));
    let mut settings = Settings::default();
    settings.docker.min_image_age = std::time::Duration::ZERO;
    settings.docker.stopped_container_age = std::time::Duration::ZERO;
    let history = History::new(
        std::time::Duration::from_secs(300),
        std::time::Duration::from_secs(1),
    );
    let plan = decide(
        &snapshot(stats(85.0, 1.0), Some(inv), None),
        &history,
        &State::default(),
        &settings,
        now(),
    );
    let ids: Vec<&str> = plan.reclaim.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["c-just-exited", "img-new"]);
}

#[test]
fn images_past_the_maximum_unused_age_go_even_below_prune_start_oldest_first() {
    let mut inv = inventory(vec![
        image("img-15d", Some("a:1"), GB, 15 * 86_400),
        image("img-30d", Some("b:1"), GB, 30 * 86_400),
        image("img-1d", Some("c:1"), GB, 86_400),
        image("img-used", Some("d:1"), GB, 40 * 86_400),
        image(
            "img-agent",
            Some("amazon/amazon-ecs-agent:latest"),
            GB,
            40 * 86_400,
        ),
        digest_only("img-by-digest", "e@sha256:ff", GB, 20 * 86_400),
    ]);
    inv.containers.push(container(
        "c-stopped",
        "img-used",
        ContainerState::Exited,
        40 * 86_400,
    ));
    let mut settings = Settings::default();
    settings.docker.max_unused_image_age = Some(std::time::Duration::from_secs(14 * 86_400));
    let history = History::new(
        std::time::Duration::from_secs(300),
        std::time::Duration::from_secs(1),
    );
    let plan = decide(
        &snapshot(stats(20.0, 1.0), Some(inv.clone()), None),
        &history,
        &State::default(),
        &settings,
        now(),
    );
    assert!(
        plan.reclaim.is_empty(),
        "below prune_start the ladder is idle"
    );
    let ids: Vec<&str> = plan.expired.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["img-30d", "img-by-digest", "img-15d"]);
    // Off by default.
    let plan = decide(
        &snapshot(stats(20.0, 1.0), Some(inv), None),
        &history,
        &State::default(),
        &Settings::default(),
        now(),
    );
    assert!(plan.expired.is_empty());
}

#[test]
fn by_hand_the_ladder_runs_whatever_the_level() {
    let inv = inventory(vec![image("img-old", Some("a:1"), 3 * GB, 90_000)]);
    let (goal, critical, steps) =
        reclaim_by_hand(&stats(72.0, 1.0), &inv, &Settings::default(), now());
    assert_eq!(goal, Some(2 * GB));
    assert!(!critical);
    assert_eq!(steps.len(), 1);
}

#[test]
fn items_that_failed_this_episode_are_planned_past() {
    let inv = inventory(vec![
        image("img-broken", Some("a:1"), 3 * GB, 90_000),
        image("img-next", Some("b:1"), 3 * GB, 80_000),
    ]);
    let mut snap = snapshot(stats(72.0, 1.0), Some(inv), None);
    snap.volumes[0].stats = Some(stats(82.0, 1.0));
    let plan = plan_for(&snap);
    let ids: Vec<&str> = plan.reclaim.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["img-broken", "img-next"], "12 GB to free, 3 GB each");
    snap.reclaim_skip.insert("img-broken".into());
    let plan = plan_for(&snap);
    let ids: Vec<&str> = plan.reclaim.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["img-next"]);
    assert!(
        plan.findings
            .iter()
            .any(|f| f.message.contains("could not be removed")),
        "{:?}",
        plan.findings
    );
}
