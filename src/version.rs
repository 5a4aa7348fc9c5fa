//! The version string that `--version` and the first log line show.

/// `0.1.0 (git 1a2b3c4d)`, or `(git unknown)` when built outside a git checkout.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("DISKGUARD_GIT_SHA"),
    ")"
);
