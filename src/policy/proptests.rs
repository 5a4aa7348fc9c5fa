//! Properties that must hold for any inventory and any fill. Each oracle works from what
//! the generator made (which image it protected, which container it kept, which states
//! are stopped), never from the functions under test.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use proptest::prelude::*;

use super::tests::{GB, ago, container, ecs, image, now, snapshot, stats};
use super::*;
use crate::config::Settings;
use crate::sample::{BuildCache, ContainerState, EcsStatus, ImageInfo, Inventory, KEEP_LABEL};

/// What the generator knows about each image.
#[derive(Debug, Clone)]
struct Made {
    image: ImageInfo,
    protected: bool,
    kept: bool,
}

/// An inventory and the generator's own record of it.
#[derive(Debug, Clone)]
struct World {
    inventory: Inventory,
    made: BTreeMap<String, Made>,
    /// Containers the generator kept with the label, by id.
    kept_containers: HashSet<String>,
}

fn arb_state() -> impl Strategy<Value = ContainerState> {
    prop_oneof![
        Just(ContainerState::Created),
        Just(ContainerState::Running),
        Just(ContainerState::Paused),
        Just(ContainerState::Restarting),
        Just(ContainerState::Exited),
        Just(ContainerState::Dead),
    ]
}

/// Stopped for good, written out here rather than asked of `ContainerState`.
fn stopped(s: ContainerState) -> bool {
    matches!(s, ContainerState::Exited | ContainerState::Dead)
}

/// How an image is named: dangling, by tag, by digest only, or as a protected agent image
/// (by tag or by digest).
fn arb_naming() -> impl Strategy<Value = u8> {
    0u8..6
}

prop_compose! {
    fn arb_made(i: usize)(
        naming in arb_naming(),
        keep in prop::bool::weighted(0.1),
        size in 1u64..5 * GB,
        last_used in 0u64..200_000,
    ) -> Made {
        let mut img = image(&format!("img-{i}"), None, size, last_used);
        let protected = match naming {
            1 | 2 => { img.tags = vec![format!("app{i}:v1")]; false }
            3 => { img.digests = vec![format!("app{i}@sha256:{i:064x}")]; false }
            4 => { img.tags = vec!["amazon/amazon-ecs-pause:0.1.0".into()]; true }
            5 => { img.digests = vec![format!("amazon/amazon-ecs-agent@sha256:{i:064x}")]; true }
            _ => false,
        };
        if keep {
            img.labels.insert(KEEP_LABEL.into(), "true".into());
        }
        Made { image: img, protected, kept: keep }
    }
}

prop_compose! {
    fn arb_world()(
        made in (0usize..25).prop_flat_map(|n| (0..n).map(arb_made).collect::<Vec<_>>()),
        containers in prop::collection::vec((0usize..25, arb_state(), 0u64..100_000, prop::bool::weighted(0.15)), 0..15),
        cache in prop::option::of(0u64..10 * GB),
    ) -> World {
        let mut kept_containers = HashSet::new();
        let containers = containers
            .into_iter()
            .enumerate()
            .map(|(n, (img, state, finished, keep))| {
                let mut c = container(&format!("c-{n}"), &format!("img-{img}"), state, finished);
                if keep {
                    c.labels.insert(KEEP_LABEL.into(), "true".into());
                    kept_containers.insert(c.id.clone());
                }
                c
            })
            .collect();
        let inventory = Inventory {
            generation: 1,
            images: made.iter().map(|m| m.image.clone()).collect(),
            containers,
            build_cache: cache.map(|b| BuildCache { reclaimable_bytes: b }),
        };
        let made = made.into_iter().map(|m| (m.image.id.clone(), m)).collect();
        World { inventory, made, kept_containers }
    }
}

fn plan(inv: &Inventory, used: f64, inodes: f64) -> Plan {
    let history = History::new(Duration::from_secs(300), Duration::from_secs(1));
    decide(
        &snapshot(stats(used, inodes), Some(inv.clone()), None),
        &history,
        &State::default(),
        &Settings::default(),
        now(),
    )
}

/// The budget, counted rather than computed: the most instances k of n with
/// k / n ≤ percent / 100, and never fewer than one.
fn allowed_by_counting(percent: f64, n: u32) -> u32 {
    (0..=n)
        .filter(|k| f64::from(*k) * 100.0 <= percent * f64::from(n))
        .max()
        .unwrap_or(0)
        .max(1)
}

