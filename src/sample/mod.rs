//! Reading the world: the watched filesystems, their history, and plain-data descriptions
//! of Docker, ECS and etcd that the policy can reason about without holding a handle to
//! any of them (the clients that fill them live in `crate::docker`, `crate::ecs`).

mod fs;
mod history;
mod model;
mod mounts;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;

use crate::config::{Settings, Toggle};

pub use fs::{FsStats, stat};
pub use history::{History, Point};
pub use model::{
    BuildCache, ContainerInfo, ContainerState, ContainerWrites, DrainingInstance,
    ECS_CONTAINER_LABEL, EcsStatus, EcsView, EtcdAlarm, EtcdView, ImageInfo, Inventory, KEEP_LABEL,
    TASK_ARN_LABEL, TASK_FAMILY_LABEL,
};
pub use mounts::{MountInfo, mount_of};

/// A watched volume. The names are the `Volume` dimension of the CloudWatch metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Volume {
    Docker,
    Etcd,
    /// A `[[watch]]` entry, by its name (kept for the process's life: names come from the
    /// configuration, read once).
    Watch(&'static str),
}

impl Volume {
    pub fn name(self) -> &'static str {
        match self {
            Volume::Docker => "docker",
            Volume::Etcd => "etcd",
            Volume::Watch(name) => name,
        }
    }

    /// The volume of a `[[watch]]` entry. Each distinct name is allocated once.
    pub fn watch(name: &str) -> Volume {
        static NAMES: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
        let mut names = NAMES
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(known) = names.iter().find(|n| **n == name) {
            return Volume::Watch(known);
        }
        let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
        names.push(leaked);
        Volume::Watch(leaked)
    }

    /// Docker's volume or a `[[watch]]` entry: what decides a drain.
    pub fn drains(self) -> bool {
        matches!(self, Volume::Docker | Volume::Watch(_))
    }
}

impl Serialize for Volume {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl std::fmt::Display for Volume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A volume as read at one instant: its numbers, or why they could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeSnapshot {
    pub volume: Volume,
    pub path: PathBuf,
    pub stats: Option<FsStats>,
    pub error: Option<String>,
}

/// Everything the policy looks at, as plain data.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub at: SystemTime,
    pub volumes: Vec<VolumeSnapshot>,
    /// Docker's images, containers and build cache; `None` until Docker has been read.
    pub inventory: Option<std::sync::Arc<Inventory>>,
    /// Ids the engine failed to remove earlier in this reclaim episode: planned no more
    /// until the disk recovers, so the ladder goes on past them.
    pub reclaim_skip: std::collections::HashSet<String>,
    /// Running containers and what each wrote over the last seconds; measured only at
    /// `prune` level and above (empty otherwise).
    pub writers: std::sync::Arc<Vec<ContainerWrites>>,
    /// The ECS cluster this instance belongs to, from its identity (the ECS agent, the
    /// config or ecs.config) — known even while the ECS API cannot be read, so metrics
    /// keep their `ClusterName` through an outage.
    pub cluster: Option<String>,
    /// This container instance in ECS as last read; `None` in local mode.
    pub ecs: Option<EcsView>,
    /// etcd's backend; `None` when etcd is not watched or not reachable.
    pub etcd: Option<EtcdView>,
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot {
            at: SystemTime::UNIX_EPOCH,
            volumes: Vec::new(),
            inventory: None,
            reclaim_skip: std::collections::HashSet::new(),
            writers: std::sync::Arc::default(),
            cluster: None,
            ecs: None,
            etcd: None,
        }
    }
}

impl Snapshot {
    pub fn volume(&self, volume: Volume) -> Option<&VolumeSnapshot> {
        self.volumes.iter().find(|v| v.volume == volume)
    }
}

/// Reads the watched filesystems. Holds no handles: each call is two syscalls per volume.
#[derive(Debug, Clone)]
pub struct FsSampler {
    docker_root: PathBuf,
    etcd_dir: PathBuf,
    etcd: Toggle,
    /// `[[watch]]` entries: the volume, its path, and whether it is a default.
    watches: Vec<(Volume, PathBuf, bool)>,
}

impl FsSampler {
    pub fn new(settings: &Settings) -> Self {
        FsSampler {
            docker_root: settings.docker.root.clone(),
            etcd_dir: settings.etcd.data_dir.clone(),
            etcd: settings.etcd.enabled,
            watches: settings
                .watch
                .iter()
                .map(|w| (Volume::watch(&w.name), w.path.clone(), w.default))
                .collect(),
        }
    }

    /// Reads every watched volume. Never fails: an unreadable path becomes a finding.
    /// With `etcd.enabled = "auto"`, a missing etcd data dir means etcd is not watched.
    pub fn sample(&self, at: SystemTime) -> Snapshot {
        let mut volumes = vec![read(Volume::Docker, &self.docker_root)];
        if self.etcd != Toggle::Off {
            let etcd = read(Volume::Etcd, &self.etcd_dir);
            let absent = etcd.error.is_some() && !self.etcd_dir.exists();
            if !(absent && self.etcd == Toggle::Auto) {
                volumes.push(etcd);
            }
        }
        for (volume, path, default) in &self.watches {
            let v = read(*volume, path);
            if *default && v.error.is_some() && !path.exists() {
                continue;
            }
            // A filesystem already watched is reported once, under its first name.
            let device = v.stats.map(|s| s.device);
            if device.is_some() && volumes.iter().any(|w| w.stats.map(|s| s.device) == device) {
                continue;
            }
            volumes.push(v);
        }
        Snapshot {
            at,
            volumes,
            ..Snapshot::default()
        }
    }
}

fn read(volume: Volume, path: &Path) -> VolumeSnapshot {
    match stat(path) {
        Ok(stats) => VolumeSnapshot {
            volume,
            path: path.to_owned(),
            stats: Some(stats),
            error: None,
        },
        Err(e) => VolumeSnapshot {
            volume,
            path: path.to_owned(),
            stats: None,
            error: Some(match e.kind() {
                std::io::ErrorKind::NotFound => format!("{} does not exist", path.display()),
                _ => format!("cannot read {}: {e}", path.display()),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::WatchSettings;

    fn watch(name: &str, path: &Path, default: bool) -> WatchSettings {
        WatchSettings {
            name: name.into(),
            path: path.to_owned(),
            default,
        }
    }

    #[test]
    fn a_filesystem_watched_twice_is_read_once_and_a_missing_default_is_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut settings = Settings::default();
        settings.docker.root = dir.path().join("docker");
        std::fs::create_dir_all(&settings.docker.root).expect("mkdir");
        settings.etcd.enabled = Toggle::Off;
        settings.watch = vec![
            // The same filesystem as Docker's root, twice.
            watch("ecs", dir.path(), false),
            watch("state", &dir.path().join("docker"), false),
            // A default whose path does not exist: not watched, not an error.
            watch("root", &dir.path().join("absent"), true),
            // A configured path that does not exist: watched, unreadable.
            watch("data", &dir.path().join("missing"), false),
        ];
        let snap = FsSampler::new(&settings).sample(SystemTime::UNIX_EPOCH);
        let names: Vec<&str> = snap.volumes.iter().map(|v| v.volume.name()).collect();
        assert_eq!(names, ["docker", "data"]);
        assert!(
            snap.volumes[1]
                .error
                .as_deref()
                .is_some_and(|e| e.contains("does not exist"))
        );
    }
}
