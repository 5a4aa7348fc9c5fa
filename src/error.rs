//! Errors of the program as a whole, and how each maps to an exit code systemd can act on.

use crate::config::ConfigError;

/// sysexits' EX_CONFIG: the unit's `RestartPreventExitStatus=78` stops a typo from
/// restart-looping.
pub const EXIT_CONFIG: u8 = 78;
/// A fatal error that a restart may cure.
pub const EXIT_FAILURE: u8 = 1;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    #[error("cannot install the {what} signal handler")]
    Signal {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("cannot write to standard output")]
    Output(#[source] std::io::Error),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) => EXIT_CONFIG,
            Error::Runtime(_) | Error::Signal { .. } | Error::Output(_) => EXIT_FAILURE,
        }
    }
}

/// An error and all its causes on one line: `a: b: c`.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
