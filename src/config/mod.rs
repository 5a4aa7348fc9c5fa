//! Configuration: read `/etc/diskguard/diskguard.toml`, apply defaults, validate.

mod raw;
mod settings;
mod validate;

use std::path::{Path, PathBuf};

pub use raw::{Mode, RawConfig, Toggle};
pub use settings::{
    ALLOWED_DIMENSIONS, CloudWatchSettings, DEFAULT_SYSTEMD_DIRS, DataDirSource, DockerSettings,
    EXTRA_METRICS, EcsSettings, EtcdSettings, EvictSettings, HostSettings, Invalid,
    MIN_SAMPLE_INTERVAL, PrometheusSettings, SampleSettings, Settings, Thresholds, WatchSettings,
};

/// Where the configuration is read from when neither `--config` nor `DISKGUARD_CONFIG`
/// says otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/diskguard/diskguard.toml";

/// Why a configuration could not be used. Every message is one line naming the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config {path}: cannot read")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: line {line}, column {column}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("config {path}: key `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

/// Reads the file at `path`. A missing file is an error unless `missing_ok` (the default
/// path: no file means all defaults).
pub fn load(path: &Path, missing_ok: bool) -> Result<Settings, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(path, &text),
        Err(e) if missing_ok && e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
        Err(source) => Err(ConfigError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Parses `text` as if read from `path` (used for messages only).
pub fn parse(path: &Path, text: &str) -> Result<Settings, ConfigError> {
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        let (line, column) = e
            .span()
            .map(|s| line_column(text, s.start))
            .unwrap_or((1, 1));
        ConfigError::Syntax {
            path: path.to_owned(),
            line,
            column,
            message: one_line(e.message()),
        }
    })?;
    let raw: RawConfig =
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            // The bare message: Display would add the key again and a source snippet.
            let inner = e.inner().message().to_owned();
            let (key, message) = name_the_key(&e.path().to_string(), &inner);
            ConfigError::Invalid {
                path: path.to_owned(),
                key,
                message: one_line(&message),
            }
        })?;
    Settings::from_raw(raw).map_err(|Invalid { key, message }| ConfigError::Invalid {
        path: path.to_owned(),
        key,
        message,
    })
}

/// serde_path_to_error already ends the path with an unknown key's name; the message
/// only needs to say what the known keys are.
fn name_the_key(path: &str, message: &str) -> (String, String) {
    let key = if path == "." || path.is_empty() {
        "(top level)".to_owned()
    } else {
        path.to_owned()
    };
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((_, expected)) = rest.split_once('`') {
            let expected = expected.trim_start_matches(',').trim();
            return (key, format!("unknown key; {expected}"));
        }
    }
    (key, message.to_owned())
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The default configuration as TOML, with a header saying where it goes.
pub fn defaults_toml() -> String {
    let body = toml::to_string(&Settings::default().to_raw())
        .expect("the raw config holds only strings, numbers, booleans and arrays");
    format!(
        "# diskguard configuration: every key with its default value.\n\
         # Save as {DEFAULT_CONFIG_PATH} and change what you need; unknown keys are errors.\n\
         # [docker] host is absent on purpose: DOCKER_HOST is used, else unix:///var/run/docker.sock.\n\
         # [etcd] data_dir is absent on purpose: ETCD_DATA_DIR from etcd's unit is used, else /var/lib/etcd.\n\n{body}"
    )
}

#[cfg(test)]
mod tests;
