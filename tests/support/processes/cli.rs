//! diskguard's one-shot commands, as a test runs them.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// `diskguard --config CONFIG ARGS…`, to completion. `DISKGUARD_CONFIG` from the caller's
/// environment is dropped (the file named is the one used), and IMDS is never asked.
pub fn diskguard(config: &Path, args: &[&str]) -> Output {
    Command::new(super::diskguard_bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("DISKGUARD_CONFIG")
        .output()
        .expect("the diskguard binary runs")
}

/// `diskguard status --json`, which must exit 0, parsed.
pub fn status_json(config: &Path) -> Value {
    let out = diskguard(config, &["status", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("status --json prints JSON")
}

/// `diskguard userdata --format FORMAT --cluster CLUSTER --release-url URL --sha256 SHA
/// EXTRA…`, to completion: the one invocation the user data and unit tests share.
pub fn userdata(format: &str, cluster: &str, url: &str, sha256: &str, extra: &[&str]) -> Output {
    crate::processes::procs::run_raw(
        Command::new(super::diskguard_bin())
            .args([
                "userdata",
                "--format",
                format,
                "--cluster",
                cluster,
                "--release-url",
                url,
                "--sha256",
                sha256,
            ])
            .args(extra),
    )
}

/// A diskguard.toml a node must receive byte for byte (a leading blank, CRLF endings,
/// non-ASCII), written under `dir`: its path and its text.
pub fn awkward_config(dir: &Path) -> (std::path::PathBuf, &'static str) {
    let path = dir.join("diskguard.toml");
    let text =
        "  # indented comment, café\r\nmode = \"observe\"\r\n\n[thresholds]\nprune_start = 85\n";
    std::fs::write(&path, text).expect("writing the config");
    (path, text)
}
