//! `diskguard userdata --format cloud-init` (Amazon Linux 2023) against cloud-init itself:
//! `cloud-init schema` passes what it renders (and refuses a broken copy), and Debian's
//! cloud-init applies it for real in a container booted with systemd as PID 1 and a NoCloud
//! seed — diskguard installed from the served tarball after its sha256 matched, enabled and
//! running, `diskguard status` answering, a user's own parts combined; a tampered tarball
//! leaves diskguard not started. See `support::systemd::node` for why nothing leaves the
//! machine, and `support::systemd::nocloud` for the seed.

use diskguard_testkit as support;

use std::process::Command;
use std::time::Instant;

use support::processes::cli;
use support::processes::peer::{Bin, binary, run_said, temp_dir};
use support::systemd::cloudinit::written_file;
use support::systemd::image::Recipe;
use support::systemd::nocloud::{boot_with_user_data, wait_finished};
use support::systemd::node::{SETTLE, Serve, World, wait_running};

const SHA: &str = "9f2c4e1b7a3d5f60817263544536271809a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4";
const URL: &str = "https://releases.example.com/diskguard/diskguard.tar.gz";

fn userdata(extra: &[&str]) -> std::process::Output {
    userdata_as("cloud-init", extra)
}

/// `diskguard userdata --format FORMAT` for cluster prod, with `extra` flags.
fn userdata_as(format: &str, extra: &[&str]) -> std::process::Output {
    cli::userdata(format, "prod", URL, SHA, extra)
}

/// `cloud-init schema --config-file` on `text`: whether it passed, and what it said.
fn schema(text: &str) -> (bool, String) {
    let dir = temp_dir("schema");
    let path = dir.path().join("user-data");
    std::fs::write(&path, text).expect("write");
    run_said(
        Command::new(binary(Bin::CloudInit))
            .args(["schema", "--config-file"])
            .arg(&path),
    )
}

