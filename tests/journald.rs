//! Logs reach a real systemd-journald with their structured fields when stderr is the
//! journal (`JOURNAL_STREAM` names it), and nothing is written to stderr then.

use diskguard_testkit as support;

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::LoopFs;
use support::processes::peer::{Bin, PeerProcess, binary, temp_dir};

const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// The machine's journald if one is listening, else one started for this test (it runs
/// standalone and creates its own sockets).
fn journald() -> Option<(PeerProcess, tempfile::TempDir)> {
    let listening = UnixDatagram::unbound()
        .and_then(|s| s.connect(JOURNAL_SOCKET))
        .is_ok();
    if listening {
        return None;
    }
    let dir = temp_dir("journald");
    let log = dir.path().join("journald.log");
    let program = binary(Bin::Journald);
    let p = PeerProcess::spawn("systemd-journald", &program, &[], &log, &[]);
    let start = Instant::now();
    while UnixDatagram::unbound()
        .and_then(|s| s.connect(JOURNAL_SOCKET))
        .is_err()
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "systemd-journald did not open {JOURNAL_SOCKET}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Some((p, dir))
}

#[test]
fn logs_go_to_journald_with_structured_fields() {
    let _journald = journald();
    let mut fs = LoopFs::new(64);
    fs.fill_to_used_percent(85.0);
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("diskguard.toml");
    std::fs::write(
        &config,
        format!(
            "[docker]\nroot = {:?}\nhost = \"unix:///nonexistent.sock\"\n[etcd]\nenabled = false\n",
            fs.path().display().to_string()
        ),
    )
    .expect("config");
    // What systemd does for a service: stderr is a journal stream, named in JOURNAL_STREAM.
    let stderr_path = tmp.path().join("stderr");
    let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
    let meta = stderr.metadata().expect("stat");
    let child = Command::new(env!("CARGO_BIN_EXE_diskguard"))
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .env_remove("NOTIFY_SOCKET")
        .stderr(Stdio::from(stderr))
        .spawn()
        .expect("diskguard starts");
    let pid = child.id();
    std::thread::sleep(Duration::from_millis(2500));
    kill(Pid::from_raw(pid as i32), Signal::SIGTERM).expect("SIGTERM");
    let status = child.wait_with_output().expect("wait").status;
    assert_eq!(status.code(), Some(0));

    let out = Command::new(binary(Bin::Journalctl))
        .args(["-o", "json", "--no-pager", &format!("_PID={pid}")])
        .output()
        .expect("journalctl");
    let entries: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let level = entries
        .iter()
        .find(|e| {
            e["MESSAGE"]
                .as_str()
                .is_some_and(|m| m.contains("entered level prune"))
        })
        .unwrap_or_else(|| panic!("no level change in the journal: {entries:#?}"));
    assert_eq!(level["SYSLOG_IDENTIFIER"], "diskguard");
    assert_eq!(level["VOLUME"], "docker");
    assert_eq!(level["LEVEL"], "prune");
    assert_eq!(level["PRIORITY"], "4", "a warning");
    assert!(
        level["USAGE_PERCENT"]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(|v| v >= 85.0)
    );
    assert!(entries.iter().any(|e| {
        e["MESSAGE"]
            .as_str()
            .is_some_and(|m| m.contains("local mode"))
    }));
    assert!(entries.iter().any(|e| e["MESSAGE"] == "stopped"));
    let stderr_text = std::fs::read_to_string(&stderr_path).expect("read stderr");
    assert!(
        stderr_text.is_empty(),
        "nothing doubled on stderr: {stderr_text}"
    );
}