proptest! {
    #[test]
    fn plan_never_holds_an_in_use_protected_or_kept_item(w in arb_world(), used in 0.0f64..100.0, inodes in 0.0f64..100.0) {
        let p = plan(&w.inventory, used, inodes);
        let removed: HashSet<&str> = p.reclaim.iter().filter(|s| s.rung == Rung::StoppedContainer).map(|s| s.id.as_str()).collect();
        for c in &w.inventory.containers {
            if removed.contains(c.id.as_str()) {
                prop_assert!(stopped(c.state), "removed a {:?} container", c.state);
                prop_assert!(!w.kept_containers.contains(&c.id), "removed a kept container");
            }
        }
        // In use = used by any container that the plan keeps.
        let in_use: HashSet<&str> = w.inventory.containers.iter().filter(|c| !removed.contains(c.id.as_str())).map(|c| c.image_id.as_str()).collect();
        for step in p.reclaim.iter().filter(|s| matches!(s.rung, Rung::DanglingImage | Rung::UnusedImage)) {
            let made = &w.made[step.id.as_str()];
            prop_assert!(!in_use.contains(step.id.as_str()), "in-use image {} planned", step.id);
            prop_assert!(!made.protected, "protected image {} planned", step.id);
            prop_assert!(!made.kept, "kept image {} planned", step.id);
        }
        // Dangling images are planned while every container still exists.
        let all_users: HashSet<&str> = w.inventory.containers.iter().map(|c| c.image_id.as_str()).collect();
        for step in p.reclaim.iter().filter(|s| s.rung == Rung::DanglingImage) {
            prop_assert!(!all_users.contains(step.id.as_str()));
            let img = &w.made[step.id.as_str()].image;
            prop_assert!(img.tags.is_empty() && img.digests.is_empty(), "a named image on the dangling rung");
        }
        let ids: HashSet<&str> = p.reclaim.iter().map(|s| s.id.as_str()).collect();
        prop_assert_eq!(ids.len(), p.reclaim.len(), "an item planned twice");
    }

    #[test]
    fn reclaim_steps_follow_the_ladder_order(w in arb_world(), used in 80.0f64..100.0) {
        let p = plan(&w.inventory, used, 1.0);
        let rungs: Vec<Rung> = p.reclaim.iter().map(|s| s.rung).collect();
        prop_assert!(rungs.windows(2).all(|w| w[0] <= w[1]), "{:?}", rungs);
        let lru: Vec<_> = p.reclaim.iter().filter(|s| s.rung == Rung::UnusedImage)
            .map(|s| w.made[s.id.as_str()].image.last_used).collect();
        prop_assert!(lru.windows(2).all(|w| w[0] <= w[1]), "least recently used first");
    }

    #[test]
    fn nothing_is_reclaimed_below_prune_start(w in arb_world(), used in 0.0f64..77.9) {
        let p = plan(&w.inventory, used, 1.0);
        prop_assert!(p.reclaim.is_empty());
    }

    #[test]
    fn drain_never_exceeds_the_budget_below_critical(
        used in 0.0f64..94.99,
        active in 1u32..200,
        draining in 0u32..50,
        pct in 0.0f64..100.0,
    ) {
        let mut s = Settings::default();
        s.ecs.max_draining_percent = pct;
        let view = ecs(EcsStatus::Active, false, active, draining);
        let history = History::new(Duration::from_secs(300), Duration::from_secs(1));
        let p = decide(&snapshot(stats(used, 1.0), None, Some(view)), &history, &State::default(), &s, now());
        if let EcsDecision::Drain { .. } = p.ecs {
            prop_assert!(draining < allowed_by_counting(pct, active + draining), "drained over budget");
        }
    }

    #[test]
    fn after_a_race_exactly_the_budget_of_drains_stays(
        n in 1u32..60,
        drains in prop::collection::vec((0u64..5_000, any::<u8>()), 1..12),
        others in 0usize..3,
        pct in 1.0f64..100.0,
    ) {
        // Instances that all drained within five seconds, each judging only itself from
        // the same read; plus some drained by someone else.
        let mut draining: Vec<DrainingInstance> = drains.iter().enumerate().map(|(i, (ms, _))| DrainingInstance {
            arn: format!("arn:{i:03}"),
            marked_at: Some(humantime::format_rfc3339_millis(ago(10) + Duration::from_millis(*ms)).to_string()),
            draining: true,
        }).collect();
        draining.extend((0..others).map(|i| DrainingInstance { arn: format!("arn:other{i}"), marked_at: None, draining: true }));
        let instances = n.max(u32::try_from(draining.len()).unwrap_or(u32::MAX));
        let kept: Vec<&str> = draining.iter().filter(|d| d.marked_at.is_some())
            .filter(|d| budget_verdict(&d.arn, &draining, instances, pct, now()) == BudgetVerdict::Keep)
            .map(|d| d.arn.as_str()).collect();
        let room = (allowed_by_counting(pct, instances) as usize).saturating_sub(others);
        prop_assert_eq!(kept.len(), room.min(drains.len()), "kept {:?}", kept);
        // The ones kept are the earliest marks (ARN breaking ties), whoever reads.
        let mut by_time: Vec<(u64, String)> = drains.iter().enumerate().map(|(i, (ms, _))| (*ms, format!("arn:{i:03}"))).collect();
        by_time.sort();
        let first: Vec<&str> = by_time.iter().take(room).map(|(_, a)| a.as_str()).collect();
        let mut kept_sorted = kept.clone();
        kept_sorted.sort_unstable();
        let mut first_sorted = first.clone();
        first_sorted.sort_unstable();
        prop_assert_eq!(kept_sorted, first_sorted);
    }

    #[test]
    fn an_instance_someone_else_drained_is_never_undrained(used in 0.0f64..100.0, since in 0u64..100_000) {
        let view = ecs(EcsStatus::Draining, false, 5, 5);
        let history = History::new(Duration::from_secs(300), Duration::from_secs(1));
        let state = State { levels: BTreeMap::new(), recover_since: Some(ago(since)), eviction: None, stuck_since: None };
        let p = decide(&snapshot(stats(used, 1.0), None, Some(view)), &history, &state, &Settings::default(), now());
        prop_assert_eq!(p.ecs, EcsDecision::None);
    }
}
