//! The release artifacts of this commit (`make test` builds them with scripts/release.sh):
//! the tarball's contents and checksum, the static binary alone in an empty image, and the
//! sysext's layout, listed from the squashfs itself.

use diskguard_testkit as support;

use std::path::Path;
use std::process::Command;

use support::Dockerd;
use support::docker::images::docker_ok;
use support::fs::loopfs::LoopFsOptions;
use support::processes::peer::{Bin, binary, run_ok, run_raw, temp_dir};
use support::systemd::release::artifacts;

fn repo(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {}: {e}", full.display()))
}

/// Unpacks the tarball into a temp dir; returns the dir and the top directory's name.
fn unpack() -> (tempfile::TempDir, String) {
    let release = artifacts();
    let dir = temp_dir("tarball");
    run_ok(
        Command::new(binary(Bin::Tar))
            .arg("-xzf")
            .arg(&release.tarball)
            .arg("-C")
            .arg(dir.path()),
    );
    (dir, format!("diskguard-{}-x86_64-linux", release.version))
}

#[test]
fn tarball_holds_binary_unit_default_config_and_readme_and_its_sha256_matches() {
    let release = artifacts();
    let listing = run_ok(
        Command::new(binary(Bin::Tar))
            .arg("-tzf")
            .arg(&release.tarball),
    );
    let top = format!("diskguard-{}-x86_64-linux", release.version);
    let mut names: Vec<&str> = listing.lines().collect();
    names.sort_unstable();
    let expected: Vec<String> = [
        "",
        "README.md",
        "diskguard",
        "diskguard.service",
        "diskguard.toml",
    ]
    .iter()
    .map(|f| format!("{top}/{f}"))
    .collect();
    assert_eq!(names, expected);

    let (dir, top) = unpack();
    let root = dir.path().join(&top);
    let read = |f: &str| std::fs::read_to_string(root.join(f)).expect("unpacked file");
    assert_eq!(read("diskguard.service"), repo("units/diskguard.service"));
    assert_eq!(read("README.md"), repo("README.md"));
    let defaults =
        run_raw(Command::new(env!("CARGO_BIN_EXE_diskguard")).args(["config", "defaults"]));
    assert_eq!(
        read("diskguard.toml"),
        String::from_utf8_lossy(&defaults.stdout)
    );

    let sum = run_ok(Command::new(binary(Bin::Sha256sum)).arg(&release.tarball));
    assert_eq!(
        sum.split_whitespace().next(),
        Some(release.tarball_sha256.as_str())
    );
}

#[test]
fn static_binary_prints_its_commit_in_an_image_holding_nothing_else() {
    let release = artifacts();
    let (dir, top) = unpack();
    let bin = dir.path().join(&top).join("diskguard");
    let headers = run_ok(
        Command::new(binary(Bin::Readelf))
            .arg("--program-headers")
            .arg(&bin),
    );
    assert!(
        !headers.contains("INTERP"),
        "the release binary asks for a dynamic loader:\n{headers}"
    );

    // An image whose whole filesystem is the binary: no libc, no loader, no shell.
    let image_dir = temp_dir("scratch");
    std::fs::copy(&bin, image_dir.path().join("diskguard")).expect("copying the binary");
    let tar = image_dir.path().join("image.tar");
    run_ok(
        Command::new(binary(Bin::Tar))
            .arg("-C")
            .arg(image_dir.path())
            .args(["--numeric-owner", "-cf"])
            .arg(&tar)
            .arg("diskguard"),
    );
    let d = Dockerd::start_on_loopfs(&LoopFsOptions::new(256));
    docker_ok(
        &d,
        &["import", &tar.display().to_string(), "diskguard-alone:test"],
    );
    let out = docker_ok(
        &d,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "diskguard-alone:test",
            "/diskguard",
            "--version",
        ],
    );
    assert_eq!(
        out,
        format!(
            "diskguard {} (git {})",
            release
                .version
                .trim_end_matches(&format!("-{}", release.sha)),
            release.sha
        )
    );
}

#[test]
fn sysext_image_has_flatcars_layout_and_extension_release() {
    let release = artifacts();
    let listing = run_ok(
        Command::new(binary(Bin::Unsquashfs))
            .args(["-lls", "-d", ""])
            .arg(&release.sysext),
    );
    // "-rwxr-xr-x root/root 123 2026-11-28 19:13 /usr/bin/diskguard"; the root has no path.
    let mut files: Vec<String> = listing
        .lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            (fields.len() >= 6).then(|| fields[5..].join(" "))
        })
        .collect();
    files.sort();
    let expected = [
        "/usr",
        "/usr/bin",
        "/usr/bin/diskguard",
        "/usr/lib",
        "/usr/lib/extension-release.d",
        "/usr/lib/extension-release.d/extension-release.diskguard",
        "/usr/lib/systemd",
        "/usr/lib/systemd/system",
        "/usr/lib/systemd/system/diskguard.service",
        "/usr/lib/systemd/system/diskguard.service.d",
        "/usr/lib/systemd/system/diskguard.service.d/10-sysext.conf",
        "/usr/lib/systemd/system/multi-user.target.d",
        "/usr/lib/systemd/system/multi-user.target.d/10-diskguard.conf",
    ];
    assert_eq!(files, expected, "unsquashfs -lls:\n{listing}");
    // Owned by root, the binary executable.
    for line in listing
        .lines()
        .filter(|l| l.ends_with("/usr/bin/diskguard"))
    {
        assert!(line.starts_with("-rwxr-xr-x root/root"), "{line}");
    }

    let cat = |path: &str| {
        run_ok(
            Command::new(binary(Bin::Unsquashfs))
                .arg("-cat")
                .arg(&release.sysext)
                .arg(path),
        ) + "\n"
    };
    let extension_release = cat("usr/lib/extension-release.d/extension-release.diskguard");
    assert!(
        extension_release.lines().any(|l| l == "ID=flatcar")
            && extension_release.lines().any(|l| l == "SYSEXT_LEVEL=1.0"),
        "{extension_release}"
    );
    assert_eq!(
        cat("usr/lib/systemd/system/diskguard.service"),
        repo("units/diskguard.service")
    );
    assert_eq!(
        cat("usr/lib/systemd/system/diskguard.service.d/10-sysext.conf"),
        repo("units/sysext/diskguard.service.d/10-sysext.conf")
    );
    let upholds = cat("usr/lib/systemd/system/multi-user.target.d/10-diskguard.conf");
    assert!(upholds.contains("Upholds=diskguard.service"), "{upholds}");
}
