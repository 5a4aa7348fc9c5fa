//! The reclaim ladder: what to remove, in which order, and when to stop.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::config::DockerSettings;
use crate::sample::{ContainerInfo, ImageInfo, Inventory};

/// The id of the build cache step (it has no engine id of its own).
pub const BUILD_CACHE: &str = "build-cache";

/// Rungs of the ladder, in the order they are climbed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rung {
    DanglingImage,
    StoppedContainer,
    UnusedImage,
    BuildCache,
}

impl Rung {
    /// The `action` of a plan item in `status --json`.
    pub fn action(self) -> &'static str {
        match self {
            Rung::DanglingImage | Rung::UnusedImage => "remove_image",
            Rung::StoppedContainer => "remove_container",
            Rung::BuildCache => "prune_build_cache",
        }
    }
}

/// One removal. `id` is what the Engine API is called with; `name` is for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReclaimStep {
    pub rung: Rung,
    pub id: String,
    pub name: String,
    /// Estimated: image sizes include layers shared with other images, so the actor
    /// re-reads statvfs after each step rather than trusting this.
    pub bytes: u64,
}

/// Whether an image must never be removed, whatever the level.
pub fn is_protected(image: &ImageInfo, docker: &DockerSettings) -> bool {
    image.has_keep_label()
        || image
            .references()
            .any(|name| docker.protect.iter().any(|p| protects(p, name)))
}

/// A pattern protects a name when it matches it; a repo digest `repo@sha256:…` is also
/// matched as `repo:sha256:…`, so that `amazon/amazon-ecs-agent:*` protects the agent
/// whether it was pulled by tag or by digest.
fn protects(pattern: &glob::Pattern, name: &str) -> bool {
    pattern.matches(name)
        || name
            .split_once('@')
            .is_some_and(|(repo, digest)| pattern.matches(&format!("{repo}:{digest}")))
}

/// The name people know an image by: its tags, else its repo digests, else its id.
pub fn image_name(image: &ImageInfo) -> String {
    if image.is_dangling() {
        short_id(&image.id)
    } else {
        image.references().collect::<Vec<_>>().join(",")
    }
}

/// Zero means "no minimum", even for a time a little in the future (clock skew).
fn older_than(at: SystemTime, age: Duration, now: SystemTime) -> bool {
    age.is_zero() || now.duration_since(at).is_ok_and(|elapsed| elapsed >= age)
}

/// Plans removals until their estimated bytes reach `needed` (`None`: no byte goal, as when
/// inodes drive the level — then every eligible item is listed and the actor stops on
/// statvfs). `ignore_ages` is set at the critical level; protections always hold.
pub fn plan_reclaim(
    inventory: &Inventory,
    needed: Option<u64>,
    ignore_ages: bool,
    docker: &DockerSettings,
    now: SystemTime,
) -> Vec<ReclaimStep> {
    plan_reclaim_skipping(inventory, needed, ignore_ages, docker, now, &HashSet::new())
}

