//! `userdata`: renders EC2 user data (Flatcar cloud-config or Ignition, Amazon Linux 2023
//! cloud-init) that installs diskguard from its release tarball, checks the tarball's sha256
//! before anything runs, and starts `diskguard.service` — from the same unit text as `units/`.

mod cloud_config;
mod cloud_init;
mod ignition;
mod node;
mod yaml;

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use crate::config::{self, ConfigError};

pub use node::Node;

/// The EC2 user data limit (16 KB, before base64): rendering more would be refused at launch.
pub const EC2_USER_DATA_LIMIT: usize = 16 * 1024;
/// ECS's rule for cluster names.
const CLUSTER_MAX_LEN: usize = 255;

/// `diskguard userdata` flags. `--config FILE` (global) is the file installed as
/// `/etc/diskguard/diskguard.toml`; without it the node gets all defaults.
#[derive(Debug, Args)]
pub struct UserdataArgs {
    /// cloud-config (Flatcar's coreos-cloudinit, processed on every boot), ignition
    /// (Flatcar, spec 3.3, first boot only; the tarball's file entry carries
    /// verification.hash) or cloud-init (Amazon Linux 2023's ECS-optimized AMI, first boot).
    #[arg(long, value_enum)]
    pub format: Format,
    /// The ECS cluster the node joins (written to /etc/ecs/ecs.config as ECS_CLUSTER).
    #[arg(long, value_name = "NAME")]
    pub cluster: String,
    /// Where the node downloads diskguard-<version>-x86_64-linux.tar.gz (http or https).
    #[arg(long, value_name = "URL")]
    pub release_url: String,
    /// The tarball's sha256 (the .sha256 file next to it): checked before it is unpacked.
    #[arg(long, value_name = "HEX")]
    pub sha256: String,
    /// With --format cloud-init: a user data part of your own (a `#!` script, a
    /// `#cloud-config`, …) to combine with diskguard's; repeat for more. The output is then
    /// MIME multipart, your parts first, their settings winning over diskguard's.
    #[arg(long, value_name = "FILE")]
    pub part: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    CloudConfig,
    Ignition,
    CloudInit,
}

/// Why the user data was not rendered. Every one exits 78: like a bad config file, a bad
/// value needs a person to fix it.
#[derive(Debug, thiserror::Error)]
pub enum UserdataError {
    #[error("--cluster {value:?}: {why}")]
    Cluster { value: String, why: String },
    #[error("--release-url {value:?}: {why}")]
    ReleaseUrl { value: String, why: String },
    #[error("--sha256 {value:?}: expected 64 hexadecimal digits (the release tarball's sha256)")]
    Sha256 { value: String },
    #[error("--part {path}: {why}")]
    Part { path: PathBuf, why: String },
    #[error(
        "--part: only --format cloud-init combines parts (coreos-cloudinit and Ignition read \
         one document)"
    )]
    PartNeedsCloudInit,
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "the rendered user data is {size} bytes; EC2 accepts at most {EC2_USER_DATA_LIMIT} \
         (make the --config file shorter)"
    )]
    TooLarge { size: usize },
}

/// Validates the flags and the config file, and renders the user data.
pub fn render(args: &UserdataArgs, config_file: Option<&Path>) -> Result<String, UserdataError> {
    let config = match config_file {
        Some(path) => Some(read_config(path)?),
        None => None,
    };
    let node = Node {
        cluster: cluster(&args.cluster)?,
        release_url: release_url(&args.release_url)?,
        sha256: sha256(&args.sha256)?,
        config,
    };
    if !args.part.is_empty() && args.format != Format::CloudInit {
        return Err(UserdataError::PartNeedsCloudInit);
    }
    let text = match args.format {
        Format::CloudConfig => cloud_config::render(&node),
        Format::Ignition => ignition::render(&node),
        Format::CloudInit => {
            let parts = args
                .part
                .iter()
                .map(|path| part(path))
                .collect::<Result<Vec<_>, _>>()?;
            cloud_init::render(&node, &parts)
        }
    };
    if text.len() > EC2_USER_DATA_LIMIT {
        return Err(UserdataError::TooLarge { size: text.len() });
    }
    Ok(text)
}

/// The file's text, embedded as it is (comments included) once it validates.
fn read_config(path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: PathBuf::from(path),
        source,
    })?;
    config::parse(path, &text)?;
    Ok(text)
}

/// A part of the user's: UTF-8 text that cloud-init knows what to do with.
fn part(path: &Path) -> Result<cloud_init::Part, UserdataError> {
    let bad = |why: String| UserdataError::Part {
        path: path.to_owned(),
        why,
    };
    let content = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let content_type = cloud_init::part_type(&content).ok_or_else(|| {
        let first = content.lines().next().unwrap_or_default();
        bad(format!(
            "starts with {first:?}, which cloud-init would not run or read: a part starts \
             with #! (a script), #cloud-config, #cloud-boothook or #include (pass each part \
             of a MIME multipart file on its own)"
        ))
    })?;
    let file_name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    Ok(cloud_init::Part {
        file_name,
        content_type,
        content,
    })
}

fn cluster(value: &str) -> Result<String, UserdataError> {
    let bad = |why: &str| UserdataError::Cluster {
        value: value.to_owned(),
        why: why.to_owned(),
    };
    if value.is_empty() || value.len() > CLUSTER_MAX_LEN {
        return Err(bad("an ECS cluster name has 1 to 255 characters"));
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(bad(
            "an ECS cluster name has only letters, digits, hyphens and underscores",
        ));
    }
    Ok(value.to_owned())
}

fn release_url(value: &str) -> Result<String, UserdataError> {
    let bad = |why: &str| UserdataError::ReleaseUrl {
        value: value.to_owned(),
        why: why.to_owned(),
    };
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
        .ok_or_else(|| bad("must start with https:// or http:// (the sha256 guards either)"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(bad("has no host"));
    }
    // The URL travels through a systemd environment file, YAML and JSON: characters that
    // any of them would quote, expand or split on are refused rather than escaped
    // three ways. A real URL percent-encodes them anyway.
    if let Some(c) = value
        .chars()
        .find(|c| !c.is_ascii_graphic() || matches!(c, '"' | '\'' | '\\' | '$' | '`'))
    {
        return Err(bad(&format!(
            "{c:?} is not allowed in it: percent-encode it"
        )));
    }
    Ok(value.to_owned())
}

fn sha256(value: &str) -> Result<String, UserdataError> {
    if value.len() == 64 && value.chars().all(|c| c.is_ascii_hexdigit()) {
        // sha256sum prints lower case; compare like with like.
        Ok(value.to_ascii_lowercase())
    } else {
        Err(UserdataError::Sha256 {
            value: value.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests;
