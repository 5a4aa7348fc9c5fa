//! Properties that must hold for any inventory and any fill.

use std::collections::{BTreeMap, HashSet};

use proptest::prelude::*;

use super::tests::{GB, ago, container, ecs, image, now, snapshot, stats};
use super::*;
use crate::config::Settings;
use crate::sample::{BuildCache, ContainerState, EcsStatus, ImageInfo, Inventory, KEEP_LABEL};

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

prop_compose! {
    fn arb_image(i: usize)(
        tagged in any::<bool>(),
        protected in any::<bool>(),
        keep in prop::bool::weighted(0.1),
        size in 1u64..5 * GB,
        last_used in 0u64..200_000,
    ) -> ImageInfo {
        let tag = match (tagged, protected) {
            (true, true) => Some("amazon/amazon-ecs-pause:0.1.0".to_owned()),
            (true, false) => Some(format!("app{i}:v1")),
            _ => None,
        };
        let mut img = image(&format!("img-{i}"), tag.as_deref(), size, last_used);
        if keep {
            img.labels.insert(KEEP_LABEL.into(), "true".into());
        }
        img
    }
}

prop_compose! {
    fn arb_inventory()(
        images in (0usize..25).prop_flat_map(|n| (0..n).map(arb_image).collect::<Vec<_>>()),
        containers in prop::collection::vec((0usize..25, arb_state(), 0u64..100_000, prop::bool::weighted(0.15)), 0..15),
        cache in prop::option::of(0u64..10 * GB),
    ) -> Inventory {
        let containers = containers
            .into_iter()
            .enumerate()
            .map(|(n, (img, state, finished, keep))| {
                let mut c = container(&format!("c-{n}"), &format!("img-{img}"), state, finished);
                if keep {
                    c.labels.insert(KEEP_LABEL.into(), "true".into());
                }
                c
            })
            .collect();
        Inventory { generation: 1, images, containers, build_cache: cache.map(|b| BuildCache { reclaimable_bytes: b }) }
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

proptest! {
    #[test]
    fn plan_never_holds_an_in_use_protected_or_kept_item(inv in arb_inventory(), used in 0.0f64..100.0, inodes in 0.0f64..100.0) {
        let p = plan(&inv, used, inodes);
        let settings = Settings::default();
        let removed: HashSet<&str> = p.reclaim.iter().filter(|s| s.rung == Rung::StoppedContainer).map(|s| s.id.as_str()).collect();
        for c in &inv.containers {
            if removed.contains(c.id.as_str()) {
                prop_assert!(c.state.is_stopped(), "removed a {:?} container", c.state);
                prop_assert!(!c.has_keep_label(), "removed a kept container");
            }
        }
        // In use = used by any container that the plan keeps.
        let in_use: HashSet<&str> = inv.containers.iter().filter(|c| !removed.contains(c.id.as_str())).map(|c| c.image_id.as_str()).collect();
        let by_id: BTreeMap<&str, &ImageInfo> = inv.images.iter().map(|i| (i.id.as_str(), i)).collect();
        for step in p.reclaim.iter().filter(|s| matches!(s.rung, Rung::DanglingImage | Rung::UnusedImage)) {
            let img = by_id[step.id.as_str()];
            prop_assert!(!in_use.contains(step.id.as_str()), "in-use image {} planned", step.id);
            prop_assert!(!is_protected(img, &settings.docker), "protected image {} planned", step.id);
        }
        // Dangling images are planned while every container still exists.
        let all_users: HashSet<&str> = inv.containers.iter().map(|c| c.image_id.as_str()).collect();
        for step in p.reclaim.iter().filter(|s| s.rung == Rung::DanglingImage) {
            prop_assert!(!all_users.contains(step.id.as_str()));
        }
        let ids: HashSet<&str> = p.reclaim.iter().map(|s| s.id.as_str()).collect();
        prop_assert_eq!(ids.len(), p.reclaim.len(), "an item planned twice");
    }

    #[test]
    fn reclaim_steps_follow_the_ladder_order(inv in arb_inventory(), used in 80.0f64..100.0) {
        let p = plan(&inv, used, 1.0);
        let rungs: Vec<Rung> = p.reclaim.iter().map(|s| s.rung).collect();
        prop_assert!(rungs.windows(2).all(|w| w[0] <= w[1]), "{:?}", rungs);
        let lru: Vec<_> = p.reclaim.iter().filter(|s| s.rung == Rung::UnusedImage)
            .map(|s| inv.images.iter().find(|i| i.id == s.id).map(|i| i.last_used)).collect();
        prop_assert!(lru.windows(2).all(|w| w[0] <= w[1]), "least recently used first");
    }

    #[test]
    fn nothing_is_reclaimed_below_prune_start(inv in arb_inventory(), used in 0.0f64..77.9) {
        let p = plan(&inv, used, 1.0);
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
            prop_assert!(draining < drain_budget(pct, active + draining), "drained over budget");
        }
    }

    #[test]
    fn an_instance_someone_else_drained_is_never_undrained(used in 0.0f64..100.0, since in 0u64..100_000) {
        let view = ecs(EcsStatus::Draining, false, 5, 5);
        let history = History::new(Duration::from_secs(300), Duration::from_secs(1));
        let state = State { levels: BTreeMap::new(), recover_since: Some(ago(since)) };
        let p = decide(&snapshot(stats(used, 1.0), None, Some(view)), &history, &state, &Settings::default(), now());
        prop_assert_eq!(p.ecs, EcsDecision::None);
    }
}
