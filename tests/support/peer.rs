//! Shared plumbing for the real peers: finding binaries (and failing loudly
//! when one is missing), temp dirs, free ports, readiness polling, a tiny
//! HTTP/1.0 client, and a process guard that never outlives the test.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

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
    super::dockerd::sweep_stale_once();
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

/// Runs `cmd` to completion; panics with the command line, status and stderr
/// on failure. Returns trimmed stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = run_raw(cmd);
    if !out.status.success() {
        panic!(
            "`{}` failed ({}):\nstderr: {}\nstdout: {}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Runs `cmd`, panicking only if it could not be started at all.
pub fn run_raw(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot start `{}`: {e}", describe(cmd)))
}

pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// A long-running peer. It gets its own process group (so a terminal ^C hits
/// only the test) and a parent-death SIGKILL via `setpriv`, so a test process
/// that is killed outright does not leave it running. The death signal is
/// tied to the spawning *thread*: keep the guard on the thread that made it.
#[derive(Debug)]
pub struct PeerProcess {
    name: String,
    child: Child,
    log: PathBuf,
}

impl PeerProcess {
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        log: &Path,
        env: &[(&str, &str)],
    ) -> Self {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("opening log {}: {e}", log.display()));
        let log_err = log_file.try_clone().expect("duplicating log file handle");
        let mut cmd = Command::new(binary(Bin::Setpriv));
        cmd.args(["--pdeathsig", "KILL", "--"])
            .arg(program)
            .args(args);
        cmd.envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{}`: {e}", describe(&cmd)));
        PeerProcess {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once the peer has exited (it is reaped here).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Last lines of the peer's combined stdout/stderr, for panic messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        format!(
            "--- last lines of {} ({}) ---\n{tail}",
            self.name,
            self.log.display()
        )
    }

    /// Waits for `probe`, failing fast (with the log) if the peer dies first.
    pub fn wait_ready(
        &mut self,
        timeout: Duration,
        mut probe: impl FnMut() -> bool,
    ) -> Result<(), String> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(5);
        loop {
            if probe() {
                return Ok(());
            }
            if let Some(status) = self.exited() {
                return Err(format!(
                    "{} exited ({status}) before it was ready\n{}",
                    self.name,
                    self.log_tail()
                ));
            }
            if start.elapsed() > timeout {
                return Err(format!(
                    "{} not ready after {timeout:?}\n{}",
                    self.name,
                    self.log_tail()
                ));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// SIGTERM to the group, up to `grace` to exit, then SIGKILL. Reaps it.
    pub fn stop(&mut self, grace: Duration) {
        if self.exited().is_some() {
            return;
        }
        let pgid = Pid::from_raw(self.child.id() as i32);
        let _ = killpg(pgid, Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill9();
    }

    /// SIGKILL to the peer's process group, then reap it.
    pub fn kill9(&mut self) {
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.0 request over TCP (`addr` is `host:port`).
pub fn http_tcp(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<HttpResponse> {
    let stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    http_exchange(stream, addr, method, path, headers, body)
}

/// One HTTP/1.0 request over a unix socket (the Docker API).
pub fn http_unix(
    socket: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<HttpResponse> {
    let stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    http_exchange(stream, "localhost", method, path, headers, body)
}

// HTTP/1.0 so servers close the connection and (normally) do not chunk: the
// whole response is then simply "read to EOF".
fn http_exchange(
    mut s: impl Read + Write,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<HttpResponse> {
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    s.flush()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_response(&raw).ok_or_else(|| {
        std::io::Error::other(format!(
            "malformed HTTP response: {:?}",
            String::from_utf8_lossy(&raw)
        ))
    })
}

fn parse_response(raw: &[u8]) -> Option<HttpResponse> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut resp = HttpResponse {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    };
    if resp
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        resp.body = dechunk(&resp.body)?;
    }
    Some(resp)
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n")?;
        let size_field = std::str::from_utf8(&data[..eol]).ok()?;
        let size = usize::from_str_radix(size_field.split(';').next()?.trim(), 16).ok()?;
        data = &data[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}
