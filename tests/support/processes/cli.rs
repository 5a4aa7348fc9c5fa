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