#[test]
fn rendered_cloud_init_passes_cloud_init_schema_and_a_broken_copy_does_not() {
    let out = userdata(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let (ok, said) = schema(&text);
    assert!(
        ok && said.contains("Valid cloud-config"),
        "cloud-init schema: {said}"
    );
    // The validator is real: a wrong type on a key the install relies on is refused.
    let broken = text.replace("    append: true\n", "    append: \"yes please\"\n");
    assert_ne!(broken, text);
    let (ok, said) = schema(&broken);
    assert!(
        !ok && said.contains("append"),
        "cloud-init schema passed: {said}"
    );
}

#[test]
fn config_file_reaches_the_node_byte_for_byte() {
    // A leading blank, CRLF endings and non-ASCII: what cloud-init's YAML reader (PyYAML)
    // reads back must be exactly the file's bytes.
    let dir = temp_dir("cfg");
    let (path, config) = cli::awkward_config(dir.path());
    let out = userdata(&["--config", &path.display().to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    assert_eq!(
        written_file(&text, "/etc/diskguard/diskguard.toml").as_deref(),
        Some(config)
    );
    let (ok, said) = schema(&text);
    assert!(ok, "cloud-init schema: {said}");
}

#[test]
fn parts_cloud_init_would_not_read_and_parts_without_cloud_init_exit_78() {
    let dir = temp_dir("parts");
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "echo hello\n").expect("write");
    let script = dir.path().join("user.sh");
    std::fs::write(&script, "#!/bin/sh\necho hello\n").expect("write");
    let out = userdata(&["--part", &notes.display().to_string()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        out.stdout.is_empty() && stderr.contains("notes.txt"),
        "{stderr}"
    );
    let out = userdata_as("cloud-config", &["--part", &script.display().to_string()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("cloud-init"), "{stderr}");
}

/// A user's own parts, as a team would combine them: a script, and a cloud-config that
/// writes a file of its own, runs a command and adds a setting to ecs.config first.
fn user_parts(dir: &std::path::Path) -> Vec<String> {
    let script = dir.join("user-script.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\n# The team's own boot script, café included.\necho script > /var/tmp/user-script-ran\n",
    )
    .expect("write");
    let config = dir.join("user-config.yaml");
    std::fs::write(
        &config,
        "#cloud-config\nwrite_files:\n  - path: /etc/ecs/ecs.config\n    content: |\n      ECS_ENABLE_TASK_IAM_ROLE=true\n  - path: /etc/team.conf\n    content: |\n      team\nruncmd:\n  - [touch, /var/tmp/user-runcmd-ran]\n",
    )
    .expect("write");
    vec![
        "--part".into(),
        script.display().to_string(),
        "--part".into(),
        config.display().to_string(),
    ]
}

#[test]
fn cloud_init_installs_the_verified_tarball_and_starts_diskguard() {
    let mut world = World::with_image(Serve::Genuine, Recipe::CloudInit);
    // Above prune_start, so `status` has something to say about the Docker volume.
    world.docker_root.fill_to_used_percent(85.0);
    let dir = temp_dir("al2023-parts");
    let parts = user_parts(dir.path());
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let text = world.render_with("cloud-init", &parts);
    assert!(text.starts_with("Content-Type: multipart/mixed"), "{text}");

    let booted = Instant::now();
    let (c, _seed) = boot_with_user_data(&world, &text);
    let finished = wait_finished(&c);
    eprintln!("boot to cloud-init done: {:?}", booted.elapsed());
    assert!(
        finished.ok,
        "cloud-init reported errors:\n{}\n{}",
        finished.status,
        c.stdout(&["cat", "/var/log/cloud-init.log"])
    );

    // ECS_CLUSTER is added to what was there (the user's part wrote ecs.config first).
    assert_eq!(
        c.stdout(&["cat", "/etc/ecs/ecs.config"]),
        "ECS_ENABLE_TASK_IAM_ROLE=true\nECS_CLUSTER=test"
    );
    // The user's parts took effect next to diskguard's.
    assert_eq!(c.stdout(&["cat", "/etc/team.conf"]), "team");
    c.stdout(&["test", "-e", "/var/tmp/user-script-ran"]);
    c.stdout(&["test", "-e", "/var/tmp/user-runcmd-ran"]);

    let running = wait_running(&c);
    eprintln!("boot to diskguard running: {:?}", booted.elapsed());
    // The boot's queue was an instance's: ecs.service (after cloud-final) ran, and
    // diskguard.service is ordered after it, as Amazon Linux names it.
    assert_eq!(c.property("ecs.service", "ActiveState"), "active");
    let after = c.property("diskguard.service", "After");
    assert!(
        after.split_whitespace().any(|u| u == "ecs.service")
            && after.split_whitespace().any(|u| u == "docker.service"),
        "diskguard.service After={after}"
    );
    assert_eq!(running["NRestarts"], "0", "{running:?}");
    // It started with the test drop-in: nothing here may probe the link-local IMDS address.
    let environ = c.stdout(&["cat", &format!("/proc/{}/environ", running["MainPID"])]);
    assert!(
        environ
            .split('\0')
            .any(|v| v == "AWS_EC2_METADATA_DISABLED=true"),
        "diskguard's environment: {environ:?}"
    );
    assert_eq!(
        c.stdout(&["systemctl", "is-enabled", "diskguard.service"]),
        "enabled"
    );
    world.assert_installed_once(&c);
    // The sha256 the user data carries is what the install checked against.
    assert_eq!(
        c.stdout(&["sha256sum", "/opt/diskguard/diskguard.tar.gz"])
            .split_whitespace()
            .next(),
        Some(world.release.tarball_sha256.as_str())
    );

    // `diskguard status` answers on the node, with the installed config.
    let out = c.exec(&[
        "env",
        "AWS_EC2_METADATA_DISABLED=true",
        "/opt/bin/diskguard",
        "status",
    ]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("docker") && said.contains("/var/lib/docker"),
        "diskguard status ({}): {said}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn tampered_tarball_under_cloud_init_leaves_diskguard_not_started() {
    let world = World::with_image(Serve::Tampered, Recipe::CloudInit);
    let text = world.render("cloud-init");
    assert!(text.starts_with("#cloud-config\n"), "{text}");
    let (c, _seed) = boot_with_user_data(&world, &text);
    // cloud-init's part is done (it queued the start); the install unit refuses.
    let finished = wait_finished(&c);
    assert!(finished.ok, "cloud-init: {}", finished.status);
    let install = c.wait_for(
        "diskguard-install.service",
        &["ActiveState", "Result"],
        SETTLE,
        "the install has failed",
        |p| p.get("ActiveState").is_some_and(|s| s == "failed"),
    );
    assert_eq!(install["Result"], "exit-code", "{install:?}");
    world.assert_install_refused(&c);
}
