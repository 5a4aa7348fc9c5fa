//! What is left on Docker's disk that diskguard did not free, largest first — the line
//! logged before a drained node that stays full is handed to Auto Scaling for replacement.
//!
//! Two accounts. Docker's own: named volumes (with how many containers reference them),
//! images, containers' writable layers and the build cache. And what Docker cannot account
//! for: directories under `<docker root>/overlay2/` that no image, no container, no layer of
//! Docker's layer store and no BuildKit snapshot names (moby#21925: layers orphaned by a
//! crash or a failed removal). They are reported, never deleted.
//!
//! Not `GET /system/df`: bollard 0.21 reads only the response of API 1.52 and later; older
//! engines (20.10 answers 1.41, Docker 25 on the ECS AMIs 1.44) send another shape,
//! which it reads as empty. The same figures come from the list calls every engine answers
//! and from walking the directories on the disk, as `system df` itself does.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use bollard::models::{ContainerSummary, ImageSummary, Volume};
use bollard::query_parameters::{ListContainersOptions, ListImagesOptions, ListVolumesOptions};
use futures_util::{StreamExt, stream};

use super::du::Du;
use super::{DockerError, DockerSource, INSPECT_CONCURRENCY};
use crate::human;

/// Directory entries visited in one report, across every walk: on a disk with millions of
/// small files the report stays within seconds, and says "at least" for what it cut short.
const WALK_BUDGET: usize = 1_000_000;
/// The GraphDriver keys that name a layer's directories (`LowerDir` lists several, `:`-joined).
const LAYER_KEYS: [&str; 4] = ["LowerDir", "UpperDir", "WorkDir", "MergedDir"];
/// The subdirectories of an overlay2 layer directory that GraphDriver paths end in.
const LAYER_PARTS: [&str; 3] = ["diff", "work", "merged"];

/// What a leftover is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeftoverKind {
    Volume,
    BuildCache,
    Image,
    Container,
    /// An overlay2 directory that nothing Docker knows of names.
    UnreferencedDir,
}

/// One thing left on the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub kind: LeftoverKind,
    /// Volume name, image tag (or short id), container name, overlay2 directory name.
    pub name: String,
    pub bytes: u64,
    /// How many containers reference it, when that is known (volumes, images).
    pub in_use: Option<u64>,
    /// The walk that measured it stopped at its budget: `bytes` is a lower bound.
    pub at_least: bool,
}

/// Everything left on the disk, largest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leftovers {
    pub items: Vec<Leftover>,
    /// The sum of `items`. Images that share layers each count the shared ones, as the SIZE
    /// column of `docker system df -v` does, so with several images this is an upper bound.
    pub total: u64,
    /// What could not be read or measured (a directory, an inspect), one line each.
    pub unaccounted_errors: Vec<String>,
}

impl Leftovers {
    /// Drops empty items and sorts the rest largest first (ties: by kind, then name).
    pub fn new(mut items: Vec<Leftover>, unaccounted_errors: Vec<String>) -> Self {
        items.retain(|i| i.bytes > 0);
        items.sort_by(|a, b| {
            b.bytes
                .cmp(&a.bytes)
                .then_with(|| (a.kind as u8).cmp(&(b.kind as u8)))
                .then_with(|| a.name.cmp(&b.name))
        });
        let total = items.iter().fold(0u64, |t, i| t.saturating_add(i.bytes));
        Leftovers {
            items,
            total,
            unaccounted_errors,
        }
    }

    /// One journal line naming the `top` largest: `left on the disk: volume pgdata 1.5 GiB
    /// (unused), unreferenced overlay2 dir 3f2a9c01d4e5… 120.0 MiB, build cache 40.0 MiB; total 1.7 GiB`.
    pub fn summary(&self, top: usize) -> String {
        let mut parts: Vec<String> = self
            .items
            .iter()
            .take(top)
            .map(Leftover::describe)
            .collect();
        let rest = self.items.len().saturating_sub(top);
        if rest > 0 {
            parts.push(format!("{rest} more"));
        }
        let what = if parts.is_empty() {
            "nothing that Docker or its overlay2 directory holds".to_owned()
        } else {
            parts.join(", ")
        };
        let at_least = if self.items.iter().any(|i| i.at_least) {
            "at least "
        } else {
            ""
        };
        let mut line = format!(
            "left on the disk: {what}; total {at_least}{}",
            human::bytes(self.total)
        );
        if let Some(first) = self.unaccounted_errors.first() {
            line.push_str(&format!(
                "; {} not measured ({first})",
                self.unaccounted_errors.len()
            ));
        }
        line
    }
}

