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
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Volume {
    Docker,
    Etcd,
}

impl Volume {
    pub fn name(self) -> &'static str {
        match self {
            Volume::Docker => "docker",
            Volume::Etcd => "etcd",
        }
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
}

impl FsSampler {
    pub fn new(settings: &Settings) -> Self {
        FsSampler {
            docker_root: settings.docker.root.clone(),
            etcd_dir: settings.etcd.data_dir.clone(),
            etcd: settings.etcd.enabled,
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
