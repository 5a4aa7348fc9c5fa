//! Gathering what the checks look at: Docker's daemon.json, the ECS agent's ecs.config,
//! the filesystems of Docker's root, etcd's data dir and the host's root, Docker's running
//! containers, diskguard's own unit — from the paths in `[host]`, so that tests use
//! fixtures — and, on an ECS instance, its Auto Scaling group (IMDS for the instance id,
//! then one or two Auto Scaling calls). Nothing here judges; what cannot be read is said in
//! `not_checked`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::asg::{AsgClient, Group};
use crate::config::{Settings, Toggle};
use crate::docker::{ContainerFacts, DockerSource};
use crate::error::chain;
use crate::sample::{FsStats, stat};
use crate::unit_file::read_unit;

/// Docker gets this long to list and inspect; past it, the container checks are skipped.
const DOCKER_PATIENCE: Duration = Duration::from_secs(15);
/// Auto Scaling gets this long for its one or two calls (the SDK retries within it).
const AUTO_SCALING_PATIENCE: Duration = Duration::from_secs(15);

/// A path and the filesystem under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsFacts {
    pub path: PathBuf,
    pub stats: FsStats,
}

/// diskguard's own unit as systemd would merge it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitFacts {
    pub path: PathBuf,
    /// `WatchdogSec=` after drop-ins; `None` when unset or reset.
    pub watchdog_sec: Option<String>,
}

/// This instance's place in Auto Scaling, which escalation to replacement needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AutoScalingFacts {
    /// Not looked at (ECS is off, or "auto" on a host without ecs.config), or could not be
    /// read (IMDS gave no instance id, an Auto Scaling call failed: see `not_checked`).
    #[default]
    Unknown,
    /// DescribeAutoScalingInstances does not know the instance.
    NoGroup {
        instance_id: String,
    },
    InGroup {
        instance_id: String,
        group: Group,
    },
}

/// Everything the checks look at.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inputs {
    pub daemon_json_path: PathBuf,
    /// `None`: no daemon.json (Docker's defaults apply).
    pub daemon_json: Option<serde_json::Value>,
    pub ecs_config_path: PathBuf,
    /// `None`: no ecs.config (not an ECS instance, or not this agent).
    pub ecs_config: Option<BTreeMap<String, String>>,
    pub docker_root: Option<FsFacts>,
    pub root_fs: Option<FsFacts>,
    /// `None`: no etcd data dir on this host.
    pub etcd_dir: Option<FsFacts>,
    /// `None`: Docker could not be read (see `not_checked`).
    pub containers: Option<Vec<ContainerFacts>>,
    pub unit_name: String,
    /// `None`: the unit is not in any of `host.systemd_dirs`.
    pub unit: Option<UnitFacts>,
    pub auto_scaling: AutoScalingFacts,
    pub not_checked: Vec<String>,
}

/// `KEY=VALUE` lines of an env file (ecs.config), comments and quotes handled.
pub fn parse_env_file(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            (k.trim().to_owned(), v.to_owned())
        })
        .collect()
}

fn read_text(path: &Path, not_checked: &mut Vec<String>) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            not_checked.push(format!("{}: {e}", path.display()));
            None
        }
    }
}

fn fs(path: &Path, not_checked: &mut Vec<String>) -> Option<FsFacts> {
    match stat(path) {
        Ok(stats) => Some(FsFacts {
            path: path.to_owned(),
            stats,
        }),
        Err(e) => {
            not_checked.push(format!("filesystem of {}: {e}", path.display()));
            None
        }
    }
}

/// ECS as `doctor` takes it: on when the config says so, and with "auto" when the ECS
/// agent's ecs.config is there (without asking ECS, which needs the agent running).
fn ecs_on(settings: &Settings, has_ecs_config: bool) -> bool {
    match settings.ecs.enabled {
        Toggle::On => true,
        Toggle::Off => false,
        Toggle::Auto => has_ecs_config,
    }
}

/// This EC2 instance (from IMDS) in Auto Scaling.
async fn auto_scaling(not_checked: &mut Vec<String>) -> AutoScalingFacts {
    let instance_id = match crate::aws::instance_id().await {
        Ok(id) => id,
        Err(e) => {
            not_checked.push(format!(
                "Auto Scaling group: IMDS gave no EC2 instance id: {e}"
            ));
            return AutoScalingFacts::Unknown;
        }
    };
    let work = async {
        let sdk = crate::aws::sdk_config().await;
        AsgClient::new(&sdk, &instance_id).group().await
    };
    match tokio::time::timeout(AUTO_SCALING_PATIENCE, work).await {
        Ok(Ok(Some(group))) => AutoScalingFacts::InGroup { instance_id, group },
        Ok(Ok(None)) => AutoScalingFacts::NoGroup { instance_id },
        Ok(Err(e)) => {
            not_checked.push(format!("Auto Scaling group: {}", chain(&e)));
            AutoScalingFacts::Unknown
        }
        Err(_) => {
            not_checked.push(format!(
                "Auto Scaling group of instance {instance_id}: Auto Scaling did not answer within {AUTO_SCALING_PATIENCE:?}"
            ));
            AutoScalingFacts::Unknown
        }
    }
}

/// Reads everything, never failing: what cannot be read goes to `not_checked`.
pub async fn read(settings: &Settings) -> Inputs {
    let mut not_checked = Vec::new();
    let h = &settings.host;
    let daemon_json = read_text(&h.docker_daemon_json, &mut not_checked).and_then(|text| {
        serde_json::from_str(&text)
            .map_err(|e| {
                not_checked.push(format!("{}: not JSON: {e}", h.docker_daemon_json.display()))
            })
            .ok()
    });
    let ecs_config = read_text(&h.ecs_config, &mut not_checked).map(|t| parse_env_file(&t));
    let docker_root = fs(&settings.docker.root, &mut not_checked);
    let root_fs = fs(&h.root_fs, &mut not_checked);
    let etcd_dir = settings
        .etcd
        .data_dir
        .exists()
        .then(|| fs(&settings.etcd.data_dir, &mut not_checked))
        .flatten();
    let containers = match tokio::time::timeout(DOCKER_PATIENCE, async {
        let source = DockerSource::connect(&settings.docker).await?;
        source.audit_containers().await
    })
    .await
    {
        Ok(Ok(list)) => Some(list),
        Ok(Err(e)) => {
            not_checked.push(format!("running containers: {}", chain(&e)));
            None
        }
        Err(_) => {
            not_checked.push(format!(
                "running containers: Docker did not answer within {DOCKER_PATIENCE:?}"
            ));
            None
        }
    };
    let unit = match read_unit(&h.systemd_dirs, &h.diskguard_unit) {
        Ok(u) => u.map(|u| UnitFacts {
            watchdog_sec: u.last("Service", "WatchdogSec").map(str::to_owned),
            path: u.path,
        }),
        Err(e) => {
            not_checked.push(chain(&e));
            None
        }
    };
    let auto_scaling = if ecs_on(settings, ecs_config.is_some()) {
        auto_scaling(&mut not_checked).await
    } else {
        AutoScalingFacts::Unknown
    };
    Inputs {
        daemon_json_path: h.docker_daemon_json.clone(),
        daemon_json,
        ecs_config_path: h.ecs_config.clone(),
        ecs_config,
        docker_root,
        root_fs,
        etcd_dir,
        containers,
        unit_name: h.diskguard_unit.clone(),
        unit,
        auto_scaling,
        not_checked,
    }
}
