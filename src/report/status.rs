//! The status report: `diskguard status` as a table or as JSON (the JSON is a contract).

use std::fmt::Write as _;

use serde::Serialize;

use super::etcd_status::EtcdStatus;
use crate::config::{Mode, Settings, Toggle};
use crate::docker::TopWriter;
use crate::human;
use crate::policy::{Driver, EcsDecision, EvictDecision, Finding, Level, Plan};
use crate::sample::{EcsView, MountInfo, Snapshot, Volume};

/// Why diskguard is in local mode, shown in `status` and in the first log lines.
pub fn local_mode_reason(settings: &Settings) -> String {
    let why = if settings.ecs.enabled == Toggle::Off {
        "ECS is off (ecs.enabled = false)"
    } else {
        "no ECS container instance found (ECS agent introspection, then ecs.config)"
    };
    format!("local mode: {why}; watching the disks and reclaiming through the local Docker")
}

/// `status --json`. Fields the README lists (Commands, etcd, Draining) are a contract; others may be added.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub version: &'static str,
    pub mode: Mode,
    pub local_mode: bool,
    /// `host`, `container` or `ecs-task` (the daemon service: no sd_notify, no watchdog).
    pub runs_as: crate::runtime::RunsAs,
    pub level: Level,
    pub volumes: Vec<VolumeStatus>,
    pub ecs: Option<EcsStatusReport>,
    pub etcd: Option<EtcdStatus>,
    pub docker: Option<DockerStatus>,
    pub plan: Vec<PlanItem>,
    pub findings: Vec<Finding>,
}

#[derive(Debug, Serialize)]
pub struct VolumeStatus {
    pub name: Volume,
    pub path: String,
    pub level: Level,
    pub driven_by: Driver,
    pub used_percent: Option<f64>,
    pub inodes_used_percent: Option<f64>,
    pub free_bytes: Option<u64>,
    pub total_bytes: Option<u64>,
    pub free_inodes: Option<u64>,
    pub time_to_full_seconds: Option<u64>,
    pub mount: Option<MountInfo>,
    pub error: Option<String>,
}

/// This container instance as `status` shows it (contract: `cluster`,
/// `container_instance_arn`, `status`, `drained_by_diskguard`).
#[derive(Debug, Serialize)]
pub struct EcsStatusReport {
    pub cluster: String,
    pub container_instance_arn: String,
    pub status: String,
    pub drained_by_diskguard: bool,
    /// The `diskguard.drained-at` attribute's value.
    pub drained_at: Option<String>,
    pub cluster_active: u32,
    pub cluster_draining: u32,
    /// This instance's `diskguard.culprit`, if set.
    pub culprit: Option<String>,
    /// Task families the cluster's instances name as culprits, with how many name each.
    pub culprits: Vec<Culprit>,
}

/// A task family named as the cause of full disks.
#[derive(Debug, Serialize)]
pub struct Culprit {
    pub task_family: String,
    pub instances: u32,
}

impl From<&EcsView> for EcsStatusReport {
    fn from(v: &EcsView) -> Self {
        EcsStatusReport {
            cluster: v.cluster.clone(),
            container_instance_arn: v.container_instance_arn.clone(),
            status: v.status.as_str().to_owned(),
            drained_by_diskguard: v.drained_at.is_some(),
            drained_at: v.drained_at.clone(),
            cluster_active: v.cluster_active,
            cluster_draining: v.cluster_draining,
            culprit: v.culprit.clone(),
            culprits: Vec::new(),
        }
    }
}

/// Docker as `status` saw it.
#[derive(Debug, Serialize)]
pub struct DockerStatus {
    pub host: String,
    pub connected: bool,
    pub images: usize,
    pub containers: usize,
    /// At `prune` level and above: what holds the most bytes (writable layer + log).
    pub top_writers: Vec<TopWriter>,
    /// The running containers' json logs, largest first (at any level).
    pub logs: Vec<ContainerLog>,
    pub error: Option<String>,
}

/// One running container's json log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerLog {
    pub name: String,
    pub task_family: Option<String>,
    pub bytes: u64,
    /// `max-size` of its log options; `None`: it grows without limit.
    pub max_size: Option<String>,
}

