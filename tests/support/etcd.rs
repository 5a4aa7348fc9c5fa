//! A private single-member etcd (Debian's etcd-server, 3.4) on free loopback
//! ports with a small backend quota, optionally on a loop filesystem.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::peer::{Bin, HttpResponse, PeerProcess, binary, free_port, http_tcp, temp_dir};

const READY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct Etcd {
    process: PeerProcess,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    startup: Duration,
    _dir: tempfile::TempDir,
}

impl Etcd {
    /// Data dir in a fresh temp dir on the host filesystem.
    pub fn start(quota_backend_bytes: u64) -> Self {
        Self::launch(quota_backend_bytes, None)
    }

    /// Data dir at `<parent>/etcd` (e.g. a [`super::loopfs::LoopFs`] mount,
    /// which must outlive this guard). etcd preallocates the current and the
    /// next 64 MB WAL segment at first boot and dies with ENOSPC without
    /// them: give the fs ≥ 200 MiB.
    pub fn start_in(quota_backend_bytes: u64, parent: &Path) -> Self {
        Self::launch(quota_backend_bytes, Some(parent.join("etcd")))
    }

    fn launch(quota: u64, data_dir: Option<PathBuf>) -> Self {
        let dir = temp_dir("etcd");
        let data_dir = data_dir.unwrap_or_else(|| dir.path().join("data"));
        let program = binary(Bin::Etcd);
        let mut last_err = String::new();
        // Either port can be taken between free_port() and etcd's bind; retry.
        for attempt in 0..3 {
            let (client_port, peer_port) = (free_port(), free_port());
            let client = format!("http://127.0.0.1:{client_port}");
            let peer = format!("http://127.0.0.1:{peer_port}");
            let args: Vec<String> = vec![
                "--name=diskguard-test".into(),
                format!("--data-dir={}", data_dir.display()),
                format!("--listen-client-urls={client}"),
                format!("--advertise-client-urls={client}"),
                format!("--listen-peer-urls={peer}"),
                format!("--initial-advertise-peer-urls={peer}"),
                format!("--initial-cluster=diskguard-test={peer}"),
                format!("--quota-backend-bytes={quota}"),
                "--logger=zap".into(),
                "--log-level=warn".into(),
            ];
            let log = dir.path().join(format!("etcd-{attempt}.log"));
            let started = Instant::now();
            let env = [("ETCD_UNSUPPORTED_ARCH", go_arch())];
            let mut process = PeerProcess::spawn("etcd", &program, &args, &log, &env);
            let addr = format!("127.0.0.1:{client_port}");
            let healthy = || {
                http_tcp(&addr, "GET", "/health", &[], b"")
                    .is_ok_and(|r| r.status == 200 && r.text().contains("true"))
            };
            match process.wait_ready(READY_TIMEOUT, healthy) {
                Ok(()) => {
                    let startup = started.elapsed();
                    return Etcd {
                        process,
                        client_port,
                        peer_port,
                        data_dir,
                        startup,
                        _dir: dir,
                    };
                }
                Err(why) => last_err = why,
            }
            drop(process);
            if !last_err.contains("address already in use") {
                break;
            }
            // A failed first boot may leave a half-made member dir behind.
            let _ = std::fs::remove_dir_all(&data_dir);
        }
        panic!(
            "etcd ({}) with data dir {} did not start: {last_err}",
            program.display(),
            data_dir.display()
        );
    }

    /// `http://127.0.0.1:PORT`
    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }
    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// One request to the client port (v3 JSON gateway at `/v3/...`, `/metrics`, `/health`).
    pub fn request(&self, method: &str, path: &str, body: &str) -> HttpResponse {
        let addr = format!("127.0.0.1:{}", self.client_port);
        let headers: &[(&str, &str)] = if body.is_empty() {
            &[]
        } else {
            &[("Content-Type", "application/json")]
        };
        http_tcp(&addr, method, path, headers, body.as_bytes())
            .unwrap_or_else(|e| panic!("{method} {path} on etcd {addr}: {e}"))
    }

    /// Value of an un-labelled Prometheus gauge/counter from `/metrics`.
    /// Prometheus prints large values in exponent form (`1.048576e+06`).
    pub fn metric(&self, name: &str) -> Option<f64> {
        let text = self.request("GET", "/metrics", "").text();
        text.lines()
            .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .find_map(|v| v.trim().parse().ok())
    }
}

// etcd 3.4 refuses to start outside amd64/arm64/ppc64le unless this names
// the (Go) architecture; on supported ones it is ignored.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}