impl Leftover {
    fn describe(&self) -> String {
        let size = format!(
            "{}{}",
            if self.at_least { "at least " } else { "" },
            human::bytes(self.bytes)
        );
        let users = match self.in_use {
            Some(0) => " (unused)".to_owned(),
            Some(1) => " (used by 1 container)".to_owned(),
            Some(n) => format!(" (used by {n} containers)"),
            None => String::new(),
        };
        match self.kind {
            LeftoverKind::Volume => format!("volume {} {size}{users}", self.name),
            LeftoverKind::Image => format!("image {} {size}{users}", self.name),
            LeftoverKind::Container => format!("container {} writable layer {size}", self.name),
            LeftoverKind::BuildCache => format!("build cache {size}"),
            LeftoverKind::UnreferencedDir => {
                format!("unreferenced overlay2 dir {} {size}", short(&self.name))
            }
        }
    }
}

/// The first 12 characters of a long id, as `docker ps` shows them.
fn short(id: &str) -> String {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    match id.char_indices().nth(12) {
        Some((cut, _)) => format!("{}…", &id[..cut]),
        None => id.to_owned(),
    }
}

/// The overlay2 directory names a GraphDriver `Data` map refers to: `<root>/overlay2/<name>/diff`
/// (or `work`, `merged`) in each of its layer keys. A container's `LowerDir` starts with its
/// `<id>-init` layer, so init layers are covered.
pub fn layer_dir_names(data: &HashMap<String, String>) -> Vec<String> {
    LAYER_KEYS
        .iter()
        .filter_map(|k| data.get(*k))
        .flat_map(|v| v.split(':'))
        .filter_map(|p| {
            let p = Path::new(p);
            let part = p.file_name()?.to_str()?;
            let layer = p.parent()?;
            let parent_is_overlay2 = layer.parent()?.file_name()? == "overlay2";
            (LAYER_PARTS.contains(&part) && parent_is_overlay2)
                .then(|| layer.file_name()?.to_str().map(str::to_owned))
                .flatten()
        })
        .collect()
}

/// What was read from the Engine API, handed to the blocking half that reads the disk.
#[derive(Debug, Default)]
struct Facts {
    root: Option<PathBuf>,
    /// The storage driver; unreferenced directories are looked for under overlay2 only.
    driver: String,
    /// Items whose size Docker reported (images, containers).
    sized: Vec<Leftover>,
    /// Local volumes: name, mount point, referencing containers.
    volumes: Vec<(String, PathBuf, u64)>,
    /// overlay2 directory names that images and containers use.
    in_use_dirs: HashSet<String>,
    errors: Vec<String>,
}

