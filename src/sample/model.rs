//! Plain-data descriptions of Docker, ECS and etcd, filled by their samplers and read by
//! the policy. Nothing here holds a connection, so the policy stays pure and testable.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Serialize;

/// A container (and its image) with this label set to `true` is never removed.
pub const KEEP_LABEL: &str = "diskguard.keep";

/// An image as the policy needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageInfo {
    /// `sha256:…`; removal is by id, so a multi-tagged image counts once.
    pub id: String,
    /// `repo:tag` names.
    pub tags: Vec<String>,
    /// `repo@sha256:…` names: an image pulled by digest may have these and no tag.
    pub digests: Vec<String>,
    pub size_bytes: u64,
    pub created: SystemTime,
    /// Last time a container was created or started from it, or it was tagged, whichever is
    /// latest; never earlier than `created`.
    pub last_used: SystemTime,
    /// The image this one was built on, when Docker still has it (legacy builder).
    pub parent: Option<String>,
    pub labels: BTreeMap<String, String>,
}

impl ImageInfo {
    /// No name at all: neither a tag nor a repo digest. An image pulled by digest only
    /// is not dangling — it is somebody's image, aged and protected like a tagged one.
    pub fn is_dangling(&self) -> bool {
        self.tags.is_empty() && self.digests.is_empty()
    }

    /// Every name the image goes by: tags, then repo digests.
    pub fn references(&self) -> impl Iterator<Item = &str> {
        self.tags.iter().chain(&self.digests).map(String::as_str)
    }

    pub fn has_keep_label(&self) -> bool {
        self.labels.get(KEEP_LABEL).is_some_and(|v| v == "true")
    }
}

/// Docker's container states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerState {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl ContainerState {
    /// Stopped for good: the only states a container may be removed in. `Created` is not
    /// one of them — ECS creates containers, then starts them.
    pub fn is_stopped(self) -> bool {
        matches!(self, ContainerState::Exited | ContainerState::Dead)
    }
}

/// A container as the policy needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub image_id: String,
    pub state: ContainerState,
    pub created: SystemTime,
    pub finished_at: Option<SystemTime>,
    pub labels: BTreeMap<String, String>,
    /// Writable layer, known only after a `size=true` listing (slow; prune level only).
    pub size_rw_bytes: Option<u64>,
    /// The json-file log, when it can be measured.
    pub log_bytes: Option<u64>,
}

impl ContainerInfo {
    pub fn has_keep_label(&self) -> bool {
        self.labels.get(KEEP_LABEL).is_some_and(|v| v == "true")
    }

    /// What removing it gives back, as far as it is known.
    pub fn reclaimable_bytes(&self) -> u64 {
        self.size_rw_bytes.unwrap_or(0) + self.log_bytes.unwrap_or(0)
    }
}

/// ECS puts these labels on every task container.
pub const TASK_FAMILY_LABEL: &str = "com.amazonaws.ecs.task-definition-family";
pub const TASK_ARN_LABEL: &str = "com.amazonaws.ecs.task-arn";
pub const ECS_CONTAINER_LABEL: &str = "com.amazonaws.ecs.container-name";

/// What one running container wrote over the last seconds, as the Docker actor measured
/// it (the cgroup's write count where cgroup v2 has it, else its writable layer and log).
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerWrites {
    pub id: String,
    pub name: String,
    pub image_id: String,
    pub labels: BTreeMap<String, String>,
    /// Over the last measurement window (about a second).
    pub bytes_per_second: f64,
    /// The highest such rate in the last 30 seconds: who was filling the disk when it
    /// filled up, after everyone's writes have stopped against a full disk.
    pub peak_bytes_per_second: f64,
    /// Written since it started (cgroup), or held in its layer and log.
    pub written_bytes: u64,
}

impl ContainerWrites {
    pub fn has_keep_label(&self) -> bool {
        self.labels.get(KEEP_LABEL).is_some_and(|v| v == "true")
    }

    pub fn task_family(&self) -> Option<&str> {
        self.labels.get(TASK_FAMILY_LABEL).map(String::as_str)
    }

    pub fn task_arn(&self) -> Option<&str> {
        self.labels.get(TASK_ARN_LABEL).map(String::as_str)
    }

