//! `diskguard userdata` against the real validators: the rendered cloud-config passes a
//! checker that follows coreos-cloudinit's documented schema (which rejects a broken
//! fixture of each kind), the rendered Ignition passes `ignition-validate`, config-like
//! mistakes exit 78, and the checked-in examples are the command's own output.

use diskguard_testkit as support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::processes::cli;
use support::processes::peer::{Bin, binary, run_raw, run_said, temp_dir, test_venv};
use support::systemd::cloudinit::written_file;

const SHA: &str = "9f2c4e1b7a3d5f60817263544536271809a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4";
const URL: &str = "https://releases.example.com/diskguard/diskguard.tar.gz";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn userdata(args: &[&str]) -> Output {
    run_raw(
        Command::new(env!("CARGO_BIN_EXE_diskguard"))
            .arg("userdata")
            .args(args),
    )
}

/// Valid flags for `format`.
fn good_args(format: &str) -> Vec<&str> {
    vec![
        "--format",
        format,
        "--cluster",
        "prod",
        "--release-url",
        URL,
        "--sha256",
        SHA,
    ]
}

fn render(format: &str, extra: &[&str]) -> String {
    let out = cli::userdata(format, "prod", URL, SHA, extra);
    assert!(
        out.status.success(),
        "userdata --format {format} {extra:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// The checker's output and whether it passed the file.
fn cloud_config_check(path: &Path) -> (bool, String) {
    let python = test_venv().join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/test-deps.sh",
        python.display()
    );
    run_said(
        Command::new(python)
            .arg(repo("tests/support/systemd/cloud_config_check.py"))
            .arg(path),
    )
}

#[test]
fn rendered_cloud_config_passes_the_coreos_cloudinit_schema_check() {
    let dir = temp_dir("cc");
    let path = dir.path().join("user-data.yaml");
    std::fs::write(&path, render("cloud-config", &[])).expect("write");
    let (ok, output) = cloud_config_check(&path);
    assert!(ok && output.is_empty(), "checker: {output}");
}

#[test]
fn broken_cloud_config_fixtures_are_each_rejected_for_their_fault() {
    let fixtures = repo("tests/fixtures/cloud-config");
    let mut seen = 0;
    for entry in std::fs::read_dir(&fixtures).expect("fixtures dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("fixture");
        let expect = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} has no '# expect: ' line", path.display()));
        let (ok, output) = cloud_config_check(&path);
        assert!(!ok, "{} passed the checker", path.display());
        assert!(
            output.contains(expect),
            "{}: expected {expect:?} in {output:?}",
            path.display()
        );
        seen += 1;
    }
    assert!(seen >= 15, "only {seen} fixtures in {}", fixtures.display());
}

#[test]
fn rendered_ignition_passes_ignition_validate() {
    let dir = temp_dir("ign");
    let path = dir.path().join("config.ign");
    std::fs::write(&path, render("ignition", &[])).expect("write");
    let out = run_raw(Command::new(binary(Bin::IgnitionValidate)).arg(&path));
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "ignition-validate: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn ignition_validate_rejects_a_tarball_entry_with_a_wrong_hash_form() {
    // The validator is real: it refuses what Ignition would refuse.
    let text = render("ignition", &[]).replace(&format!("sha256-{SHA}"), "sha256-xyz");
    let dir = temp_dir("ign-bad");
    let path = dir.path().join("config.ign");
    std::fs::write(&path, text).expect("write");
    let out = run_raw(Command::new(binary(Bin::IgnitionValidate)).arg(&path));
    assert!(!out.status.success(), "ignition-validate passed a bad hash");
}

#[test]
fn config_file_reaches_the_node_byte_for_byte() {
    // A comment with a leading blank, CRLF endings and non-ASCII: the YAML a node reads back
    // must give exactly the file's bytes.
    let dir = temp_dir("cfg");
    let (path, config) = cli::awkward_config(dir.path());
    let text = render("cloud-config", &["--config", &path.display().to_string()]);
    assert_eq!(
        written_file(&text, "/etc/diskguard/diskguard.toml").as_deref(),
        Some(config)
    );
    let yaml = dir.path().join("user-data.yaml");
    std::fs::write(&yaml, &text).expect("write");
    let (ok, output) = cloud_config_check(&yaml);
    assert!(ok, "checker: {output}");
}

#[test]
fn config_like_mistakes_exit_78_and_print_nothing() {
    let dir = temp_dir("bad-args");
    let bad_config = dir.path().join("bad.toml");
    std::fs::write(&bad_config, "[thresholds]\ndran = 90\n").expect("write");
    let bad_config = bad_config.display().to_string();
    let missing = dir.path().join("missing.toml").display().to_string();
    let cases: [(&[&str], &str); 6] = [
        (&["--sha256", "abc"], "--sha256"),
        (&["--release-url", "ftp://example.com/x"], "--release-url"),
        (
            &["--release-url", "https://example.com/$x"],
            "--release-url",
        ),
        (&["--cluster", "no spaces"], "--cluster"),
        (&["--config", &bad_config], "thresholds.dran"),
        (&["--config", &missing], "missing.toml"),
    ];
    for (change, names) in cases {
        // The good flags, with the one under test replaced.
        let mut args = good_args("cloud-config");
        match args.iter().position(|a| *a == change[0]) {
            Some(i) => args[i + 1] = change[1],
            None => args.extend_from_slice(change),
        }
        let out = userdata(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{change:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{change:?} printed user data");
        assert!(
            stderr.contains(names),
            "{change:?}: {stderr:?} names no {names}"
        );
    }
}

#[test]
fn help_says_which_mistakes_exit_78() {
    let out = userdata(&["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("78"), "{help}");
}

#[test]
fn examples_and_node_stack_user_data_are_what_userdata_renders() {
    let out = run_raw(
        Command::new(repo("scripts/render-userdata.sh"))
            .arg("--check")
            .env("DISKGUARD_BIN", env!("CARGO_BIN_EXE_diskguard")),
    );
    assert!(
        out.status.success(),
        "{}\n(`make userdata` regenerates cloud-config/ and the node stack's user data)",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn user_data_fits_ec2_limit_with_long_values() {
    let cluster = "c".repeat(255);
    let url = format!("https://{}.example.com/{}", "h".repeat(60), "p".repeat(400));
    for format in ["cloud-config", "ignition", "cloud-init"] {
        let out = userdata(&[
            "--format",
            format,
            "--cluster",
            &cluster,
            "--release-url",
            &url,
            "--sha256",
            SHA,
        ]);
        assert!(out.status.success(), "{format}");
        assert!(
            out.stdout.len() <= 16 * 1024,
            "{format}: {} bytes",
            out.stdout.len()
        );
    }
}