impl DockerSource {
    /// What is left on the disk: Docker's account and the overlay2 directories nothing
    /// references. Fails only when Docker cannot be read; a directory that cannot be read
    /// goes to `unaccounted_errors`. Costs an inspect per image and container, the engine's
    /// walk of each container's writable layer, and a walk of the volumes and unreferenced
    /// directories (bounded, off the async threads) — for the escalation path, not a tick.
    pub async fn leftovers(&self) -> Result<Leftovers, DockerError> {
        let images_opts = ListImagesOptions {
            shared_size: true,
            ..Default::default()
        };
        let containers_opts = ListContainersOptions {
            all: true,
            size: true,
            ..Default::default()
        };
        let (info, images, containers, volumes) = tokio::try_join!(
            self.bounded("info", self.docker.info()),
            self.bounded("list images", self.docker.list_images(Some(images_opts))),
            self.bounded(
                "list containers with sizes",
                self.docker.list_containers(Some(containers_opts))
            ),
            self.bounded(
                "list volumes",
                self.docker.list_volumes(None::<ListVolumesOptions>)
            ),
        )?;
        let mut facts = Facts {
            root: info
                .docker_root_dir
                .filter(|r| !r.is_empty())
                .map(PathBuf::from),
            driver: info.driver.unwrap_or_default(),
            ..Facts::default()
        };

        (facts.sized, facts.volumes) = account(&images, &containers, volumes.volumes);

        // Which overlay2 directories images and containers use, from their GraphDriver data.
        // Collected first: an iterator of closures held across the awaits below would make
        // the future not Send (the ECS actor awaits it on the runtime).
        let ids: Vec<(bool, String)> = (images.iter().map(|i| (true, i.id.clone())))
            .chain(
                containers
                    .iter()
                    .filter_map(|c| Some((false, c.id.clone()?))),
            )
            .collect();
        let inspected: Vec<_> = stream::iter(ids)
            .map(|(image, id)| async move {
                let data = if image {
                    let r = self.bounded("inspect image", self.docker.inspect_image(&id));
                    r.await.map(|i| i.graph_driver)
                } else {
                    let r = self.docker.inspect_container(&id, None);
                    self.bounded("inspect container", r)
                        .await
                        .map(|c| c.graph_driver)
                };
                (id, data)
            })
            .buffer_unordered(INSPECT_CONCURRENCY)
            .collect()
            .await;
        for (id, data) in inspected {
            match data {
                Ok(driver) => {
                    let data = driver.map(|d| d.data).unwrap_or_default();
                    facts.in_use_dirs.extend(layer_dir_names(&data));
                }
                // Gone since it was listed, or unreadable: the layer store still names its
                // directories, so they are not mistaken for unreferenced ones.
                Err(e) => facts.errors.push(format!("{}: {e}", short(&id))),
            }
        }

        // The walk panicking is the only way to lose it; the report then says so.
        Ok(tokio::task::spawn_blocking(move || measure(facts))
            .await
            .unwrap_or_else(|e| {
                Leftovers::new(Vec::new(), vec![format!("measuring the disk failed: {e}")])
            }))
    }
}

/// Docker's own account from its list calls: containers' writable layers, images with
/// the containers that use them, and local volumes (to be measured) with theirs.
fn account(
    images: &[ImageSummary],
    containers: &[ContainerSummary],
    volumes: Option<Vec<Volume>>,
) -> (Vec<Leftover>, Vec<(String, PathBuf, u64)>) {
    let mut sized = Vec::new();
    let mut users: HashMap<&str, u64> = HashMap::new();
    let mut volume_users: HashMap<&str, u64> = HashMap::new();
    for c in containers {
        *users
            .entry(c.image_id.as_deref().unwrap_or_default())
            .or_default() += 1;
        let mut named: Vec<&str> = (c.mounts.iter().flatten())
            .filter(|m| m.typ.as_deref() == Some("volume"))
            .filter_map(|m| m.name.as_deref())
            .collect();
        named.sort_unstable();
        named.dedup();
        for v in named {
            *volume_users.entry(v).or_default() += 1;
        }
        let name = (c.names.iter().flatten().next())
            .map(|n| n.trim_start_matches('/').to_owned())
            .unwrap_or_else(|| short(c.id.as_deref().unwrap_or_default()));
        sized.push(Leftover {
            kind: LeftoverKind::Container,
            name,
            bytes: u64::try_from(c.size_rw.unwrap_or(0)).unwrap_or(0),
            in_use: None,
            at_least: false,
        });
    }
    for i in images {
        let name = (i.repo_tags.iter())
            .find(|t| *t != "<none>:<none>")
            .cloned()
            .unwrap_or_else(|| short(&i.id));
        sized.push(Leftover {
            kind: LeftoverKind::Image,
            name,
            bytes: u64::try_from(i.size).unwrap_or(0),
            in_use: Some(users.get(i.id.as_str()).copied().unwrap_or(0)),
            at_least: false,
        });
    }
    // Other drivers keep their data elsewhere (NFS, EBS): not Docker's disk.
    let volumes = (volumes.into_iter().flatten())
        .filter(|v| v.driver == "local" && !v.mountpoint.is_empty())
        .map(|v| {
            let n = volume_users.get(v.name.as_str()).copied().unwrap_or(0);
            (v.name, PathBuf::from(v.mountpoint), n)
        })
        .collect();
    (sized, volumes)
}

