//! Settings: the raw file with every default applied and every value checked.
//!
//! `Settings::from_raw` is the only way to build settings from a file, so everything
//! downstream may assume the invariants listed in `validate` hold.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::raw::{
    Mode, RawCloudWatch, RawConfig, RawDocker, RawEcs, RawEscalate, RawEtcd, RawEvict, RawHost,
    RawJournald, RawPrometheus, RawSample, RawThresholds, RawWatch, Toggle,
};

/// Dimension names an operator may choose for `cloudwatch.dimensions`. `Volume` is added
/// by diskguard itself on volume metrics and so is not listed here.
pub const ALLOWED_DIMENSIONS: &[&str] = &["ClusterName", "InstanceId", "Host"];

/// Metrics that are published only when listed in `cloudwatch.extra_metrics`.
pub const EXTRA_METRICS: &[&str] = &[
    "ImagesBytes",
    "ImageCount",
    "ContainerCount",
    "EtcdDbBytes",
    "EtcdDbInUseBytes",
    "TopWriterBytes",
];

/// Where systemd looks for units, most important first.
pub const DEFAULT_SYSTEMD_DIRS: &[&str] = &[
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// The shortest sampling interval: statvfs is cheap, but below this the loop would spend
/// its time logging and notifying rather than watching.
pub const MIN_SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// A key whose value is wrong, with what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Dotted key, e.g. `thresholds.drain`.
    pub key: String,
    /// What is wrong, written for the operator.
    pub message: String,
}