/// As `plan_reclaim`, leaving out the ids in `skip` — items the engine failed to remove
/// earlier in this episode — so that the ladder goes on past them to the goal.
pub fn plan_reclaim_skipping(
    inventory: &Inventory,
    needed: Option<u64>,
    ignore_ages: bool,
    docker: &DockerSettings,
    now: SystemTime,
    skip: &HashSet<String>,
) -> Vec<ReclaimStep> {
    let mut plan = Ladder {
        steps: Vec::new(),
        total: 0,
        needed,
    };
    if needed == Some(0) {
        return plan.steps;
    }
    let age_ok = |at: SystemTime, age: Duration| ignore_ages || older_than(at, age, now);

    // Parents of images still present cannot be removed (the engine refuses), so they are
    // never planned; removing the child first is the engine's business, not a rung.
    let parents: HashSet<&str> = inventory
        .images
        .iter()
        .filter_map(|i| i.parent.as_deref())
        .collect();
    let used_by = |containers: &[&ContainerInfo]| -> HashSet<String> {
        containers.iter().map(|c| c.image_id.clone()).collect()
    };
    let all: Vec<&ContainerInfo> = inventory.containers.iter().collect();
    let in_use = used_by(&all);
    let removable = |image: &ImageInfo, in_use: &HashSet<String>| {
        !in_use.contains(&image.id)
            && !parents.contains(image.id.as_str())
            && !is_protected(image, docker)
            && !skip.contains(&image.id)
    };

    let mut dangling: Vec<&ImageInfo> = inventory
        .images
        .iter()
        .filter(|i| i.is_dangling() && removable(i, &in_use))
        .collect();
    dangling.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.id.cmp(&b.id)));
    for image in dangling {
        if plan.add(
            Rung::DanglingImage,
            &image.id,
            &image_name(image),
            image.size_bytes,
        ) {
            return plan.steps;
        }
    }

    let mut stopped: Vec<&ContainerInfo> = inventory
        .containers
        .iter()
        .filter(|c| {
            c.state.is_stopped()
                && !c.has_keep_label()
                && !skip.contains(&c.id)
                && age_ok(
                    c.finished_at.unwrap_or(c.created),
                    docker.stopped_container_age,
                )
        })
        .collect();
    stopped.sort_by(|a, b| {
        a.finished_at
            .unwrap_or(a.created)
            .cmp(&b.finished_at.unwrap_or(b.created))
            .then_with(|| a.id.cmp(&b.id))
    });
    let mut removed: HashSet<&str> = HashSet::new();
    for c in stopped {
        removed.insert(c.id.as_str());
        if plan.add(
            Rung::StoppedContainer,
            &c.id,
            &c.name,
            c.reclaimable_bytes(),
        ) {
            return plan.steps;
        }
    }

    // An image whose only users are containers removed above is free from here on.
    let remaining: Vec<&ContainerInfo> = inventory
        .containers
        .iter()
        .filter(|c| !removed.contains(c.id.as_str()))
        .collect();
    let in_use = used_by(&remaining);
    let mut unused: Vec<&ImageInfo> = inventory
        .images
        .iter()
        .filter(|i| {
            !i.is_dangling() && removable(i, &in_use) && age_ok(i.last_used, docker.min_image_age)
        })
        .collect();
    unused.sort_by(|a, b| a.last_used.cmp(&b.last_used).then_with(|| a.id.cmp(&b.id)));
    for image in unused {
        if plan.add(
            Rung::UnusedImage,
            &image.id,
            &image_name(image),
            image.size_bytes,
        ) {
            return plan.steps;
        }
    }

    // The build cache's size is not read on the fast path (only /system/df reports it,
    // slowly, in a layout that changed in Engine 29): unknown means "try it, estimate 0".
    match (docker.prune_build_cache, inventory.build_cache) {
        (true, _) if skip.contains(BUILD_CACHE) => {}
        (true, None) => {
            plan.add(Rung::BuildCache, BUILD_CACHE, "build cache", 0);
        }
        (true, Some(cache)) if cache.reclaimable_bytes > 0 => {
            plan.add(
                Rung::BuildCache,
                BUILD_CACHE,
                "build cache",
                cache.reclaimable_bytes,
            );
        }
        _ => {}
    }
    plan.steps
}

/// Images unused for longer than `docker.max_unused_image_age`, least recently used
/// first, with every protection of the ladder: removed even below `prune_start` (the
/// kubelet's `imageMaximumGCAge`). Empty when the key is off.
pub fn expired_images(
    inventory: &Inventory,
    docker: &DockerSettings,
    now: SystemTime,
) -> Vec<ReclaimStep> {
    let Some(max_age) = docker.max_unused_image_age else {
        return Vec::new();
    };
    let parents: HashSet<&str> = inventory
        .images
        .iter()
        .filter_map(|i| i.parent.as_deref())
        .collect();
    let in_use: HashSet<&str> = inventory
        .containers
        .iter()
        .map(|c| c.image_id.as_str())
        .collect();
    let mut expired: Vec<&ImageInfo> = inventory
        .images
        .iter()
        .filter(|i| {
            !in_use.contains(i.id.as_str())
                && !parents.contains(i.id.as_str())
                && !is_protected(i, docker)
                && older_than(i.last_used, max_age, now)
        })
        .collect();
    expired.sort_by(|a, b| a.last_used.cmp(&b.last_used).then_with(|| a.id.cmp(&b.id)));
    expired
        .into_iter()
        .map(|i| ReclaimStep {
            rung: if i.is_dangling() {
                Rung::DanglingImage
            } else {
                Rung::UnusedImage
            },
            id: i.id.clone(),
            name: image_name(i),
            bytes: i.size_bytes,
        })
        .collect()
}

struct Ladder {
    steps: Vec<ReclaimStep>,
    total: u64,
    needed: Option<u64>,
}

impl Ladder {
    /// Adds a step; true once the goal is reached.
    fn add(&mut self, rung: Rung, id: &str, name: &str, bytes: u64) -> bool {
        self.steps.push(ReclaimStep {
            rung,
            id: id.to_owned(),
            name: name.to_owned(),
            bytes,
        });
        self.total = self.total.saturating_add(bytes);
        self.needed.is_some_and(|n| self.total >= n)
    }
}

fn short_id(id: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    format!("<none> {}", &hex[..hex.len().min(12)])
}
