//! The release artifacts of this commit, as `scripts/release.sh` makes them. `make test`
//! builds them before the tests (with the dev profile, which links the same static musl
//! binary without the optimiser's minutes) into `$DISKGUARD_TEST_DIST`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::processes::peer::run_ok;

#[derive(Debug, Clone)]
pub struct Release {
    /// `0.1.0-1a2b3c4d5e6f`
    pub version: String,
    /// The git part of the version.
    pub sha: String,
    pub tarball: PathBuf,
    /// The tarball's sha256, lower-case hex, from its `.sha256` file.
    pub tarball_sha256: String,
    pub sysext: PathBuf,
}

/// The test build's own version, `diskguard 0.1.0 (git …)` → (`0.1.0`, `…`).
pub fn this_version() -> (String, String) {
    let line = run_ok(Command::new(crate::processes::diskguard_bin()).arg("--version"));
    let rest = line
        .strip_prefix("diskguard ")
        .unwrap_or_else(|| panic!("unexpected --version output {line:?}"));
    let (version, git) = rest
        .split_once(" (git ")
        .unwrap_or_else(|| panic!("unexpected --version output {line:?}"));
    (version.to_owned(), git.trim_end_matches(')').to_owned())
}

/// The artifacts for this build's commit; panics saying how to make them when missing.
pub fn artifacts() -> Release {
    let dist = std::env::var_os("DISKGUARD_TEST_DIST")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-dist"));
    let (crate_version, sha) = this_version();
    let version = format!("{crate_version}-{sha}");
    let tarball = dist.join(format!("diskguard-{version}-x86_64-linux.tar.gz"));
    let sysext = dist.join(format!("diskguard-{version}.raw"));
    for path in [&tarball, &sysext] {
        assert!(
            path.exists(),
            "{} is missing: run `make test`, which builds this commit's release first \
             (`DISKGUARD_RELEASE_PROFILE=dev DISKGUARD_DIST={} scripts/release.sh`; \
             it needs `scripts/test-deps.sh` for the musl target, musl-tools and squashfs-tools)",
            path.display(),
            dist.display()
        );
    }
    let sums = std::fs::read_to_string(tarball.with_extension("gz.sha256"))
        .unwrap_or_else(|e| panic!("reading the .sha256 next to {}: {e}", tarball.display()));
    let tarball_sha256 = sums
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    Release {
        version,
        sha,
        tarball,
        tarball_sha256,
        sysext,
    }
}
