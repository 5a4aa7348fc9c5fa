//! The systemd units in `units/` and in the rendered user data, checked by systemd itself:
//! `systemd-analyze verify` must print nothing (a warning is a failure too) and
//! `systemd-analyze security --offline=true` must rate diskguard.service at most 2.0.
//! The units run `/opt/bin/diskguard` and `/opt/bin/diskguard-install`, which verify
//! requires to exist: each check runs in a private mount namespace with a tmpfs on /opt
//! holding this build's binary and the install script, so the host's /opt is untouched.

use diskguard_testkit as support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::processes::cli;
use support::processes::peer::{Bin, binary, run_raw, run_said, temp_dir};
use support::systemd::cloudinit::yaml_to_json;

const MAX_EXPOSURE: f64 = 2.0;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn render(format: &str) -> String {
    let out = cli::userdata(
        format,
        "prod",
        "https://releases.example.com/diskguard.tar.gz",
        &"0".repeat(64),
        &[],
    );
    assert!(out.status.success(), "userdata --format {format} failed");
    String::from_utf8(out.stdout).expect("UTF-8 user data")
}

/// A unit and its drop-ins, written under `dir` the way systemd lays them out.
fn lay_out(dir: &Path, name: &str, content: &str, drop_ins: &[(String, String)]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).expect("writing unit");
    for (drop_name, drop_content) in drop_ins {
        let d = dir.join(format!("{name}.d"));
        std::fs::create_dir_all(&d).expect("drop-in dir");
        std::fs::write(d.join(drop_name), drop_content).expect("writing drop-in");
    }
    path
}

/// `systemd-analyze verify` on each unit in `dir`, with /opt/bin populated in a private
/// mount namespace. Returns its output per unit when any is not clean.
fn verify_all(dir: &Path, units: &[&str]) {
    let script = format!(
        "set -e; mount -t tmpfs tmpfs /opt; mkdir /opt/bin; \
         cp '{bin}' /opt/bin/diskguard; cp '{install}' /opt/bin/diskguard-install; \
         cd '{dir}'; for u in {units}; do \
           out=$('{analyze}' verify --man=no \"./$u\" 2>&1) || {{ echo \"$u: exit $?: $out\"; continue; }}; \
           [ -z \"$out\" ] || echo \"$u: $out\"; \
         done",
        bin = env!("CARGO_BIN_EXE_diskguard"),
        install = repo("units/diskguard-install").display(),
        dir = dir.display(),
        units = units.join(" "),
        analyze = binary(Bin::SystemdAnalyze).display(),
    );
    let (ok, text) = run_said(
        Command::new(binary(Bin::Unshare))
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(&script),
    );
    assert!(
        ok && text.trim().is_empty(),
        "systemd-analyze verify is not clean:\n{text}"
    );
}

#[test]
fn units_in_the_repository_pass_systemd_analyze_verify() {
    let dir = temp_dir("units");
    let read = |p: &str| std::fs::read_to_string(repo(p)).expect("reading unit");
    lay_out(
        dir.path(),
        "diskguard.service",
        &read("units/diskguard.service"),
        &[(
            "10-install.conf".into(),
            read("units/userdata/diskguard.service.d/10-install.conf"),
        )],
    );
    lay_out(
        dir.path(),
        "diskguard-install.service",
        &read("units/diskguard-install.service"),
        &[],
    );
    lay_out(
        dir.path(),
        "amazon-ecs-agent.service",
        &read("units/amazon-ecs-agent.service"),
        &[],
    );
    verify_all(
        dir.path(),
        &[
            "diskguard.service",
            "diskguard-install.service",
            "amazon-ecs-agent.service",
        ],
    );
}

/// The two formats spell the same things differently.
struct Spelling {
    units: &'static str,
    content: &'static str,
    drop_ins: &'static str,
}

const CLOUD_CONFIG: Spelling = Spelling {
    units: "/coreos/units",
    content: "content",
    drop_ins: "drop-ins",
};
const IGNITION: Spelling = Spelling {
    units: "/systemd/units",
    content: "contents",
    drop_ins: "dropins",
};

/// Lays out every unit (and drop-in) of a rendered config in a temp dir and verifies them.
fn verify_rendered(config: &Value, spelling: &Spelling) {
    let dir = temp_dir("rendered-units");
    let text = |v: &Value, key: &str| v[key].as_str().unwrap_or_default().to_owned();
    let units = config
        .pointer(spelling.units)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("no {} in {config}", spelling.units));
    let mut names = Vec::new();
    for unit in units {
        let name = text(unit, "name");
        let drop_ins: Vec<(String, String)> = unit[spelling.drop_ins]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|d| (text(d, "name"), text(d, spelling.content)))
                    .collect()
            })
            .unwrap_or_default();
        lay_out(dir.path(), &name, &text(unit, spelling.content), &drop_ins);
        names.push(name);
    }
    assert_eq!(names.len(), 3, "expected three units, got {names:?}");
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    verify_all(dir.path(), &names);
}

#[test]
fn units_in_the_rendered_cloud_config_pass_systemd_analyze_verify() {
    verify_rendered(&yaml_to_json(&render("cloud-config")), &CLOUD_CONFIG);
}

#[test]
fn units_in_the_rendered_ignition_pass_systemd_analyze_verify() {
    let config: Value = serde_json::from_str(&render("ignition")).expect("JSON");
    verify_rendered(&config, &IGNITION);
}

#[test]
fn diskguard_service_exposure_is_at_most_2() {
    let out = run_raw(
        Command::new(binary(Bin::SystemdAnalyze))
            .args(["security", "--offline=true", "--no-pager"])
            .arg(repo("units/diskguard.service")),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level for diskguard.service"))
        .unwrap_or_else(|| {
            panic!(
                "no overall exposure in systemd-analyze security's output:\n{text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let exposure: f64 = line
        .split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the exposure from {line:?}"));
    assert!(
        exposure <= MAX_EXPOSURE,
        "exposure {exposure} > {MAX_EXPOSURE}:\n{text}"
    );
}
