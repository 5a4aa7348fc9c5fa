//! Shared plumbing for the real peers: finding binaries (and failing loudly
//! when one is missing), temp dirs, free ports and readiness polling.

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The HTTP client and the process helpers, at the paths they had before they
/// moved to `http_client.rs` and `procs.rs`.
pub use crate::network::http_client::{HttpResponse, http_tcp, http_unix};
pub use crate::processes::procs::{PeerProcess, describe, run_ok, run_raw, run_said};

/// The external programs the harness drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bin {
    Dockerd,
    Docker,
    Busybox,
    Etcd,
    MotoServer,
    MkfsExt4,
    Mount,
    Umount,
    Losetup,
    Setpriv,
    Tar,
    Journald,
    Journalctl,
    Registry,
    Debootstrap,
    SystemdAnalyze,
    IgnitionValidate,
    Unsquashfs,
    Unshare,
    Readelf,
    Sha256sum,
    Prometheus,
    Promtool,
    CloudInit,
}

impl Bin {
    /// (program, what installs it, paths tried before PATH). Fixed paths come
    /// first because the tests are written against Debian's packages, and
    /// some machines also have a newer docker CLI in /usr/local/bin.
    fn spec(self) -> (&'static str, &'static str, &'static [&'static str]) {
        match self {
            Bin::Dockerd => (
                "dockerd",
                "apt-get install docker.io",
                &["/usr/sbin/dockerd"],
            ),
            Bin::Docker => ("docker", "apt-get install docker.io", &["/usr/bin/docker"]),
            Bin::Busybox => (
                "busybox",
                "apt-get install busybox-static",
                &["/bin/busybox"],
            ),
            Bin::Etcd => ("etcd", "apt-get install etcd-server", &["/usr/bin/etcd"]),
            Bin::MotoServer => (
                "moto_server",
                "a venv at $DISKGUARD_TEST_VENV or /opt/diskguard-test-venv with moto[server]",
                &[],
            ),
            Bin::MkfsExt4 => (
                "mkfs.ext4",
                "apt-get install e2fsprogs",
                &["/usr/sbin/mkfs.ext4"],
            ),
            Bin::Mount => ("mount", "apt-get install mount", &["/usr/bin/mount"]),
            Bin::Umount => ("umount", "apt-get install mount", &["/usr/bin/umount"]),
            Bin::Losetup => ("losetup", "apt-get install mount", &["/usr/sbin/losetup"]),
            Bin::Setpriv => (
                "setpriv",
                "apt-get install util-linux",
                &["/usr/bin/setpriv"],
            ),
            Bin::Tar => ("tar", "apt-get install tar", &["/usr/bin/tar"]),
            Bin::Journald => (
                "systemd-journald",
                "apt-get install systemd",
                &[
                    "/lib/systemd/systemd-journald",
                    "/usr/lib/systemd/systemd-journald",
                ],
            ),
            Bin::Journalctl => (
                "journalctl",
                "apt-get install systemd",
                &["/usr/bin/journalctl", "/bin/journalctl"],
            ),
            Bin::Registry => (
                "docker-registry",
                "apt-get install docker-registry",
                &["/usr/bin/docker-registry"],
            ),
            Bin::Debootstrap => (
                "debootstrap",
                "apt-get install debootstrap",
                &["/usr/sbin/debootstrap"],
            ),
            Bin::SystemdAnalyze => (
                "systemd-analyze",
                "apt-get install systemd",
                &["/usr/bin/systemd-analyze"],
            ),
            Bin::IgnitionValidate => (
                "ignition-validate",
                "apt-get install ignition",
                &["/usr/bin/ignition-validate"],
            ),
            Bin::Unsquashfs => (
                "unsquashfs",
                "apt-get install squashfs-tools",
                &["/usr/bin/unsquashfs"],
            ),
            Bin::Unshare => (
                "unshare",
                "apt-get install util-linux",
                &["/usr/bin/unshare"],
            ),
            Bin::Readelf => ("readelf", "apt-get install binutils", &["/usr/bin/readelf"]),
            Bin::Sha256sum => (
                "sha256sum",
                "apt-get install coreutils",
                &["/usr/bin/sha256sum"],
            ),
            Bin::Prometheus => (
                "prometheus",
                "apt-get install prometheus",
                &["/usr/bin/prometheus"],
            ),
            Bin::Promtool => (
                "promtool",
                "apt-get install prometheus",
                &["/usr/bin/promtool"],
            ),
            Bin::CloudInit => (
                "cloud-init",
                "apt-get install cloud-init",
                &["/usr/bin/cloud-init"],
            ),
        }
    }

    fn candidates(self) -> Vec<PathBuf> {
        let (name, _, fixed) = self.spec();
        let mut out: Vec<PathBuf> = fixed.iter().map(PathBuf::from).collect();
        match self {
            Bin::MotoServer => out.push(test_venv().join("bin/moto_server")),
            // Only the Debian CLI (API 1.41, like the daemon) will do.
            Bin::Docker => return out,
            _ => {}
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        out.extend(std::env::split_paths(&path).map(|d| d.join(name)));
        out
    }
}

