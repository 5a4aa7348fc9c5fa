//! The root filesystem the install tests boot with systemd as PID 1: Debian bookworm
//! (minbase) with systemd, dbus, curl and CA certificates, made by debootstrap from the
//! Debian mirror this machine's apt already uses. Built once (~1 min) and cached as a
//! tarball under `/var/cache/diskguard-tests` (`$DISKGUARD_TEST_CACHE`), named by a hash of
//! the recipe, so a changed recipe builds a new one; a fresh machine builds it on first use.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use nix::fcntl::{Flock, FlockArg};

use crate::docker::dockerd::Dockerd;
use crate::docker::images::docker_ok;
use crate::processes::peer::{Bin, binary, run_ok, temp_dir};

const SUITE: &str = "bookworm";
const PACKAGES: &str = "systemd,systemd-sysv,dbus,curl,ca-certificates";
/// What the tests do to the tree after debootstrap; part of the cache key.
const AFTER: &str = "trim docs, man pages, locales and apt lists; empty machine-id";
const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

fn cache_dir() -> PathBuf {
    std::env::var_os("DISKGUARD_TEST_CACHE")
        .filter(|v| !v.is_empty())
        .map_or_else(
            || PathBuf::from("/var/cache/diskguard-tests"),
            PathBuf::from,
        )
}

/// FNV-1a: stable across Rust releases, unlike `DefaultHasher`.
fn recipe_key() -> String {
    let recipe = format!("debootstrap --variant=minbase --include={PACKAGES} {SUITE}; {AFTER}");
    let hash = recipe.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}")
}

/// The image reference the tarball is imported as.
pub fn image_reference() -> String {
    format!("diskguard-systemd:{}", recipe_key())
}

/// The cached tarball, built first when missing. One build at a time, across test
/// threads (a mutex) and test processes (a lock file).
pub fn rootfs_tarball() -> PathBuf {
    static IN_PROCESS: Mutex<()> = Mutex::new(());
    let _guard = IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = cache_dir();
    let tarball = dir.join(format!("systemd-{SUITE}-{}.tar", recipe_key()));
    if tarball.exists() {
        return tarball;
    }
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let lock = File::create(dir.join(".lock"))
        .unwrap_or_else(|e| panic!("creating {}/.lock: {e}", dir.display()));
    let _lock = Flock::lock(lock, FlockArg::LockExclusive)
        .unwrap_or_else(|(_, e)| panic!("locking {}/.lock: {e}", dir.display()));
    if !tarball.exists() {
        build(&tarball);
    }
    tarball
}

fn build(tarball: &Path) {
    let debootstrap = binary(Bin::Debootstrap);
    let work = temp_dir("rootfs");
    let root = work.path().join("rootfs");
    let mirror = debian_mirror();
    eprintln!(
        "building the systemd test image ({SUITE} from {mirror}; cached as {})",
        tarball.display()
    );
    run_ok(
        Command::new(debootstrap)
            .arg("--variant=minbase")
            .arg(format!("--include={PACKAGES}"))
            .arg(SUITE)
            .arg(&root)
            .arg(&mirror),
    );
    for dir in [
        "usr/share/doc",
        "usr/share/man",
        "usr/share/locale",
        "var/lib/apt/lists",
    ] {
        let path = root.join(dir);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
    }
    // Empty: systemd then makes one per container boot instead of all sharing one.
    std::fs::write(root.join("etc/machine-id"), "").expect("emptying etc/machine-id");
    let partial = tarball.with_extension("tar.partial");
    run_ok(
        Command::new(binary(Bin::Tar))
            .arg("-C")
            .arg(&root)
            .args(["--numeric-owner", "-cf"])
            .arg(&partial)
            .arg("."),
    );
    std::fs::rename(&partial, tarball).unwrap_or_else(|e| {
        panic!(
            "renaming {} to {}: {e}",
            partial.display(),
            tarball.display()
        )
    });
}

/// The first bookworm mirror in apt's sources (deb822 or one-line style), else Debian's CDN.
fn debian_mirror() -> String {
    let mut texts = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/etc/apt/sources.list.d") {
        for entry in entries.flatten() {
            texts.push(std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
    }
    texts.push(std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default());
    for text in &texts {
        for stanza in text.split("\n\n") {
            let field = |name: &str| {
                stanza
                    .lines()
                    .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
            };
            if let (Some(uris), Some(suites)) = (field("URIs:"), field("Suites:")) {
                if suites.split_whitespace().any(|s| s == SUITE) && uris.contains("debian") {
                    if let Some(uri) = uris.split_whitespace().next() {
                        return uri.to_owned();
                    }
                }
            }
        }
        for line in text.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            if let ["deb", uri, suite, ..] = words.as_slice() {
                if *suite == SUITE && uri.contains("debian") {
                    return (*uri).to_owned();
                }
            }
        }
    }
    DEFAULT_MIRROR.to_owned()
}

/// Imports the cached root filesystem into `d` (about 6 s) and returns its reference.
pub fn import(d: &Dockerd) -> String {
    let tarball = rootfs_tarball();
    let reference = image_reference();
    docker_ok(d, &["import", &tarball.display().to_string(), &reference]);
    reference
}
