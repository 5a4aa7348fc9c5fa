//! Why a command failed, typed — so that no code branches on an error's text — and the
//! exit code each cause maps to.

use std::path::PathBuf;

use crate::config::ConfigError;
use crate::daemon::oneshot::{DockerReadError, EcsReadError};
use crate::ecs::EcsError;
use crate::error::{EXIT_CONFIG, EXIT_FAILURE};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Userdata(#[from] super::userdata::UserdataError),
    #[error(transparent)]
    Daemon(#[from] crate::daemon::Error),
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    #[error("cannot write to standard output")]
    Output(#[source] std::io::Error),
    #[error("cannot read {}", path.display())]
    Volume {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Docker(#[from] DockerReadError),
    #[error(transparent)]
    EcsRead(#[from] EcsReadError),
    #[error(transparent)]
    Ecs(#[from] EcsError),
    #[error("ECS is off in the configuration (ecs.enabled = false)")]
    EcsOff,
    #[error("{arn} is {status}: only {wanted} instance can be {verb}")]
    WrongState {
        arn: String,
        status: String,
        wanted: &'static str,
        verb: &'static str,
    },
    #[error(
        "{arn} was set DRAINING by someone else (no {mark} attribute): leaving it; use --force to override"
    )]
    DrainedByOthers { arn: String, mark: &'static str },
}

impl Error {
    /// A bad configuration exits 78 so that systemd does not restart-loop on a typo;
    /// everything else is a failure a retry or a restart may cure.
    pub fn exit_code(&self) -> u8 {
        match self {
            // userdata's flags are wrong the way a config is wrong: a person must fix them.
            Error::Config(_) | Error::Userdata(_) => EXIT_CONFIG,
            _ => EXIT_FAILURE,
        }
    }
}