/// `$DISKGUARD_TEST_VENV`, default `/opt/diskguard-test-venv` (made by
/// `scripts/test-deps.sh`), where moto_server is looked for first.
pub fn test_venv() -> PathBuf {
    std::env::var_os("DISKGUARD_TEST_VENV")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("/opt/diskguard-test-venv"), PathBuf::from)
}

/// Path of `bin`, or a panic that says how to install it. Never skips.
pub fn binary(bin: Bin) -> PathBuf {
    require_root();
    let (name, hint, _) = bin.spec();
    let Some(path) = bin.candidates().into_iter().find(|p| is_executable(p)) else {
        panic!(
            "{name} not found: run `scripts/test-deps.sh` ({hint}) or `make test`; looked in {:?}",
            bin.candidates()
        )
    };
    // A dynamic busybox cannot run inside an image that has no libc.
    if bin == Bin::Busybox && has_elf_interpreter(&std::fs::read(&path).unwrap_or_default()) {
        panic!(
            "{} is dynamically linked: run `scripts/test-deps.sh` ({hint}) or `make test`",
            path.display()
        );
    }
    path
}

// True for a dynamically linked ELF64-LE binary (it has a PT_INTERP segment).
// Grepping for "ld-linux" is not enough: static glibc binaries contain it too.
fn has_elf_interpreter(elf: &[u8]) -> bool {
    let le = |o: u64, n: usize| {
        let b = elf.get(o as usize..o as usize + n)?;
        Some(b.iter().rev().fold(0u64, |acc, x| acc << 8 | u64::from(*x)))
    };
    let (Some(phoff), Some(size), Some(num)) = (le(0x20, 8), le(0x36, 2), le(0x38, 2)) else {
        return false;
    };
    elf.starts_with(b"\x7fELF\x02\x01") && (0..num).any(|i| le(phoff + i * size, 4) == Some(3))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Loop mounts, private dockerds and mkfs all need root; say so up front
/// instead of failing later with a confusing EPERM.
pub fn require_root() {
    if !nix::unistd::geteuid().is_root() {
        panic!(
            "diskguard integration tests must run as root (they mount loop devices and run dockerd): use `sudo -E cargo test` or `make test`"
        );
    }
}

/// A fresh temp dir named `diskguard-t<pid>-<kind>-XXXX`. The pid lets a later
/// test process clean up after one that was killed before its guards ran.
pub fn temp_dir(kind: &str) -> tempfile::TempDir {
    require_root();
    crate::processes::leftovers::sweep_stale_once();
    tempfile::Builder::new()
        .prefix(&format!("diskguard-t{}-{kind}-", std::process::id()))
        .tempdir()
        .unwrap_or_else(|e| {
            panic!(
                "creating temp dir in {}: {e}",
                std::env::temp_dir().display()
            )
        })
}

/// A loopback port nobody else in this process has been handed. The kernel
/// may still reuse it between our drop and the peer's bind, so peers retry.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut guard = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let handed = guard.get_or_insert_with(HashSet::new);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("binding 127.0.0.1:0 to find a free port")
            .port();
        if handed.insert(port) {
            return port;
        }
    }
}

/// Polls `probe` until it yields a value; panics naming `what` on timeout.
pub fn wait_until<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(v) = probe() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}
