//! `diskguard run` under a real notify socket: READY, STATUS on change, WATCHDOG at half
//! of WATCHDOG_USEC, STOPPING on SIGTERM, and a clean exit.

use diskguard_testkit as support;

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::LoopFs;

/// Datagrams received, with when they arrived.
struct Heard {
    messages: Vec<(Instant, String)>,
}

impl Heard {
    fn listen(
        sock: &UnixDatagram,
        until: impl Fn(&[(Instant, String)]) -> bool,
        limit: Duration,
    ) -> Heard {
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let start = Instant::now();
        let mut messages = Vec::new();
        let mut buf = [0u8; 4096];
        while start.elapsed() < limit && !until(&messages) {
            if let Ok(n) = sock.recv(&mut buf) {
                messages.push((
                    Instant::now(),
                    String::from_utf8_lossy(&buf[..n]).into_owned(),
                ));
            }
        }
        Heard { messages }
    }

    fn with(&self, key: &str) -> Vec<&(Instant, String)> {
        self.messages
            .iter()
            .filter(|(_, m)| m.lines().any(|l| l.starts_with(key)))
            .collect()
    }
}

/// The daemon under test, killed if a failed assertion leaves it running (it would hold
/// the test's stdout and outlive it).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn start(config: &Path, notify_socket: &str, watchdog_usec: u64) -> Running {
    let child = Command::new(env!("CARGO_BIN_EXE_diskguard"))
        .args(["--config"])
        .arg(config)
        .arg("run")
        .env("NOTIFY_SOCKET", notify_socket)
        .env("WATCHDOG_USEC", watchdog_usec.to_string())
        .env_remove("WATCHDOG_PID")
        .env_remove("JOURNAL_STREAM")
        .stderr(Stdio::piped())
        .spawn()
        .expect("diskguard starts");
    Running(child)
}

fn write_config(dir: &Path, root: &Path) -> std::path::PathBuf {
    let path = dir.join("diskguard.toml");
    std::fs::write(
        &path,
        format!(
            // A socket that does not exist: these tests must never reach the host's Docker.
            // Docker's volume alone: the default [[watch]] of / would be a good sample too.
            "watch = []\n[sample]\ninterval = \"200ms\"\n[docker]\nroot = {:?}\nhost = \"unix:///nonexistent/docker.sock\"\n[etcd]\nenabled = false\n",
            root.display().to_string()
        ),
    )
    .expect("config");
    path
}

/// Sends SIGTERM, expects STOPPING=1 and exit 0 within 2 s; returns stderr.
fn stop(mut running: Running, sock: &UnixDatagram) -> String {
    let child = &mut running.0;
    let sent = Instant::now();
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("SIGTERM");
    let heard = Heard::listen(
        sock,
        |m| m.iter().any(|(_, s)| s.contains("STOPPING=1")),
        Duration::from_secs(3),
    );
    assert!(
        !heard.with("STOPPING=1").is_empty(),
        "no STOPPING=1 after SIGTERM"
    );
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(2),
            "still running 2 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "exit code after SIGTERM");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("piped"), &mut err)
        .expect("stderr");
    err
}

