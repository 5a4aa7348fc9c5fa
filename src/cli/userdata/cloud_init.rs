//! The cloud-init rendering, for Amazon Linux 2023 (the ECS-optimized AMI), whose user data
//! cloud-init processes once per instance: `write_files` (init stage, before the ECS agent
//! starts) writes ECS_CLUSTER, the config, the install script and the units; `runcmd`
//! (final stage) reloads systemd and enables and queues diskguard.service. The install
//! unit the drop-in requires checks the tarball's sha256 before anything is unpacked, as
//! on Flatcar. With parts of the user's own, the result is MIME multipart.

use std::fmt::Write as _;

use base64::Engine as _;

use super::node::{ECS_CONFIG, Node};
use super::yaml::{quoted, text};

/// Where units written by user data go (an administrator's units, above the vendor's).
const UNIT_DIR: &str = "/etc/systemd/system";
/// How diskguard's part merges into the parts before it: their keys win over ours
/// (`no_replace`), and lists both name (`write_files`, `runcmd`) are joined, ours after
/// theirs. cloud-init's default (`dict(replace)+list()+str()`) would let a user's
/// `write_files` replace diskguard's, so diskguard's part comes last and says so.
const MERGE_TYPE: &str = "list(append)+dict(no_replace,recurse_list)+str()";

/// One part of the user's own, combined into a MIME multipart user data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Its file's name, for `Content-Disposition` (cloud-init names scripts after it).
    pub file_name: String,
    /// What cloud-init takes it for, from its first line.
    pub content_type: &'static str,
    pub content: String,
}

/// The first line of a part, as cloud-init recognises it, and the MIME type that says the
/// same thing. Longest prefix first: `#cloud-config-archive` starts with `#cloud-config`.
const PART_TYPES: [(&str, &str); 6] = [
    ("#cloud-config-archive", "text/cloud-config-archive"),
    ("#cloud-config", "text/cloud-config"),
    ("#cloud-boothook", "text/cloud-boothook"),
    ("#include", "text/x-include-url"),
    ("#part-handler", "text/part-handler"),
    ("#!", "text/x-shellscript"),
];

/// The MIME type cloud-init would give a part that starts like `content`; `None` when
/// cloud-init would not know what to do with it.
pub fn part_type(content: &str) -> Option<&'static str> {
    PART_TYPES
        .iter()
        .find(|(prefix, _)| content.starts_with(prefix))
        .map(|(_, mime)| *mime)
}

pub fn render(node: &Node, parts: &[Part]) -> String {
    let config = cloud_config(node);
    if parts.is_empty() {
        config
    } else {
        multipart(&config, parts)
    }
}

fn cloud_config(node: &Node) -> String {
    let mut out = String::from("#cloud-config\n");
    let _ = write!(
        out,
        "# Amazon Linux 2023 ECS node with diskguard, for cluster {}. Rendered by `diskguard\n\
         # userdata --format cloud-init`: change the command's flags rather than this text.\n",
        node.cluster
    );
    out.push_str("write_files:\n");
    let units = node.diskguard_units();
    let mut files: Vec<(String, u32, String)> = node
        .files()
        .into_iter()
        .map(|file| (file.path.to_owned(), file.mode, file.content))
        .collect();
    for unit in &units {
        files.push((
            format!("{UNIT_DIR}/{}", unit.name),
            0o644,
            unit.content.to_owned(),
        ));
        for (name, content) in &unit.drop_ins {
            files.push((
                format!("{UNIT_DIR}/{}.d/{name}", unit.name),
                0o644,
                (*content).to_owned(),
            ));
        }
    }
    for (path, mode, content) in &files {
        let _ = write!(
            out,
            "  - path: {}\n    permissions: {}\n    owner: \"root:root\"\n",
            quoted(path),
            quoted(&format!("{mode:04o}")),
        );
        // The AMI (or a part of the user's) may already have settings there: add ours,
        // as AWS's own `echo ECS_CLUSTER=… >> /etc/ecs/ecs.config` does.
        if path == ECS_CONFIG {
            out.push_str("    append: true\n");
        }
        let _ = write!(out, "    content: {}", text(content, 6));
    }
    // runcmd runs inside cloud-final.service, and Amazon Linux orders ecs.service after
    // cloud-final.service and diskguard.service after ecs.service: a start that waited for
    // its job would wait for itself. --no-block queues it; systemd starts it once
    // cloud-final is done (and diskguard-install.service first).
    out.push_str("runcmd:\n  - [\"systemctl\", \"daemon-reload\"]\n");
    for unit in units.iter().filter(|u| u.enable) {
        let mut args = vec!["systemctl", "enable"];
        if unit.start {
            args.extend(["--now", "--no-block"]);
        }
        args.push(unit.name);
        let args: Vec<String> = args.into_iter().map(quoted).collect();
        let _ = writeln!(out, "  - [{}]", args.join(", "));
    }
    out
}

