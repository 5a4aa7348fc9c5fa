//! The command line against real loop-mounted ext4 filesystems: `status`, `check`,
//! `config` and exit codes.

use diskguard_testkit as support;

use support::processes::cli::{diskguard, status_json};

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::{LoopFs, LoopFsOptions};

/// A config that watches `docker_root` only (etcd off, so the host's /var/lib/etcd does
/// not leak into the test).
fn config_for(dir: &Path, docker_root: &Path, extra: &str) -> PathBuf {
    let path = dir.join("diskguard.toml");
    std::fs::write(
        &path,
        format!(
            // A socket that does not exist: these tests must never reach the host's Docker.
            "[docker]\nroot = {:?}\nhost = \"unix:///nonexistent/docker.sock\"\n[etcd]\nenabled = false\n{extra}",
            docker_root.display().to_string()
        ),
    )
    .expect("write config");
    path
}

#[test]
fn status_reports_prune_level_for_a_volume_filled_to_85_percent() {
    let mut fs = LoopFs::new(64);
    fs.fill_to_used_percent(85.0);
    let tmp = tempfile::tempdir().expect("tempdir");
    let json = status_json(&config_for(tmp.path(), fs.path(), ""));
    let docker = &json["volumes"][0];
    assert_eq!(docker["name"], "docker");
    assert_eq!(docker["level"], "prune", "{json:#}");
    assert_eq!(json["level"], "prune");
    assert!(docker["used_percent"].as_f64().expect("number") >= 85.0);
    assert_eq!(docker["time_to_full_seconds"], Value::Null);
    assert_eq!(docker["mount"]["fs_type"], "ext4");
    assert_eq!(json["ecs"], Value::Null, "local mode: ecs is null");
    assert_eq!(json["local_mode"], true);
    assert_eq!(json["etcd"], Value::Null);
    let plan = json["plan"].as_array().expect("plan is a list");
    assert_eq!(plan[0]["action"], "reclaim");
    assert!(plan[0]["bytes"].as_u64().expect("bytes needed") > 0);
}

#[test]
fn status_reports_the_inode_level_when_inodes_run_out_first() {
    let mut fs = LoopFs::with_options(&LoopFsOptions::new(64).inodes(2048));
    fs.fill_inodes_to_percent(92.0);
    let tmp = tempfile::tempdir().expect("tempdir");
    let json = status_json(&config_for(tmp.path(), fs.path(), ""));
    let docker = &json["volumes"][0];
    assert!(
        docker["inodes_used_percent"].as_f64().expect("number") >= 92.0,
        "{json:#}"
    );
    assert!(docker["used_percent"].as_f64().expect("number") < 50.0);
    assert_eq!(docker["driven_by"], "inodes");
    assert_eq!(docker["level"], "drain", "92% of inodes is past drain (90)");
    assert_eq!(
        json["plan"][0]["bytes"],
        Value::Null,
        "no byte goal when inodes drive"
    );
}

#[test]
fn check_exits_0_1_2_by_level_and_3_when_the_path_cannot_be_read() {
    let mut fs = LoopFs::new(64);
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = config_for(tmp.path(), fs.path(), "");
    let check = |expect: i32| {
        let out = diskguard(&config, &["check"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(out.status.code(), Some(expect), "check said {text}");
        text
    };
    assert!(check(0).starts_with("DISKGUARD OK"));
    fs.fill_to_used_percent(85.0);
    assert!(check(1).starts_with("DISKGUARD WARNING"));
    fs.remove_fill();
    fs.fill_to_used_percent(91.0);
    assert!(check(2).starts_with("DISKGUARD CRITICAL"));

    let missing = config_for(tmp.path(), &tmp.path().join("no-such-docker-root"), "");
    let out = diskguard(&missing, &["check"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).contains("does not exist"));
}

#[test]
fn every_bad_config_exits_78_naming_the_key() {
    let cases: &[(&str, &str)] = &[
        ("[thresholds]\ndran = 90\n", "thresholds.dran"),
        ("colour = \"red\"\n", "colour"),
        ("[thresholds]\ndrain = \"ninety\"\n", "thresholds.drain"),
        (
            "[thresholds]\nprune_target = 85\n",
            "thresholds.prune_target",
        ),
        ("[thresholds]\ndrain = 79\n", "thresholds.prune_start"),
        ("[thresholds]\ncritical = 120\n", "thresholds.critical"),
        ("[thresholds]\nrecover = 85\n", "thresholds.recover"),
        ("[sample]\ninterval = \"0s\"\n", "sample.interval"),
        ("[sample]\ninterval = \"10ms\"\n", "sample.interval"),
        (
            "[thresholds]\nrecover_after = \"five minutes\"\n",
            "thresholds.recover_after",
        ),
        (
            "[cloudwatch]\nnamespace = \"AWS/EC2\"\n",
            "cloudwatch.namespace",
        ),
        (
            "[cloudwatch]\ndimensions = [\"ContainerId\"]\n",
            "cloudwatch.dimensions",
        ),
        (
            "[prometheus]\nlisten = \"localhost\"\n",
            "prometheus.listen",
        ),
        ("[ecs]\nenabled = \"sometimes\"\n", "ecs.enabled"),
        ("mode = \"destroy\"\n", "mode"),
        (
            "[docker]\nprune_build_cache = \"yes\"\n",
            "docker.prune_build_cache",
        ),
    ];
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("bad.toml");
    for (text, key) in cases {
        std::fs::write(&path, text).expect("write config");
        for args in [&["config", "check"][..], &["check"], &["status"]] {
            let out = diskguard(&path, args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(78), "{args:?} with {text:?}: {err}");
            assert!(
                err.contains(&format!("key `{key}`")),
                "{text:?} should name {key}: {err}"
            );
            assert!(
                err.contains(&path.display().to_string()),
                "names the file: {err}"
            );
            assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        }
    }
}

#[test]
fn syntax_error_exits_78_with_line_and_column() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("broken.toml");
    std::fs::write(&path, "[thresholds]\ndrain = = 90\n").expect("write config");
    let out = diskguard(&path, &["run"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"));
}

#[test]
fn a_named_config_file_that_is_missing_is_an_error() {
    let out = diskguard(
        Path::new("/nonexistent/diskguard.toml"),
        &["config", "check"],
    );
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/diskguard.toml"));
}

#[test]
fn printed_defaults_are_a_valid_config() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_diskguard"))
        .args(["config", "defaults"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0));
    let path = tmp.path().join("defaults.toml");
    std::fs::write(&path, &out.stdout).expect("write");
    let check = diskguard(&path, &["config", "check"]);
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for section in [
        "[sample]",
        "[thresholds]",
        "[docker]",
        "[etcd]",
        "[ecs]",
        "[cloudwatch]",
        "[prometheus]",
    ] {
        assert!(text.contains(section), "defaults show {section}");
    }
}

#[test]
fn version_names_the_git_commit() {
    let out = Command::new(env!("CARGO_BIN_EXE_diskguard"))
        .arg("--version")
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("diskguard 0."), "{text}");
    // A real commit: 12 hex digits (and `-dirty` for a modified work tree), never
    // `unknown` — CI builds from a git clone, and a build from a tarball is given the
    // commit in DISKGUARD_GIT_SHA.
    let sha = text
        .split("(git ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_default();
    let hex = sha.strip_suffix("-dirty").unwrap_or(sha);
    assert!(
        hex.len() == 12 && hex.chars().all(|c| c.is_ascii_hexdigit()),
        "the git commit, not {sha:?}: {text}"
    );
}