fn notify_protocol_holds(sock: UnixDatagram, socket_name: &str) {
    let mut fs = LoopFs::new(64);
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = write_config(tmp.path(), fs.path());
    // 1 s watchdog: diskguard must ping every 500 ms.
    let child = start(&config, socket_name, 1_000_000);

    let ready = Heard::listen(
        &sock,
        |m| m.iter().any(|(_, s)| s.contains("READY=1")),
        Duration::from_secs(10),
    );
    let first = ready
        .messages
        .first()
        .map(|(_, m)| m.as_str())
        .unwrap_or("");
    assert!(
        first.contains("READY=1"),
        "READY=1 comes first, got {:?}",
        ready.messages
    );
    assert!(
        first.contains("STATUS=docker "),
        "READY carries the summary: {first}"
    );
    assert!(first.contains("local mode"), "{first}");

    // Push the disk past prune_start: the summary changes, so a STATUS= follows.
    fs.fill_to_used_percent(85.0);
    let heard = Heard::listen(
        &sock,
        |m| m.iter().any(|(_, s)| s.contains("prune")),
        Duration::from_secs(5),
    );
    let statuses = heard.with("STATUS=");
    assert!(
        statuses.iter().any(|(_, s)| s.contains("(prune→70%)")),
        "STATUS= after the level changed: {:?}",
        heard.messages
    );
    // The fill may still be landing when the first prune STATUS= goes out (84 % then
    // 85 %): wait until the summary matches the final usage before listening for quiet.
    let settled = format!("STATUS=docker {:.0}%", fs.usage().used_percent().round());
    if !statuses.iter().any(|(_, s)| s.contains(&settled)) {
        Heard::listen(
            &sock,
            |m| m.iter().any(|(_, s)| s.contains(&settled)),
            Duration::from_secs(5),
        );
    }
    // Over 3 s, WATCHDOG=1 about every 500 ms and never a gap the watchdog would punish.
    let heard = Heard::listen(&sock, |_| false, Duration::from_secs(3));
    let pings = heard.with("WATCHDOG=1");
    assert!(pings.len() >= 4, "{} pings in 3 s", pings.len());
    for pair in pings.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(gap < Duration::from_secs(1), "watchdog gap {gap:?}");
    }
    assert!(
        heard.with("STATUS=").is_empty(),
        "STATUS= is sent on change only: {:?}",
        heard.messages
    );

    let stderr = stop(child, &sock);
    assert!(
        stderr.contains("local mode"),
        "first log lines say local mode: {stderr}"
    );
    assert!(
        stderr.contains("entered level prune"),
        "level change is logged: {stderr}"
    );
    assert_eq!(
        stderr.matches("entered level prune").count(),
        1,
        "logged once, not every tick"
    );
}

#[test]
fn notify_protocol_over_a_path_socket() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind notify socket");
    notify_protocol_holds(sock, &path.display().to_string());
}

#[test]
fn notify_protocol_over_an_abstract_socket() {
    let name = format!("diskguard-test-{}", std::process::id());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract address");
    let sock = UnixDatagram::bind_addr(&addr).expect("bind abstract socket");
    notify_protocol_holds(sock, &format!("@{name}"));
}

#[test]
fn not_ready_until_a_volume_can_be_read_and_still_stops_cleanly() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind");
    let config = write_config(tmp.path(), &tmp.path().join("missing-root"));
    let child = start(&config, &path.display().to_string(), 1_000_000);
    let heard = Heard::listen(&sock, |_| false, Duration::from_secs(2));
    assert!(
        heard.with("READY=1").is_empty(),
        "READY=1 before any good sample"
    );
    assert!(
        !heard.with("WATCHDOG=1").is_empty(),
        "the watchdog is fed while waiting"
    );
    let stderr = stop(child, &sock);
    assert_eq!(
        stderr.matches("does not exist").count(),
        1,
        "said once: {stderr}"
    );
}

#[test]
fn an_idle_agent_stops_without_waiting_for_any_actor() {
    // Local mode, no Docker, CloudWatch off: every actor is idle or still setting up, so
    // SIGTERM must find each of them ready to stop — none waits out the shutdown grace.
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind");
    let config = write_config(tmp.path(), tmp.path());
    let child = start(&config, &path.display().to_string(), 0);
    let ready = Heard::listen(
        &sock,
        |m| m.iter().any(|(_, s)| s.contains("READY=1")),
        Duration::from_secs(10),
    );
    assert!(!ready.with("READY=1").is_empty(), "READY=1");
    std::thread::sleep(Duration::from_millis(500));
    let stderr = stop(child, &sock);
    assert!(
        !stderr.contains("did not finish"),
        "an idle actor held up the exit: {stderr}"
    );
}
