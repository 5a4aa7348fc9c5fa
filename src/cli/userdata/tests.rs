//! The flags' rules and what the rendering carries; the files themselves are checked by
//! `tests/userdata.rs` with the real validators.

use super::*;

fn args(format: Format) -> UserdataArgs {
    UserdataArgs {
        format,
        cluster: "prod".into(),
        release_url: "https://example.com/diskguard.tar.gz".into(),
        sha256: "AB".repeat(32),
        part: Vec::new(),
    }
}

#[test]
fn cluster_name_follows_ecs_rules() {
    assert!(cluster("prod-1_a").is_ok());
    assert!(cluster("").is_err());
    assert!(cluster("has space").is_err());
    assert!(cluster(&"x".repeat(256)).is_err());
}

#[test]
fn release_url_must_be_http_and_plain() {
    assert!(release_url("https://example.com/a.tar.gz?x=1%20").is_ok());
    assert!(release_url("http://127.0.0.1:8080/a.tar.gz").is_ok());
    for bad in [
        "ftp://example.com/a",
        "https://",
        "https:///a",
        "https://example.com/a b",
        "https://example.com/$HOME",
        "https://example.com/a\"b",
    ] {
        assert!(release_url(bad).is_err(), "{bad} accepted");
    }
}

#[test]
fn sha256_is_64_hex_digits_kept_in_lower_case() {
    assert_eq!(sha256(&"AB".repeat(32)).ok(), Some("ab".repeat(32)));
    assert!(sha256("abc").is_err());
    assert!(sha256(&"g".repeat(64)).is_err());
}

#[test]
fn every_format_carries_the_cluster_url_and_hash() {
    for format in [Format::CloudConfig, Format::Ignition, Format::CloudInit] {
        let text = render(&args(format), None).expect("valid flags");
        assert!(text.contains("ECS_CLUSTER"), "{format:?}");
        assert!(
            text.contains("https://example.com/diskguard.tar.gz"),
            "{format:?}"
        );
        assert!(text.contains(&"ab".repeat(32)), "{format:?}");
    }
}

#[test]
fn ignition_file_entry_carries_verification_hash() {
    let text = render(&args(Format::Ignition), None).expect("valid flags");
    let config: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let tarball = config["storage"]["files"]
        .as_array()
        .and_then(|files| files.iter().find(|f| f["path"] == node::TARBALL_PATH))
        .expect("tarball entry");
    assert_eq!(
        tarball["contents"]["verification"]["hash"],
        format!("sha256-{}", "ab".repeat(32))
    );
}

#[test]
fn config_file_that_does_not_validate_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[thresholds]\ndran = 90\n").expect("write");
    let err = render(&args(Format::CloudConfig), Some(&path)).expect_err("bad config");
    assert!(err.to_string().contains("thresholds.dran"), "{err}");
}

#[test]
fn config_file_is_embedded_as_written() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("diskguard.toml");
    std::fs::write(&path, "# ours\nmode = \"observe\"\n").expect("write");
    let text = render(&args(Format::CloudConfig), Some(&path)).expect("valid");
    assert!(
        text.contains("      # ours\n      mode = \"observe\"\n"),
        "{text}"
    );
}

#[test]
fn parts_combine_only_with_cloud_init() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("user.sh");
    std::fs::write(&path, "#!/bin/sh\necho hi\n").expect("write");
    for format in [Format::CloudConfig, Format::Ignition] {
        let mut a = args(format);
        a.part.push(path.clone());
        assert!(matches!(
            render(&a, None),
            Err(UserdataError::PartNeedsCloudInit)
        ));
    }
    let mut a = args(Format::CloudInit);
    a.part.push(path);
    let text = render(&a, None).expect("valid part");
    assert!(text.starts_with("Content-Type: multipart/mixed"), "{text}");
    assert!(text.contains("Content-Type: text/x-shellscript"), "{text}");
}

#[test]
fn part_cloud_init_would_not_know_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "echo hi\n").expect("write");
    let mut a = args(Format::CloudInit);
    a.part.push(path);
    let err = render(&a, None).expect_err("not a part");
    let message = err.to_string();
    assert!(
        message.contains("notes.txt") && message.contains("#!"),
        "{message}"
    );
}
