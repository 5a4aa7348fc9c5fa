//! Peer processes under guards, the diskguard daemon, /proc readings, notify sockets,
//! and cleanup after test processes that died.

pub mod cli;
pub mod daemon;
pub mod leftovers;
pub mod notify;
pub mod peer;
pub mod procs;
pub mod procstat;

use std::path::PathBuf;

/// The `diskguard` binary cargo built for these tests: beside the test binary's `deps/`
/// directory (`target/<profile>/diskguard`). `CARGO_BIN_EXE_diskguard` is only known to
/// the test crate itself, not to this library.
pub fn diskguard_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binaries live in target/<profile>/deps");
    let bin = profile_dir.join("diskguard");
    assert!(
        bin.exists(),
        "{} is missing: run the tests with cargo, which builds it",
        bin.display()
    );
    bin
}
