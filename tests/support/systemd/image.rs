//! The root filesystem the install tests boot with systemd as PID 1: Debian bookworm
//! (minbase) with systemd, dbus, curl and CA certificates, made by debootstrap from the
//! Debian mirror this machine's apt already uses. Built once (~1 min) and cached as a
//! tarball under `/var/cache/diskguard-tests` (`$DISKGUARD_TEST_CACHE`), named by a hash of
//! the recipe, so a changed recipe builds a new one; a fresh machine builds it on first use.
//!
//! [`Recipe::CloudInit`] is the same tree with Debian's cloud-init added, for the tests that
//! apply Amazon Linux user data with the real cloud-init: a second cached tarball, so the
//! other install tests keep booting the small image.

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

/// Which root filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipe {
    /// systemd, dbus, curl, CA certificates.
    Systemd,
    /// The same with cloud-init, told to read only the NoCloud seed and to leave the
    /// network alone (the container shares the host's).
    CloudInit,
}

/// What the cloud-init image's `/etc/cloud/cloud.cfg.d/90-diskguard-tests.cfg` says, and why.
pub const CLOUD_INIT_CFG: &str = "\
# diskguard's tests: the user data comes from a NoCloud seed in /var/lib/cloud/seed/nocloud.
datasource_list: [NoCloud]
# The container runs in the host's network namespace: cloud-init must not configure it.
network: {config: disabled}
# No default login user: the image has no sudo and none of the groups Debian's default
# user joins, and the user data under test creates none.
users: []
# The minbase tree has no locales package (update-locale fails): leave the locale alone.
locale: false
";

impl Recipe {
    /// The recipe's text, hashed into the cache key.
    fn text(self) -> String {
        let base = format!("debootstrap --variant=minbase --include={PACKAGES} {SUITE}; {AFTER}");
        match self {
            Recipe::Systemd => base,
            Recipe::CloudInit => format!(
                "{base}; apt-get install --no-install-recommends cloud-init; {AFTER}; \
                 cloud.cfg.d/90-diskguard-tests.cfg:\n{CLOUD_INIT_CFG}"
            ),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Recipe::Systemd => "systemd",
            Recipe::CloudInit => "systemd-cloud-init",
        }
    }
}
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
fn recipe_key(recipe: Recipe) -> String {
    let hash = recipe
        .text()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    format!("{hash:016x}")
}

/// The image reference the tarball is imported as.
pub fn image_reference(recipe: Recipe) -> String {
    format!("diskguard-{}:{}", recipe.name(), recipe_key(recipe))
}

/// The cached tarball, built first when missing. One build at a time, across test
/// threads (a mutex) and test processes (a lock file).
pub fn rootfs_tarball(recipe: Recipe) -> PathBuf {
    // The cloud-init tree starts from the plain one: have it first, before taking the locks.
    let base = (recipe == Recipe::CloudInit).then(|| rootfs_tarball(Recipe::Systemd));
    static IN_PROCESS: Mutex<()> = Mutex::new(());
    let _guard = IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = cache_dir();
    let tarball = dir.join(format!(
        "{}-{SUITE}-{}.tar",
        recipe.name(),
        recipe_key(recipe)
    ));
    if tarball.exists() {
        return tarball;
    }
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let lock = File::create(dir.join(".lock"))
        .unwrap_or_else(|e| panic!("creating {}/.lock: {e}", dir.display()));
    let _lock = Flock::lock(lock, FlockArg::LockExclusive)
        .unwrap_or_else(|(_, e)| panic!("locking {}/.lock: {e}", dir.display()));
    if !tarball.exists() {
        match base {
            None => build(&tarball),
            Some(base) => build_cloud_init(&base, &tarball),
        }
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
    finish(&root, tarball);
}

/// The plain tree plus cloud-init, installed by apt in a chroot (debootstrap's --include
/// cannot configure cloud-init's Python dependencies in its base stage) from the mirror
/// debootstrap wrote into the tree's sources.list; then trimmed as the plain one is.
fn build_cloud_init(base: &Path, tarball: &Path) {
    let work = temp_dir("rootfs");
    let root = work.path().join("rootfs");
    std::fs::create_dir(&root).unwrap_or_else(|e| panic!("mkdir {}: {e}", root.display()));
    eprintln!(
        "building the systemd-cloud-init test image (cloud-init added to {}; cached as {})",
        base.display(),
        tarball.display()
    );
    run_ok(
        Command::new(binary(Bin::Tar))
            .args(["--numeric-owner", "-xf"])
            .arg(base)
            .arg("-C")
            .arg(&root),
    );
    let resolv = root.join("etc/resolv.conf");
    let _ = std::fs::remove_file(&resolv);
    std::fs::copy("/etc/resolv.conf", &resolv)
        .unwrap_or_else(|e| panic!("copying /etc/resolv.conf into {}: {e}", root.display()));
    run_ok(
        Command::new("/usr/sbin/chroot")
            .arg(&root)
            .args([
                "sh",
                "-c",
                "set -e; apt-get update -qq; DEBIAN_FRONTEND=noninteractive \
                 apt-get install -y -qq --no-install-recommends cloud-init >/dev/null",
            ])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
    );
    std::fs::write(&resolv, "").expect("emptying etc/resolv.conf");
    let cfg = root.join("etc/cloud/cloud.cfg.d/90-diskguard-tests.cfg");
    std::fs::write(&cfg, CLOUD_INIT_CFG)
        .unwrap_or_else(|e| panic!("writing {}: {e}", cfg.display()));
    finish(&root, tarball);
}

/// Trims the tree and packs it as the cached tarball.
fn finish(root: &Path, tarball: &Path) {
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
            .arg(root)
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
    import_recipe(d, Recipe::Systemd)
}

/// [`import`] for another recipe.
pub fn import_recipe(d: &Dockerd, recipe: Recipe) -> String {
    let tarball = rootfs_tarball(recipe);
    let reference = image_reference(recipe);
    docker_ok(d, &["import", &tarball.display().to_string(), &reference]);
    reference
}