impl Invalid {
    pub(super) fn new(key: &str, message: impl Into<String>) -> Self {
        Invalid {
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

/// Everything diskguard is told to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub mode: Mode,
    pub sample: SampleSettings,
    pub thresholds: Thresholds,
    pub docker: DockerSettings,
    pub evict: EvictSettings,
    pub etcd: EtcdSettings,
    pub ecs: EcsSettings,
    pub cloudwatch: CloudWatchSettings,
    pub prometheus: PrometheusSettings,
    pub escalate: EscalateSettings,
    pub journald: JournaldSettings,
    pub host: HostSettings,
    /// More filesystems to watch (`[[watch]]`), beside Docker's and etcd's.
    pub watch: Vec<WatchSettings>,
}

/// One more filesystem the node needs (the ECS agent's state, the root filesystem …):
/// levels from bytes and inodes like Docker's, its own metrics, and a drain when it
/// reaches `drain`. Nothing is reclaimed there.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchSettings {
    /// The `Volume` dimension and label: lowercase letters, digits, `-` and `_`.
    pub name: String,
    pub path: PathBuf,
    /// One of the defaults: skipped without a word where its path does not exist (a host
    /// without the ECS agent has no /var/lib/ecs).
    pub default: bool,
}

/// Names the other volumes have: a `[[watch]]` entry may not take them.
const RESERVED_VOLUME_NAMES: [&str; 2] = ["docker", "etcd"];

/// One `[[watch]]` entry, checked; `i` numbers it in the error (`watch[1].path`).
fn watch_entry(i: usize, w: RawWatch) -> Result<WatchSettings, Invalid> {
    let key = |k: &str| format!("watch[{i}].{k}");
    let name = w.name.ok_or_else(|| {
        Invalid::new(&key("name"), "required: the Volume dimension, e.g. \"ecs\"")
    })?;
    let valid = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !valid {
        return Err(Invalid::new(
            &key("name"),
            format!("{name:?}: 1–32 lowercase letters, digits, - or _"),
        ));
    }
    if RESERVED_VOLUME_NAMES.contains(&name.as_str()) {
        return Err(Invalid::new(
            &key("name"),
            format!("{name:?} is the name of a volume diskguard always watches"),
        ));
    }
    let path = w.path.ok_or_else(|| {
        Invalid::new(
            &key("path"),
            "required: a directory on the filesystem to watch",
        )
    })?;
    if !path.starts_with('/') {
        return Err(Invalid::new(
            &key("path"),
            format!("{path:?} is not an absolute path"),
        ));
    }
    Ok(WatchSettings {
        name,
        path: PathBuf::from(path),
        default: false,
    })
}

/// The `[[watch]]` entries when the file has none: the ECS agent's state and the root
/// filesystem. Each is watched only where it is not a filesystem already watched.
pub fn default_watches(root_fs: &std::path::Path) -> Vec<WatchSettings> {
    vec![
        WatchSettings {
            name: "ecs".into(),
            path: PathBuf::from("/var/lib/ecs"),
            default: true,
        },
        WatchSettings {
            name: "root".into(),
            path: root_fs.to_owned(),
            default: true,
        },
    ]
}

#[derive(Debug, Clone, PartialEq)]
pub struct SampleSettings {
    pub interval: Duration,
    pub inventory_interval: Duration,
}

/// Usage thresholds in percent (of bytes or inodes, whichever is higher).
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    pub prune_start: f64,
    pub prune_target: f64,
    pub drain: f64,
    pub critical: f64,
    pub recover: f64,
    pub recover_after: Duration,
    pub drain_lead: Duration,
    pub forecast_window: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DockerSettings {
    /// `None`: `DOCKER_HOST`, else the default socket.
    pub host: Option<String>,
    pub root: PathBuf,
    pub protect: Vec<glob::Pattern>,
    pub min_image_age: Duration,
    pub stopped_container_age: Duration,
    pub prune_build_cache: bool,
    /// Images unused this long are removed even below `prune_start`; `None`: off.
    pub max_unused_image_age: Option<Duration>,
}

/// Stopping the container that fills the disk when a drain would come too late.
#[derive(Debug, Clone, PartialEq)]
pub struct EvictSettings {
    /// `auto` and `true` are on; never acts in observe mode.
    pub enabled: Toggle,
    /// Evict when the disk will be full sooner than this and reclaim cannot help.
    pub lead: Duration,
}

impl EvictSettings {
    pub fn on(&self) -> bool {
        self.enabled != Toggle::Off
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct EtcdSettings {
    pub enabled: Toggle,
    pub data_dir: PathBuf,
    /// Where `data_dir` came from: a value written in the file always wins over discovery.
    pub data_dir_source: DataDirSource,
    pub endpoint: String,
    /// Empty paths: not set. `ca_file` is required for `https://`; `cert_file` and
    /// `key_file` come together.
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub quota_warn_percent: f64,
    /// Compact, defragment and disarm NOSPACE when the quota fills (off: only report).
    pub maintenance: bool,
    /// How often etcd is read (every 15 s by default, docs/configuration.md).
    pub interval: Duration,
}

/// Where `etcd.data_dir` came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataDirSource {
    /// Written in the configuration file.
    Config,
    /// `ETCD_DATA_DIR` in this etcd unit (or one of its drop-ins).
    Unit(PathBuf),
    /// Neither: the built-in default.
    Default,
}

impl DataDirSource {
    /// For `status` and logs: `config`, `unit /etc/systemd/system/etcd-member.service`, `default`.
    pub fn describe(&self) -> String {
        match self {
            DataDirSource::Config => "config".into(),
            DataDirSource::Unit(p) => format!("unit {}", p.display()),
            DataDirSource::Default => "default".into(),
        }
    }
}

/// Where the host's own configuration is read (doctor, etcd discovery).
#[derive(Debug, Clone, PartialEq)]
pub struct HostSettings {
    /// Searched in order for units and their drop-ins, as systemd does.
    pub systemd_dirs: Vec<PathBuf>,
    pub docker_daemon_json: PathBuf,
    pub ecs_config: PathBuf,
    /// diskguard's own unit's name, looked for in `systemd_dirs`.
    pub diskguard_unit: String,
    /// The host's root filesystem (where the OS lives): Docker's root there is fragile.
    pub root_fs: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EcsSettings {
    pub enabled: Toggle,
    pub introspection_url: String,
    /// Empty: discover.
    pub cluster: String,
    /// Empty: discover.
    pub container_instance_arn: String,
    pub max_draining_percent: f64,
    /// The share of ECS's sustained read rate (20/s per account and Region) that the whole
    /// fleet's idle reads may use, in percent: each agent spaces its idle reads by the
    /// cluster's size to stay under it.
    pub idle_read_percent: f64,
    pub undrain: bool,
}

/// `[escalate]`: when diskguard drained this instance, its tasks are gone, nothing is left
/// to reclaim and the disk stays at `drain` for `after`, ask its Auto Scaling group to
/// replace it (SetInstanceHealth Unhealthy).
#[derive(Debug, Clone, PartialEq)]
pub struct EscalateSettings {
    /// `auto`: when the instance is in an Auto Scaling group (on ECS).
    pub enabled: Toggle,
    pub after: Duration,
    /// Never while more than this share of the cluster is DRAINING (this instance
    /// included; at least one instance).
    pub max_percent: f64,
    /// Passed to SetInstanceHealth: the group's health check grace period is respected.
    pub respect_grace_period: bool,
}

/// `[journald]`: opt-in reclaim of the journal's archived files when the watched volume
/// holding them reaches `prune_start` (`journalctl --vacuum-size`).
#[derive(Debug, Clone, PartialEq)]
pub struct JournaldSettings {
    /// `None`: off (the default). The journal is vacuumed down to this many bytes.
    pub vacuum_size: Option<u64>,
    /// The journal directory vacuumed (`journalctl --directory`).
    pub directory: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CloudWatchSettings {
    pub enabled: Toggle,
    pub namespace: String,
    pub interval: Duration,
    pub dimensions: Vec<String>,
    pub extra_metrics: Vec<String>,
    pub high_resolution: bool,
    /// Intervals kept in memory while CloudWatch does not answer (oldest dropped first).
    pub max_buffered_intervals: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PrometheusSettings {
    /// `None`: the endpoint is off.
    pub listen: Option<SocketAddr>,
}

impl Default for Settings {
    fn default() -> Self {
        // The defaults are a contract (docs/configuration.md); an empty file must give exactly these.
        Settings::from_raw(RawConfig::default()).expect("the built-in defaults are valid")
    }
}

/// A size as text (`"500M"`, `"2GiB"`), at least 1 MiB (journald keeps whole files).
fn size(key: &str, text: &str) -> Result<u64, Invalid> {
    let b: bytesize::ByteSize = text.parse().map_err(|e| {
        Invalid::new(
            key,
            format!("{text:?} is not a size ({e}); write e.g. \"500M\" or \"2GiB\""),
        )
    })?;
    if b.as_u64() < 1 << 20 {
        return Err(Invalid::new(key, format!("{text:?} is below 1 MiB")));
    }
    Ok(b.as_u64())
}

fn duration(key: &str, text: Option<&str>, default: &str) -> Result<Duration, Invalid> {
    let text = text.unwrap_or(default);
    let d = humantime::parse_duration(text).map_err(|e| {
        Invalid::new(
            key,
            format!("{text:?} is not a duration ({e}); write e.g. \"90s\" or \"5m\""),
        )
    })?;
    if d.is_zero() {
        return Err(Invalid::new(key, "must be longer than zero"));
    }
    Ok(d)
}

/// A minimum age, where zero means "no minimum" (as the kubelet's `imageMinimumGCAge`).
fn age(key: &str, text: Option<&str>, default: &str) -> Result<Duration, Invalid> {
    match text.map(str::trim) {
        Some("0") => Ok(Duration::ZERO),
        Some(t) if humantime::parse_duration(t).is_ok_and(|d| d.is_zero()) => Ok(Duration::ZERO),
        _ => duration(key, text, default),
    }
}

/// An optional duration: absent or empty is off.
fn optional_duration(key: &str, text: Option<&str>) -> Result<Option<Duration>, Invalid> {
    match text.map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) => duration(key, Some(t), t).map(Some),
    }
}

fn percent(key: &str, value: Option<f64>, default: f64) -> Result<f64, Invalid> {
    let v = value.unwrap_or(default);
    if !(v.is_finite() && v > 0.0 && v <= 100.0) {
        return Err(Invalid::new(
            key,
            format!("{v} is not a percent in (0, 100]"),
        ));
    }
    Ok(v)
}

impl Settings {
    /// Applies defaults and validates. The error names the first offending key.
    pub fn from_raw(raw: RawConfig) -> Result<Settings, Invalid> {
        let s = raw.sample.unwrap_or_default();
        let t = raw.thresholds.unwrap_or_default();
        let d = raw.docker.unwrap_or_default();
        let e = raw.etcd.unwrap_or_default();
        let c = raw.ecs.unwrap_or_default();
        let w = raw.cloudwatch.unwrap_or_default();
        let p = raw.prometheus.unwrap_or_default();
        let h = raw.host.unwrap_or_default();

        let sample = SampleSettings {
            interval: duration("sample.interval", s.interval.as_deref(), "1s")?,
            inventory_interval: duration(
                "sample.inventory_interval",
                s.inventory_interval.as_deref(),
                "30s",
            )?,
        };
        let thresholds = Thresholds {
            prune_start: percent("thresholds.prune_start", t.prune_start, 80.0)?,
            prune_target: percent("thresholds.prune_target", t.prune_target, 70.0)?,
            drain: percent("thresholds.drain", t.drain, 90.0)?,
            critical: percent("thresholds.critical", t.critical, 95.0)?,
            recover: percent("thresholds.recover", t.recover, 75.0)?,
            recover_after: duration("thresholds.recover_after", t.recover_after.as_deref(), "5m")?,
            drain_lead: duration("thresholds.drain_lead", t.drain_lead.as_deref(), "15m")?,
            forecast_window: duration(
                "thresholds.forecast_window",
                t.forecast_window.as_deref(),
                "5m",
            )?,
        };
        let protect = d
            .protect
            .unwrap_or_else(|| {
                vec![
                    "amazon/amazon-ecs-agent:*".into(),
                    "amazon/amazon-ecs-pause:*".into(),
                ]
            })
            .iter()
            .map(|p| {
                glob::Pattern::new(p).map_err(|e| {
                    Invalid::new(
                        "docker.protect",
                        format!("{p:?} is not a glob pattern: {e}"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        let docker = DockerSettings {
            host: d.host,
            root: PathBuf::from(d.root.unwrap_or_else(|| "/var/lib/docker".into())),
            protect,
            min_image_age: age("docker.min_image_age", d.min_image_age.as_deref(), "1h")?,
            stopped_container_age: age(
                "docker.stopped_container_age",
                d.stopped_container_age.as_deref(),
                "3h",
            )?,
            prune_build_cache: d.prune_build_cache.unwrap_or(true),
            max_unused_image_age: optional_duration(
                "docker.max_unused_image_age",
                d.max_unused_image_age.as_deref(),
            )?,
        };
        let v = raw.evict.unwrap_or_default();
        let evict = EvictSettings {
            enabled: v.enabled.unwrap_or(Toggle::On),
            lead: duration("evict.lead", v.lead.as_deref(), "60s")?,
        };
        let etcd = EtcdSettings {
            enabled: e.enabled.unwrap_or(Toggle::Auto),
            data_dir_source: if e.data_dir.is_some() {
                DataDirSource::Config
            } else {
                DataDirSource::Default
            },
            data_dir: PathBuf::from(e.data_dir.unwrap_or_else(|| "/var/lib/etcd".into())),
            endpoint: e.endpoint.unwrap_or_else(|| "http://127.0.0.1:2379".into()),
            ca_file: PathBuf::from(e.ca_file.unwrap_or_default()),
            cert_file: PathBuf::from(e.cert_file.unwrap_or_default()),
            key_file: PathBuf::from(e.key_file.unwrap_or_default()),
            quota_warn_percent: percent("etcd.quota_warn_percent", e.quota_warn_percent, 80.0)?,
            maintenance: e.maintenance.unwrap_or(false),
            interval: duration("etcd.interval", e.interval.as_deref(), "15s")?,
        };
        let host = HostSettings {
            systemd_dirs: h
                .systemd_dirs
                .unwrap_or_else(|| {
                    DEFAULT_SYSTEMD_DIRS
                        .iter()
                        .map(|d| (*d).to_owned())
                        .collect()
                })
                .into_iter()
                .map(PathBuf::from)
                .collect(),
            docker_daemon_json: PathBuf::from(
                h.docker_daemon_json
                    .unwrap_or_else(|| "/etc/docker/daemon.json".into()),
            ),
            ecs_config: PathBuf::from(h.ecs_config.unwrap_or_else(|| "/etc/ecs/ecs.config".into())),
            diskguard_unit: h
                .diskguard_unit
                .unwrap_or_else(|| "diskguard.service".into()),
            root_fs: PathBuf::from(h.root_fs.unwrap_or_else(|| "/".into())),
        };
        let ecs = EcsSettings {
            enabled: c.enabled.unwrap_or(Toggle::Auto),
            introspection_url: c
                .introspection_url
                .unwrap_or_else(|| "http://127.0.0.1:51678".into()),
            cluster: c.cluster.unwrap_or_default(),
            container_instance_arn: c.container_instance_arn.unwrap_or_default(),
            max_draining_percent: c.max_draining_percent.unwrap_or(10.0),
            idle_read_percent: c.idle_read_percent.unwrap_or(10.0),
            undrain: c.undrain.unwrap_or(true),
        };
        let e = raw.escalate.unwrap_or_default();
        let escalate = EscalateSettings {
            enabled: e.enabled.unwrap_or(Toggle::Auto),
            after: duration("escalate.after", e.after.as_deref(), "15m")?,
            max_percent: e.max_percent.unwrap_or(20.0),
            respect_grace_period: e.respect_grace_period.unwrap_or(true),
        };
        let j = raw.journald.unwrap_or_default();
        let journald = JournaldSettings {
            vacuum_size: j
                .vacuum_size
                .as_deref()
                .map(|text| size("journald.vacuum_size", text))
                .transpose()?,
            directory: PathBuf::from(j.directory.unwrap_or_else(|| "/var/log/journal".into())),
        };
        let cloudwatch = CloudWatchSettings {
            enabled: w.enabled.unwrap_or(Toggle::Auto),
            namespace: w.namespace.unwrap_or_else(|| "DiskGuard".into()),
            interval: duration("cloudwatch.interval", w.interval.as_deref(), "60s")?,
            dimensions: w
                .dimensions
                .unwrap_or_else(|| vec!["ClusterName".into(), "InstanceId".into()]),
            extra_metrics: w.extra_metrics.unwrap_or_default(),
            high_resolution: w.high_resolution.unwrap_or(false),
            max_buffered_intervals: w.max_buffered_intervals.unwrap_or(60),
        };
        let listen = p.listen.unwrap_or_default();
        let prometheus = PrometheusSettings {
            listen: if listen.is_empty() {
                None
            } else {
                Some(listen.parse().map_err(|_| {
                    Invalid::new(
                        "prometheus.listen",
                        format!("{listen:?} is not an address:port such as \"127.0.0.1:9717\""),
                    )
                })?)
            },
        };
        let watch = match raw.watch {
            None => default_watches(&host.root_fs),
            Some(entries) => entries
                .into_iter()
                .enumerate()
                .map(|(i, w)| watch_entry(i, w))
                .collect::<Result<_, _>>()?,
        };
        let mode = raw.mode.unwrap_or(Mode::Enforce);
        let settings = Settings {
            mode,
            sample,
            thresholds,
            docker,
            evict,
            etcd,
            ecs,
            cloudwatch,
            prometheus,
            escalate,
            journald,
            host,
            watch,
        };
        settings.validate()?;
        Ok(settings)
    }

    /// The settings written back as a file: `config defaults` prints this, and it parses
    /// back into equal settings.
    pub fn to_raw(&self) -> RawConfig {
        let text = |d: Duration| humantime::format_duration(d).to_string();
        let t = &self.thresholds;
        RawConfig {
            mode: Some(self.mode),
            sample: Some(RawSample {
                interval: Some(text(self.sample.interval)),
                inventory_interval: Some(text(self.sample.inventory_interval)),
            }),
            thresholds: Some(RawThresholds {
                prune_start: Some(t.prune_start),
                prune_target: Some(t.prune_target),
                drain: Some(t.drain),
                critical: Some(t.critical),
                recover: Some(t.recover),
                recover_after: Some(text(t.recover_after)),
                drain_lead: Some(text(t.drain_lead)),
                forecast_window: Some(text(t.forecast_window)),
            }),
            docker: Some(RawDocker {
                host: self.docker.host.clone(),
                root: Some(self.docker.root.display().to_string()),
                protect: Some(
                    self.docker
                        .protect
                        .iter()
                        .map(|p| p.as_str().to_owned())
                        .collect(),
                ),
                min_image_age: Some(text(self.docker.min_image_age)),
                stopped_container_age: Some(text(self.docker.stopped_container_age)),
                prune_build_cache: Some(self.docker.prune_build_cache),
                max_unused_image_age: Some(
                    self.docker
                        .max_unused_image_age
                        .map(text)
                        .unwrap_or_default(),
                ),
            }),
            evict: Some(RawEvict {
                enabled: Some(self.evict.enabled),
                lead: Some(text(self.evict.lead)),
            }),
            etcd: Some(RawEtcd {
                enabled: Some(self.etcd.enabled),
                // Written only when the file wrote it: a printed default would otherwise
                // turn off discovery from etcd's unit for whoever saves the defaults.
                data_dir: (self.etcd.data_dir_source == DataDirSource::Config)
                    .then(|| self.etcd.data_dir.display().to_string()),
                endpoint: Some(self.etcd.endpoint.clone()),
                ca_file: Some(self.etcd.ca_file.display().to_string()),
                cert_file: Some(self.etcd.cert_file.display().to_string()),
                key_file: Some(self.etcd.key_file.display().to_string()),
                quota_warn_percent: Some(self.etcd.quota_warn_percent),
                maintenance: Some(self.etcd.maintenance),
                interval: Some(text(self.etcd.interval)),
            }),
            ecs: Some(RawEcs {
                enabled: Some(self.ecs.enabled),
                introspection_url: Some(self.ecs.introspection_url.clone()),
                cluster: Some(self.ecs.cluster.clone()),
                container_instance_arn: Some(self.ecs.container_instance_arn.clone()),
                max_draining_percent: Some(self.ecs.max_draining_percent),
                idle_read_percent: Some(self.ecs.idle_read_percent),
                undrain: Some(self.ecs.undrain),
            }),
            cloudwatch: Some(RawCloudWatch {
                enabled: Some(self.cloudwatch.enabled),
                namespace: Some(self.cloudwatch.namespace.clone()),
                interval: Some(text(self.cloudwatch.interval)),
                dimensions: Some(self.cloudwatch.dimensions.clone()),
                extra_metrics: Some(self.cloudwatch.extra_metrics.clone()),
                high_resolution: Some(self.cloudwatch.high_resolution),
                max_buffered_intervals: Some(self.cloudwatch.max_buffered_intervals),
            }),
            journald: Some(RawJournald {
                // Bytes, exactly: a unit would round.
                vacuum_size: self.journald.vacuum_size.map(|b| b.to_string()),
                directory: Some(self.journald.directory.display().to_string()),
            }),
            escalate: Some(RawEscalate {
                enabled: Some(self.escalate.enabled),
                after: Some(text(self.escalate.after)),
                max_percent: Some(self.escalate.max_percent),
                respect_grace_period: Some(self.escalate.respect_grace_period),
            }),
            prometheus: Some(RawPrometheus {
                listen: Some(
                    self.prometheus
                        .listen
                        .map(|a| a.to_string())
                        .unwrap_or_default(),
                ),
            }),
            // The defaults are left out, as the file that gave them did: written out they
            // would become entries of the file's own (a missing path then is an error).
            watch: (self.watch.is_empty() || self.watch.iter().any(|w| !w.default)).then(|| {
                self.watch
                    .iter()
                    .map(|w| RawWatch {
                        name: Some(w.name.clone()),
                        path: Some(w.path.display().to_string()),
                    })
                    .collect()
            }),
            host: Some(RawHost {
                systemd_dirs: Some(
                    self.host
                        .systemd_dirs
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect(),
                ),
                docker_daemon_json: Some(self.host.docker_daemon_json.display().to_string()),
                ecs_config: Some(self.host.ecs_config.display().to_string()),
                diskguard_unit: Some(self.host.diskguard_unit.clone()),
                root_fs: Some(self.host.root_fs.display().to_string()),
            }),
        }
    }

    /// Whether this run may change anything.
    pub fn observe_only(&self) -> bool {
        self.mode == Mode::Observe
    }
}