    pub fn ecs_container_name(&self) -> Option<&str> {
        self.labels.get(ECS_CONTAINER_LABEL).map(String::as_str)
    }
}

/// Build cache size, where the engine reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildCache {
    pub reclaimable_bytes: u64,
}

/// Docker's images, containers and build cache at one instant.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Inventory {
    /// Counts inventories read by this process, so a plan can say which one it used.
    pub generation: u64,
    pub images: Vec<ImageInfo>,
    pub containers: Vec<ContainerInfo>,
    pub build_cache: Option<BuildCache>,
}

/// ECS container instance states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EcsStatus {
    Active,
    Draining,
    /// REGISTERING, DEREGISTERING, REGISTRATION_FAILED …: diskguard leaves those alone.
    Other(String),
}

impl EcsStatus {
    pub fn as_str(&self) -> &str {
        match self {
            EcsStatus::Active => "ACTIVE",
            EcsStatus::Draining => "DRAINING",
            EcsStatus::Other(s) => s,
        }
    }
}

impl Serialize for EcsStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// This container instance and its cluster, as last read from ECS.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EcsView {
    pub cluster: String,
    pub container_instance_arn: String,
    pub status: EcsStatus,
    /// Value of the `diskguard.drained-at` attribute: set only when diskguard drained it.
    pub drained_at: Option<String>,
    /// Value of the `diskguard.culprit` attribute: the task family that filled the disk.
    pub culprit: Option<String>,
    /// ACTIVE and DRAINING instances in the cluster, this one included, as last counted:
    /// the total from DescribeClusters (every 30 minutes while idle), the DRAINING ones at
    /// the last drain decision (0 until one) — idle reads never list the cluster.
    pub cluster_active: u32,
    pub cluster_draining: u32,
    /// The last read of this instance succeeded: false through an ECS outage or after the
    /// instance was deregistered, when its status is no longer known (nor published).
    #[serde(skip)]
    pub current: bool,
}

/// A container instance of the cluster that is DRAINING, or ACTIVE with diskguard's mark
/// (a claim: it is about to drain), as read when checking the budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainingInstance {
    pub arn: String,
    /// Value of diskguard's mark; `None` when someone else drained it.
    pub marked_at: Option<String>,
    /// DRAINING already; `false`: ACTIVE with a claim.
    pub draining: bool,
}

/// One alarm raised in the etcd cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EtcdAlarm {
    /// The member that raised it (etcd prints member ids in hex; this is the number).
    pub member_id: u64,
    /// `NOSPACE`, `CORRUPT`.
    pub alarm: String,
}

/// etcd as last read over its client URL: its backend against the quota, its alarms, or
/// why it could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EtcdView {
    pub endpoint: String,
    /// etcd answered at all (garbage included); `false`: refused, timed out, TLS failed.
    pub reachable: bool,
    /// Why the numbers are missing: down, or an answer that is not etcd's.
    pub error: Option<String>,
    pub db_bytes: Option<u64>,
    /// Bytes of the db holding live data; the rest is free pages a defragment returns.
    pub in_use_bytes: Option<u64>,
    pub quota_bytes: Option<u64>,
    /// A NOSPACE alarm is raised (by any member: the alarm is cluster-wide).
    pub alarm_nospace: bool,
    pub alarms: Vec<EtcdAlarm>,
    /// This member's id and the cluster's revision, when `/v3/maintenance/status` answered.
    pub member_id: Option<u64>,
    pub revision: Option<u64>,
}

impl EtcdView {
    /// A view of an etcd that could not be read.
    pub fn failed(endpoint: &str, reachable: bool, error: String) -> Self {
        EtcdView {
            endpoint: endpoint.to_owned(),
            reachable,
            error: Some(error),
            db_bytes: None,
            in_use_bytes: None,
            quota_bytes: None,
            alarm_nospace: false,
            alarms: Vec::new(),
            member_id: None,
            revision: None,
        }
    }

    /// The numbers were read.
    pub fn is_readable(&self) -> bool {
        self.error.is_none() && self.db_bytes.is_some()
    }

    /// db size over quota, in percent.
    pub fn quota_used_percent(&self) -> Option<f64> {
        match (self.db_bytes, self.quota_bytes) {
            (Some(db), Some(quota)) if quota > 0 => Some(db as f64 * 100.0 / quota as f64),
            _ => None,
        }
    }
}
