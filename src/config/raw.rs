//! The configuration file as written: every key optional, unknown keys rejected.
//!
//! This is the first of three stages (raw → settings with defaults → validated), after
//! zincati's `fragments.rs`. Types here mirror the TOML exactly so that serde's messages
//! name the key the operator wrote.

use serde::{Deserialize, Serialize};

/// `mode`: whether diskguard acts or only reports what it would do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Reclaim and drain as the policy says.
    Enforce,
    /// Decide and report, never remove or drain anything.
    Observe,
}

/// An `enabled` key: `"auto"`, `true` or `false`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toggle {
    /// On when the thing it watches is found.
    Auto,
    /// Always on; a missing peer is reported as a problem.
    On,
    /// Always off.
    Off,
}

impl Serialize for Toggle {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Toggle::Auto => s.serialize_str("auto"),
            Toggle::On => s.serialize_bool(true),
            Toggle::Off => s.serialize_bool(false),
        }
    }
}

impl<'de> Deserialize<'de> for Toggle {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Toggle;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(r#""auto", true or false"#)
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Toggle, E> {
                Ok(if v { Toggle::On } else { Toggle::Off })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Toggle, E> {
                match v {
                    "auto" => Ok(Toggle::Auto),
                    other => Err(E::invalid_value(serde::de::Unexpected::Str(other), &self)),
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// The whole file.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub mode: Option<Mode>,
    pub sample: Option<RawSample>,
    pub thresholds: Option<RawThresholds>,
    pub docker: Option<RawDocker>,
    pub evict: Option<RawEvict>,
    pub etcd: Option<RawEtcd>,
    pub ecs: Option<RawEcs>,
    pub cloudwatch: Option<RawCloudWatch>,
    pub prometheus: Option<RawPrometheus>,
    pub escalate: Option<RawEscalate>,
    pub journald: Option<RawJournald>,
    pub host: Option<RawHost>,
    /// `[[watch]]`: more filesystems the node needs. Last, as TOML writes arrays of tables.
    pub watch: Option<Vec<RawWatch>>,
}

/// One `[[watch]]` entry.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawWatch {
    pub name: Option<String>,
    pub path: Option<String>,
}

/// `[sample]`
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSample {
    pub interval: Option<String>,
    pub inventory_interval: Option<String>,
}

/// `[thresholds]` — percents as numbers, durations as text.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawThresholds {
    pub prune_start: Option<f64>,
    pub prune_target: Option<f64>,
    pub drain: Option<f64>,
    pub critical: Option<f64>,
    pub recover: Option<f64>,
    pub recover_after: Option<String>,
    pub drain_lead: Option<String>,
    pub forecast_window: Option<String>,
}

/// `[docker]`
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawDocker {
    pub host: Option<String>,
    pub root: Option<String>,
    pub protect: Option<Vec<String>>,
    pub min_image_age: Option<String>,
    pub stopped_container_age: Option<String>,
    pub prune_build_cache: Option<bool>,
    pub max_unused_image_age: Option<String>,
}

/// `[evict]`
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvict {
    pub enabled: Option<Toggle>,
    pub lead: Option<String>,
}

/// `[etcd]`
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawEtcd {
    pub enabled: Option<Toggle>,
    pub data_dir: Option<String>,
    pub endpoint: Option<String>,
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub quota_warn_percent: Option<f64>,
    pub maintenance: Option<bool>,
    pub interval: Option<String>,
}

/// `[ecs]`
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawEcs {
    pub enabled: Option<Toggle>,
    pub introspection_url: Option<String>,
    pub cluster: Option<String>,
    pub container_instance_arn: Option<String>,
    pub max_draining_percent: Option<f64>,
    pub idle_read_percent: Option<f64>,
    pub undrain: Option<bool>,
}

/// `[cloudwatch]`
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCloudWatch {
    pub enabled: Option<Toggle>,
    pub namespace: Option<String>,
    pub interval: Option<String>,
    pub dimensions: Option<Vec<String>>,
    pub extra_metrics: Option<Vec<String>>,
    pub high_resolution: Option<bool>,
    pub max_buffered_intervals: Option<usize>,
}

/// `[escalate]`
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawEscalate {
    pub enabled: Option<Toggle>,
    pub after: Option<String>,
    pub max_percent: Option<f64>,
    pub respect_grace_period: Option<bool>,
}

/// `[journald]`
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawJournald {
    pub vacuum_size: Option<String>,
    pub directory: Option<String>,
}

/// `[prometheus]`
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrometheus {
    pub listen: Option<String>,
}

/// `[host]`: where diskguard reads the host's own configuration (systemd units, Docker's
/// daemon.json, the ECS agent's ecs.config). Tests point these at fixtures.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawHost {
    pub systemd_dirs: Option<Vec<String>>,
    pub docker_daemon_json: Option<String>,
    pub ecs_config: Option<String>,
    pub diskguard_unit: Option<String>,
    pub root_fs: Option<String>,
}
