//! The Ignition rendering (config spec 3.3.0, what Flatcar's Ignition reads; Butane's
//! `variant: flatcar`). Ignition runs once, on first boot: it downloads the release tarball
//! itself and checks `verification.hash` before writing it, and the install unit then
//! finds a verified tarball and only unpacks it.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::node::{Node, TARBALL_PATH};

pub const SPEC_VERSION: &str = "3.3.0";

pub fn render(node: &Node) -> String {
    let mut files: Vec<Value> = node
        .files()
        .into_iter()
        .map(|file| {
            json!({
                "path": file.path,
                "mode": file.mode,
                "contents": { "source": data_url(&file.content) },
            })
        })
        .collect();
    files.push(json!({
        "path": TARBALL_PATH,
        "mode": 0o644,
        "contents": {
            "source": node.release_url,
            "verification": { "hash": format!("sha256-{}", node.sha256) },
        },
    }));
    let units: Vec<Value> = node
        .units()
        .into_iter()
        .map(|unit| {
            let mut entry = json!({ "name": unit.name, "contents": unit.content });
            if unit.enable {
                entry["enabled"] = json!(true);
            }
            if !unit.drop_ins.is_empty() {
                entry["dropins"] = unit
                    .drop_ins
                    .iter()
                    .map(|(name, contents)| json!({ "name": name, "contents": contents }))
                    .collect();
            }
            entry
        })
        .collect();
    let config = json!({
        "ignition": { "version": SPEC_VERSION },
        "storage": { "files": files },
        "systemd": { "units": units },
    });
    // Pretty, so an operator can read it in the EC2 console; a serde_json Value always
    // serialises.
    let mut text = serde_json::to_string_pretty(&config).unwrap_or_default();
    text.push('\n');
    text
}

/// An RFC 2397 data URL with everything but unreserved characters percent-encoded, as
/// Butane writes small files: the text stays legible in the JSON.
fn data_url(content: &str) -> String {
    let mut out = String::from("data:,");
    for byte in content.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_url_encodes_all_but_unreserved() {
        assert_eq!(
            data_url("ECS_CLUSTER=prod\n"),
            "data:,ECS_CLUSTER%3Dprod%0A"
        );
        assert_eq!(data_url("é"), "data:,%C3%A9");
    }
}
