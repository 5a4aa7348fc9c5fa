//! The version string that `--version` and the first log line show.

/// `0.1.0 (git 1a2b3c4d5e6f)`. The commit comes from `DISKGUARD_GIT_SHA` when the build
/// sets it (a build from a release tarball), else from git; `unknown` when neither has it.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("DISKGUARD_GIT_SHA"),
    ")"
);