impl std::fmt::Display for ContainerLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.name, human::bytes(self.bytes))?;
        if let Some(family) = &self.task_family {
            write!(f, " (task {family})")?;
        }
        match &self.max_size {
            Some(m) => write!(f, ", max-size {m}"),
            None => write!(f, ", no size limit"),
        }
    }
}

/// One thing the plan would do now.
#[derive(Debug, Serialize)]
pub struct PlanItem {
    pub action: &'static str,
    pub target: String,
    /// Tags or container name, for people.
    pub name: Option<String>,
    pub bytes: Option<u64>,
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

impl StatusReport {
    pub fn new(snapshot: &Snapshot, plan: &Plan, settings: &Settings) -> Self {
        let local_mode = snapshot.ecs.is_none();
        let volumes = plan
            .volumes
            .iter()
            .map(|v| VolumeStatus {
                name: v.volume,
                path: v.path.display().to_string(),
                level: v.level,
                driven_by: v.driven_by,
                used_percent: v.stats.map(|s| round2(s.used_percent())),
                inodes_used_percent: v.stats.map(|s| round2(s.inodes_used_percent())),
                free_bytes: v.stats.map(|s| s.avail_bytes),
                total_bytes: v.stats.map(|s| s.total_bytes),
                free_inodes: v.stats.map(|s| s.free_inodes),
                time_to_full_seconds: v.time_to_full.map(|d| d.as_secs()),
                mount: v.stats.and_then(|_| crate::sample::mount_of(&v.path)),
                error: v.error.clone(),
            })
            .collect();
        let mut items: Vec<PlanItem> = plan
            .reclaim
            .iter()
            .map(|s| PlanItem {
                action: s.rung.action(),
                target: s.id.clone(),
                name: Some(s.name.clone()),
                bytes: Some(s.bytes),
            })
            .collect();
        if plan.reclaim_wanted && plan.reclaim.is_empty() {
            items.push(PlanItem {
                action: "reclaim",
                target: settings.docker.root.display().to_string(),
                name: None,
                bytes: plan.reclaim_needed_bytes,
            });
        }
        if let EvictDecision::Evict(e) = &plan.evict {
            items.insert(
                0,
                PlanItem {
                    action: "evict",
                    target: e.container_id.clone(),
                    name: Some(format!(
                        "{}{}",
                        e.name,
                        e.task_family
                            .as_ref()
                            .map_or(String::new(), |f| format!(" (task family {f})"))
                    )),
                    bytes: Some(e.written_bytes),
                },
            );
        }
        if let Some(ecs) = &snapshot.ecs {
            let action = match plan.ecs {
                EcsDecision::None => None,
                EcsDecision::Drain { .. } => Some("drain"),
                EcsDecision::DrainSuppressed { .. } => Some("drain_suppressed"),
                EcsDecision::Undrain => Some("undrain"),
                EcsDecision::RemoveStaleMark => Some("remove_drain_attribute"),
                EcsDecision::ClearCulprit => Some("remove_culprit_attribute"),
            };
            if let Some(action) = action {
                items.push(PlanItem {
                    action,
                    target: ecs.container_instance_arn.clone(),
                    name: None,
                    bytes: None,
                });
            }
        }
        let mut findings = plan.findings.clone();
        if let Some(e) = snapshot.etcd.as_ref().and_then(|v| v.error.as_ref()) {
            findings.push(Finding {
                volume: Some(Volume::Etcd),
                message: format!("etcd cannot be read: {e}"),
            });
        }
        if local_mode {
            findings.push(Finding {
                volume: None,
                message: local_mode_reason(settings),
            });
        }
        StatusReport {
            version: crate::version::VERSION,
            mode: settings.mode,
            local_mode,
            runs_as: crate::runtime::RunsAs::detect(),
            level: plan.level,
            volumes,
            ecs: snapshot.ecs.as_ref().map(EcsStatusReport::from),
            etcd: snapshot
                .etcd
                .as_ref()
                .map(|v| EtcdStatus::new(v, plan.etcd.as_ref(), settings)),
            docker: None,
            plan: items,
            findings,
        }
    }

    /// The cluster's culprits, read by `status` from every instance's attributes.
    pub fn with_culprits(mut self, culprits: &std::collections::BTreeMap<String, u32>) -> Self {
        if let Some(ecs) = &mut self.ecs {
            ecs.culprits = culprits
                .iter()
                .map(|(f, n)| Culprit {
                    task_family: f.clone(),
                    instances: *n,
                })
                .collect();
        }
        self
    }