/// The blocking half: walks the volumes, Docker's layer store and the overlay2 directory.
fn measure(facts: Facts) -> Leftovers {
    let Facts {
        root,
        driver,
        mut sized,
        volumes,
        in_use_dirs,
        mut errors,
    } = facts;
    let Some(root) = root else {
        errors.push("Docker did not say where its root directory is".to_owned());
        return Leftovers::new(sized, errors);
    };
    let mut walker = match Du::on(&root, WALK_BUDGET) {
        Ok(w) => w,
        Err(e) => {
            errors.push(format!("{}: {e}", root.display()));
            return Leftovers::new(sized, errors);
        }
    };
    for (name, mountpoint, users) in volumes {
        if let Some((bytes, at_least)) = walker.measure(&mountpoint, &mut errors) {
            sized.push(Leftover {
                kind: LeftoverKind::Volume,
                name,
                bytes,
                in_use: Some(users),
                at_least,
            });
        }
    }

    // BuildKit's own state, and the layers only Docker's layer store or BuildKit hold (the
    // build cache, in the engine's classic and BuildKit builders alike).
    let mut cache = (0u64, false);
    let buildkit = root.join("buildkit");
    if buildkit.is_dir() {
        if let Some((b, cut)) = walker.measure(&buildkit, &mut errors) {
            cache = (cache.0.saturating_add(b), cache.1 || cut);
        }
    }
    if driver == "overlay2" {
        let overlay2 = root.join("overlay2");
        // Listed before the layer store is read: a layer created in between is in both.
        let dirs = overlay2_dirs(&overlay2, &mut errors);
        let known = layer_store_dirs(&root, &mut errors);
        let snapshots = std::fs::read(buildkit.join("snapshots.db")).unwrap_or_default();
        for dir in dirs.into_iter().filter(|d| !in_use_dirs.contains(d)) {
            let Some((bytes, at_least)) = walker.measure(&overlay2.join(&dir), &mut errors) else {
                continue;
            };
            if known.contains(&dir) || contains(&snapshots, dir.as_bytes()) {
                cache = (cache.0.saturating_add(bytes), cache.1 || at_least);
            } else {
                sized.push(Leftover {
                    kind: LeftoverKind::UnreferencedDir,
                    name: dir,
                    bytes,
                    in_use: None,
                    at_least,
                });
            }
        }
    } else {
        errors.push(format!(
            "storage driver {driver:?}: unreferenced layer directories are looked for under overlay2 only"
        ));
    }
    sized.push(Leftover {
        kind: LeftoverKind::BuildCache,
        name: "build cache".to_owned(),
        bytes: cache.0,
        in_use: None,
        at_least: cache.1,
    });
    Leftovers::new(sized, errors)
}

/// The directories of `<root>/overlay2` but `l` (its short links to the layers' `diff`).
fn overlay2_dirs(overlay2: &Path, errors: &mut Vec<String>) -> Vec<String> {
    let entries = match std::fs::read_dir(overlay2) {
        Ok(e) => e,
        Err(e) => {
            errors.push(format!("{}: {e}", overlay2.display()));
            return Vec::new();
        }
    };
    let mut dirs: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n != "l")
        .collect();
    dirs.sort();
    dirs
}

/// The overlay2 directory names Docker's layer store records: `cache-id` of every image
/// layer, `mount-id` and `init-id` of every read-write layer (containers, builds).
fn layer_store_dirs(root: &Path, errors: &mut Vec<String>) -> HashSet<String> {
    let db = root.join("image/overlay2/layerdb");
    let mut names = HashSet::new();
    for (sub, files) in [
        ("sha256", &["cache-id"][..]),
        ("mounts", &["mount-id", "init-id"]),
    ] {
        let dir = db.join(sub);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                errors.push(format!("{}: {e}", dir.display()));
                continue;
            }
        };
        for entry in entries.flatten() {
            for file in files {
                if let Ok(id) = std::fs::read_to_string(entry.path().join(file)) {
                    names.insert(id.trim().to_owned());
                }
            }
        }
    }
    names
}

/// Whether `needle` occurs in `hay` (BuildKit's bolt database holds snapshot keys as bytes).
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
#[path = "leftovers_tests.rs"]
mod tests;