/// RFC 2046 multipart/mixed, as cloud-init reads it (and as `cloud-init devel make-mime`
/// writes it): the user's parts in their order, then diskguard's with its merge rule.
fn multipart(config: &str, parts: &[Part]) -> String {
    let ours = Part {
        file_name: "diskguard.cfg".to_owned(),
        content_type: "text/cloud-config",
        content: config.to_owned(),
    };
    let all: Vec<&Part> = parts.iter().chain(std::iter::once(&ours)).collect();
    let boundary = boundary(&all);
    let mut out =
        format!("Content-Type: multipart/mixed; boundary=\"{boundary}\"\nMIME-Version: 1.0\n\n");
    for part in all {
        let _ = write!(
            out,
            "--{boundary}\nContent-Type: {}; charset=\"utf-8\"\nMIME-Version: 1.0\n\
             Content-Disposition: attachment; filename=\"{}\"\n",
            part.content_type,
            file_name(&part.file_name),
        );
        if std::ptr::eq(part, &ours) {
            let _ = writeln!(out, "Merge-Type: {MERGE_TYPE}");
        }
        out.push_str(&body(&part.content));
    }
    let _ = writeln!(out, "--{boundary}--");
    out
}

/// A boundary that no part contains.
fn boundary(parts: &[&Part]) -> String {
    let mut n = 0u32;
    loop {
        let candidate = if n == 0 {
            "==DISKGUARD-PART==".to_owned()
        } else {
            format!("==DISKGUARD-PART-{n}==")
        };
        if !parts.iter().any(|p| p.content.contains(&candidate)) {
            return candidate;
        }
        n += 1;
    }
}

/// A name safe inside the quoted `filename=` parameter.
fn file_name(name: &str) -> String {
    let safe: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .collect();
    if safe.is_empty() {
        "part".to_owned()
    } else {
        safe
    }
}

/// The transfer encoding and the body. ASCII goes as it is (legible in the EC2 console).
/// Anything else goes as base64: cloud-init's parser would hand 8-bit text back in the
/// wrong encoding, so a non-ASCII byte would not arrive as written.
fn body(content: &str) -> String {
    if content.is_ascii() {
        let mut out = format!("Content-Transfer-Encoding: 7bit\n\n{content}");
        if !content.ends_with('\n') {
            out.push('\n');
        }
        out
    } else {
        let encoded = base64::engine::general_purpose::STANDARD.encode(content);
        let mut out = String::from("Content-Transfer-Encoding: base64\n\n");
        // base64 text is ASCII, so every 76-byte slice ends on a character boundary.
        for line in encoded.as_bytes().chunks(76) {
            out.push_str(std::str::from_utf8(line).unwrap_or_default());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> Node {
        Node {
            cluster: "prod".into(),
            release_url: "https://example.com/d.tar.gz".into(),
            sha256: "ab".repeat(32),
            config: None,
        }
    }

    #[test]
    fn part_type_follows_cloud_inits_first_line_rules() {
        assert_eq!(part_type("#!/bin/bash\n"), Some("text/x-shellscript"));
        assert_eq!(part_type("#cloud-config\n"), Some("text/cloud-config"));
        assert_eq!(
            part_type("#cloud-config-archive\n"),
            Some("text/cloud-config-archive")
        );
        assert_eq!(part_type("#cloud-boothook\n"), Some("text/cloud-boothook"));
        assert_eq!(part_type("echo hi\n"), None);
        assert_eq!(part_type("Content-Type: multipart/mixed"), None);
    }

    #[test]
    fn single_part_is_plain_cloud_config_that_queues_diskguard_without_blocking() {
        let text = render(&node(), &[]);
        assert!(text.starts_with("#cloud-config\n"), "{text}");
        assert!(text.contains(
            "\"systemctl\", \"enable\", \"--now\", \"--no-block\", \"diskguard.service\""
        ));
        // Amazon Linux has its own ecs.service: Flatcar's agent unit is not installed.
        assert!(!text.contains("amazon-ecs-agent.service\""), "{text}");
        assert!(text.contains("/etc/systemd/system/diskguard.service.d/10-install.conf"));
        assert!(text.contains("  - path: \"/etc/ecs/ecs.config\"\n    permissions: \"0644\"\n    owner: \"root:root\"\n    append: true\n"));
    }

    #[test]
    fn diskguards_part_comes_last_with_its_merge_rule() {
        let user = Part {
            file_name: "user.sh".into(),
            content_type: "text/x-shellscript",
            content: "#!/bin/sh\necho hi\n".into(),
        };
        let text = render(&node(), &[user]);
        assert!(
            text.starts_with("Content-Type: multipart/mixed; boundary=\"==DISKGUARD-PART==\"\n")
        );
        let script = text.find("filename=\"user.sh\"").expect("user part");
        let ours = text.find("filename=\"diskguard.cfg\"").expect("our part");
        assert!(script < ours, "{text}");
        assert!(text[ours..].contains(&format!("Merge-Type: {MERGE_TYPE}\n")));
        assert!(text.ends_with("--==DISKGUARD-PART==--\n"), "{text}");
    }

    #[test]
    fn boundary_avoids_text_a_part_contains() {
        let part = Part {
            file_name: "x".into(),
            content_type: "text/x-shellscript",
            content: "#!/bin/sh\n# ==DISKGUARD-PART==\n".into(),
        };
        assert_eq!(boundary(&[&part]), "==DISKGUARD-PART-1==");
    }

    #[test]
    fn non_ascii_part_is_base64() {
        let out = body("#!/bin/sh\necho café\n");
        assert!(
            out.starts_with("Content-Transfer-Encoding: base64\n\n"),
            "{out}"
        );
        assert!(body("#!/bin/sh\n").starts_with("Content-Transfer-Encoding: 7bit\n\n"));
    }

    #[test]
    fn file_name_keeps_only_safe_characters() {
        assert_eq!(file_name("my \"script\".sh"), "myscript.sh");
        assert_eq!(file_name("\"\""), "part");
    }
}
