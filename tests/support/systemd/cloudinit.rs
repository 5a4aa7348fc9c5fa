//! Applies user data inside a [`SystemdContainer`] the way the node's own tools would, so
//! the install tests run the real units under a real systemd.
//!
//! cloud-config follows coreos-cloudinit (flatcar/coreos-cloudinit, `initialize/config.go`
//! `Apply` and `processUnits`, `system/file.go`, `system/systemd.go`): `write_files` in order
//! (parent dirs 0755, written to a temp file in the same dir, mode from `permissions`
//! (default 0644), `chown owner`, renamed into place); then each unit in order — `content`
//! to `/etc/systemd/system/NAME` (`/run/systemd/system` when `runtime`), 0644, `drop-ins`
//! to `NAME.d/`, `mask`, `enable` (`systemctl enable --force [--runtime]`); one
//! `daemon-reload` if anything was written; then each `command` in order, waiting for the
//! job. A failed job is logged and the next one still runs, as coreos-cloudinit does.
//! YAML is read with PyYAML (YAML 1.1, like coreos-cloudinit's go-yaml) from the test venv.
//!
//! Ignition follows its spec 3.x semantics for what the renderer uses: `storage.files` with
//! `data:` sources decoded, remote sources fetched and checked against
//! `verification.hash` before they are written, `mode`; `systemd.units` with `contents`,
//! `dropins` and `enabled`. (Ignition runs in the initramfs before systemd; here the files
//! land in the running container, then the enabled units are started, as on first boot.)

use std::process::Command;

use serde_json::Value;

use crate::processes::peer::{Bin, binary, run_ok, test_venv};
use crate::systemd::container::SystemdContainer;

/// The outcome of one `command:` of a unit.
#[derive(Debug, Clone)]
pub struct UnitCommand {
    pub unit: String,
    pub command: String,
    pub ok: bool,
    pub output: String,
}

/// Reads YAML with the venv's PyYAML into JSON.
pub fn yaml_to_json(text: &str) -> Value {
    let python = test_venv().join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/test-deps.sh (the test venv with PyYAML)",
        python.display()
    );
    let dir = crate::processes::peer::temp_dir("yaml");
    let path = dir.path().join("in.yaml");
    std::fs::write(&path, text).expect("writing the YAML to convert");
    let json = run_ok(
        Command::new(python)
            .args([
                "-c",
                "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)",
            ])
            .arg(&path),
    );
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("PyYAML's JSON: {e}: {json}"))
}

/// The content of the `write_files` entry for `path` in cloud-config user data (Flatcar's
/// or cloud-init's: both write files the same way).
pub fn written_file(user_data: &str, path: &str) -> Option<String> {
    yaml_to_json(user_data)["write_files"]
        .as_array()?
        .iter()
        .find(|f| f["path"] == path)?["content"]
        .as_str()
        .map(str::to_owned)
}

fn str_field<'v>(value: &'v Value, key: &str) -> Option<&'v str> {
    value.get(key).and_then(Value::as_str)
}