    pub fn with_docker(mut self, docker: DockerStatus) -> Self {
        if let Some(e) = &docker.error {
            self.findings.push(Finding {
                volume: Some(Volume::Docker),
                message: format!("Docker: {e}"),
            });
        }
        self.docker = Some(docker);
        self
    }

    /// The readable form.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let mode = match self.mode {
            Mode::Enforce => "enforce",
            Mode::Observe => "observe (removes and drains nothing)",
        };
        let _ = writeln!(
            out,
            "diskguard {} — mode {mode}, running {}",
            self.version,
            self.runs_as.describe()
        );
        let _ = writeln!(out, "level: {}\n", self.level);
        let _ = writeln!(
            out,
            "{:<7} {:<9} {:>7} {:>7} {:>11} {:>13}  PATH (MOUNT)",
            "VOLUME", "LEVEL", "USED", "INODES", "FREE", "TIME TO FULL"
        );
        for v in &self.volumes {
            let pct = |p: Option<f64>| p.map_or("-".to_owned(), |p| format!("{p:.1}%"));
            let ttf = v.time_to_full_seconds.map_or("-".to_owned(), |s| {
                humantime::format_duration(std::time::Duration::from_secs(s)).to_string()
            });
            let mount = v.mount.as_ref().map_or(String::new(), |m| {
                format!(
                    " (on {} {} {})",
                    m.mount_point.display(),
                    m.fs_type,
                    m.device
                )
            });
            let level = if v.error.is_some() {
                "unknown".to_owned()
            } else {
                v.level.to_string()
            };
            let _ = writeln!(
                out,
                "{:<7} {:<9} {:>7} {:>7} {:>11} {:>13}  {}{}",
                v.name.name(),
                level,
                pct(v.used_percent),
                pct(v.inodes_used_percent),
                v.free_bytes.map_or("-".to_owned(), human::bytes),
                ttf,
                v.path,
                mount
            );
        }
        let _ = writeln!(out);
        if let Some(d) = &self.docker {
            if d.connected {
                let _ = writeln!(
                    out,
                    "docker: {} — {} images, {} containers",
                    d.host, d.images, d.containers
                );
            } else {
                let _ = writeln!(out, "docker: {} — not reachable", d.host);
            }
            for (i, w) in d.top_writers.iter().enumerate() {
                let _ = writeln!(out, "  top writer {}: {w}", i + 1);
            }
            for (i, l) in d.logs.iter().enumerate() {
                let _ = writeln!(out, "  log {}: {l}", i + 1);
            }
        }
        match &self.ecs {
            Some(e) => {
                let _ = writeln!(
                    out,
                    "ecs: {} in cluster {} is {}{}",
                    e.container_instance_arn,
                    e.cluster,
                    e.status,
                    if e.drained_by_diskguard {
                        " (drained by diskguard)"
                    } else {
                        ""
                    }
                );
                if let Some(c) = &e.culprit {
                    let _ = writeln!(out, "  this instance names task family {c} as the culprit");
                }
                if !e.culprits.is_empty() {
                    let list: Vec<String> = e
                        .culprits
                        .iter()
                        .map(|c| {
                            format!(
                                "{} ({} instance{})",
                                c.task_family,
                                c.instances,
                                if c.instances == 1 { "" } else { "s" }
                            )
                        })
                        .collect();
                    let _ = writeln!(out, "  culprits in the cluster: {}", list.join(", "));
                }
            }
            None => {
                let _ = writeln!(out, "ecs: not connected");
            }
        }
        if let Some(etcd) = &self.etcd {
            let _ = writeln!(out, "{}", etcd.line());
        }
        if self.plan.is_empty() {
            let _ = writeln!(out, "plan: nothing to do");
        } else {
            let _ = writeln!(out, "plan:");
            for item in &self.plan {
                let bytes = item
                    .bytes
                    .map_or(String::new(), |b| format!("  {}", human::bytes(b)));
                let name = item
                    .name
                    .as_ref()
                    .map_or(String::new(), |n| format!(" ({n})"));
                let _ = writeln!(out, "  {:<22} {}{name}{bytes}", item.action, item.target);
            }
        }
        for f in &self.findings {
            let _ = writeln!(out, "note: {}", f.message);
        }
        out
    }
}