fn bool_field(value: &Value, key: &str) -> bool {
    value.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// Applies a cloud-config (its text) in `c`; returns what each `command:` did.
pub fn apply_cloud_config(c: &SystemdContainer<'_>, text: &str) -> Vec<UnitCommand> {
    assert!(
        text.starts_with("#cloud-config\n"),
        "coreos-cloudinit would not take this for a cloud-config: it must start with #cloud-config"
    );
    let config = yaml_to_json(text);
    let empty = Vec::new();
    for file in config["write_files"].as_array().unwrap_or(&empty) {
        let path = str_field(file, "path").expect("write_files entry without path");
        assert!(
            file.get("encoding").is_none(),
            "{path}: the applier does not decode encodings (the renderer never uses them)"
        );
        let content = str_field(file, "content").unwrap_or_default();
        let mode = str_field(file, "permissions").map_or(0o644, |p| {
            u32::from_str_radix(p, 8).unwrap_or_else(|e| panic!("{path}: permissions {p:?}: {e}"))
        });
        let owner = str_field(file, "owner").unwrap_or("");
        let script = format!(
            "set -e; dir=$(dirname '{path}'); mkdir -p -m 0755 \"$dir\"; \
             tmp=$(mktemp \"$dir/cloudinit-temp.XXXXXX\"); cat > \"$tmp\"; chmod {mode:o} \"$tmp\"; \
             if [ -n '{owner}' ]; then chown '{owner}' \"$tmp\"; fi; mv \"$tmp\" '{path}'"
        );
        let out = c.sh_with_input(&script, content.as_bytes());
        assert!(
            out.status.success(),
            "writing {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut reload = false;
    let mut commands = Vec::new();
    let units = config["coreos"]["units"].as_array().unwrap_or(&empty);
    for unit in units {
        let name = str_field(unit, "name").expect("unit without name");
        let runtime = bool_field(unit, "runtime");
        let dir = if runtime {
            "/run/systemd/system"
        } else {
            "/etc/systemd/system"
        };
        if let Some(content) = str_field(unit, "content") {
            c.write_file(&format!("{dir}/{name}"), content.as_bytes(), 0o644);
            reload = true;
        }
        for drop_in in unit["drop-ins"].as_array().unwrap_or(&empty) {
            let (Some(drop_name), Some(content)) =
                (str_field(drop_in, "name"), str_field(drop_in, "content"))
            else {
                continue;
            };
            c.write_file(
                &format!("{dir}/{name}.d/{drop_name}"),
                content.as_bytes(),
                0o644,
            );
            reload = true;
        }
        if bool_field(unit, "mask") {
            c.stdout(&["ln", "-sfn", "/dev/null", &format!("{dir}/{name}")]);
        }
        if bool_field(unit, "enable") {
            let mut args = vec!["systemctl", "enable", "--force"];
            if runtime {
                args.push("--runtime");
            }
            args.push(name);
            c.stdout(&args);
        }
    }
    if reload {
        c.stdout(&["systemctl", "daemon-reload"]);
    }
    for unit in units {
        let (Some(name), Some(command)) = (str_field(unit, "name"), str_field(unit, "command"))
        else {
            continue;
        };
        let out = c.exec(&["systemctl", command, name]);
        commands.push(UnitCommand {
            unit: name.to_owned(),
            command: command.to_owned(),
            ok: out.status.success(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        });
    }
    commands
}

/// Decodes a `data:` URL (percent-encoded or `;base64`).
pub fn decode_data_url(url: &str) -> Vec<u8> {
    let rest = url.strip_prefix("data:").expect("a data: URL");
    let (meta, data) = rest.split_once(',').expect("a data: URL has a comma");
    assert!(
        !meta.ends_with(";base64"),
        "the applier decodes percent-encoded data URLs only (the renderer writes no other)"
    );
    let bytes = data.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ASCII escape");
            out.push(u8::from_str_radix(hex, 16).expect("hex escape"));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// Applies an Ignition config (its JSON text) in `c`. `fetch` gets a remote source URL's
/// bytes (the tests' loopback server); the bytes are written only if their sha256 or
/// sha512 matches `verification.hash`, as Ignition does. Returns the enabled units.
pub fn apply_ignition(
    c: &SystemdContainer<'_>,
    text: &str,
    fetch: impl Fn(&str) -> Vec<u8>,
) -> Vec<String> {
    let config: Value = serde_json::from_str(text).expect("Ignition config is JSON");
    let empty = Vec::new();
    for file in config["storage"]["files"].as_array().unwrap_or(&empty) {
        let path = str_field(file, "path").expect("file without path");
        let source = str_field(&file["contents"], "source").expect("file without source");
        let bytes = if source.starts_with("data:") {
            decode_data_url(source)
        } else {
            let bytes = fetch(source);
            if let Some(hash) = str_field(&file["contents"]["verification"], "hash") {
                let (function, expected) = hash.split_once('-').expect("hash is FUNCTION-HEX");
                let actual = digest(function, &bytes);
                assert_eq!(
                    actual, expected,
                    "{path}: {source} does not match verification.hash: Ignition would fail the boot"
                );
            }
            bytes
        };
        let mode = file["mode"]
            .as_u64()
            .and_then(|m| u32::try_from(m).ok())
            .unwrap_or(0o644);
        c.write_file(path, &bytes, mode);
    }
    let mut enabled = Vec::new();
    for unit in config["systemd"]["units"].as_array().unwrap_or(&empty) {
        let name = str_field(unit, "name").expect("unit without name");
        if let Some(contents) = str_field(unit, "contents") {
            c.write_file(
                &format!("/etc/systemd/system/{name}"),
                contents.as_bytes(),
                0o644,
            );
        }
        for drop_in in unit["dropins"].as_array().unwrap_or(&empty) {
            if let (Some(drop_name), Some(contents)) =
                (str_field(drop_in, "name"), str_field(drop_in, "contents"))
            {
                c.write_file(
                    &format!("/etc/systemd/system/{name}.d/{drop_name}"),
                    contents.as_bytes(),
                    0o644,
                );
            }
        }
        if bool_field(unit, "enabled") {
            enabled.push(name.to_owned());
        }
    }
    c.stdout(&["systemctl", "daemon-reload"]);
    for name in &enabled {
        c.stdout(&["systemctl", "enable", name]);
    }
    enabled
}

fn digest(function: &str, bytes: &[u8]) -> String {
    let dir = crate::processes::peer::temp_dir("digest");
    let path = dir.path().join("blob");
    std::fs::write(&path, bytes).expect("writing the blob to hash");
    let tool = match function {
        "sha256" => binary(Bin::Sha256sum),
        "sha512" => binary(Bin::Sha256sum).with_file_name("sha512sum"),
        other => panic!("Ignition knows no hash function {other}"),
    };
    let out = run_ok(Command::new(tool).arg(&path));
    out.split_whitespace().next().unwrap_or_default().to_owned()
}
