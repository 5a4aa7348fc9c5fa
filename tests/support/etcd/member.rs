//! A private etcd (Debian's etcd-server, 3.4) on free loopback ports with a small
//! backend quota, optionally on a loop filesystem, optionally serving TLS with client
//! certificates. The harness itself always drives etcd through a plain-HTTP client URL
//! (the TLS member listens on both): only diskguard has to speak TLS.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::network::certs::Certs;
use crate::processes::peer::{
    Bin, HttpResponse, PeerProcess, binary, free_port, http_tcp, temp_dir,
};

const READY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct Etcd {
    process: PeerProcess,
    client_port: u16,
    tls_port: Option<u16>,
    data_dir: PathBuf,
    log: PathBuf,
    startup: Duration,
    _dir: tempfile::TempDir,
}

/// How to start a single-member etcd.
#[derive(Debug, Clone, Default)]
pub struct EtcdOptions {
    pub quota: u64,
    /// Data dir at `<parent>/etcd` (e.g. a loop fs that outlives the guard).
    pub parent: Option<PathBuf>,
    /// Serve an `https://` client URL too, requiring client certificates signed by these.
    pub tls: Option<Certs>,
    /// etcd's own info lines (compaction, defragment) in its log.
    pub info_log: bool,
}

impl Etcd {
    /// Data dir in a fresh temp dir on the host filesystem.
    pub fn start(quota_backend_bytes: u64) -> Self {
        Self::with(&EtcdOptions {
            quota: quota_backend_bytes,
            ..EtcdOptions::default()
        })
    }

    /// Data dir at `<parent>/etcd` (e.g. a [`crate::fs::loopfs::LoopFs`] mount,
    /// which must outlive this guard). etcd preallocates the current and the
    /// next 64 MB WAL segment at first boot and dies with ENOSPC without
    /// them: give the fs ≥ 200 MiB.
    pub fn start_in(quota_backend_bytes: u64, parent: &Path) -> Self {
        Self::with(&EtcdOptions {
            quota: quota_backend_bytes,
            parent: Some(parent.to_owned()),
            ..EtcdOptions::default()
        })
    }

    pub fn with(opts: &EtcdOptions) -> Self {
        let dir = temp_dir("etcd");
        let data_dir = opts
            .parent
            .as_ref()
            .map_or_else(|| dir.path().join("data"), |p| p.join("etcd"));
        let program = binary(Bin::Etcd);
        let mut last_err = String::new();
        // Any port can be taken between free_port() and etcd's bind; retry.
        for attempt in 0..3 {
            let (client_port, peer_port) = (free_port(), free_port());
            let tls_port = opts.tls.as_ref().map(|_| free_port());
            let client = format!("http://127.0.0.1:{client_port}");
            let peer = format!("http://127.0.0.1:{peer_port}");
            let mut listen = client.clone();
            let mut args: Vec<String> = Vec::new();
            if let (Some(certs), Some(port)) = (&opts.tls, tls_port) {
                listen = format!("https://127.0.0.1:{port},{client}");
                args.extend([
                    "--client-cert-auth".to_owned(),
                    format!("--trusted-ca-file={}", certs.ca.display()),
                    format!("--cert-file={}", certs.server_cert.display()),
                    format!("--key-file={}", certs.server_key.display()),
                ]);
            }
            args.extend([
                "--name=diskguard-test".into(),
                format!("--data-dir={}", data_dir.display()),
                format!("--listen-client-urls={listen}"),
                format!("--advertise-client-urls={listen}"),
                format!("--listen-peer-urls={peer}"),
                format!("--initial-advertise-peer-urls={peer}"),
                format!("--initial-cluster=diskguard-test={peer}"),
                format!("--quota-backend-bytes={}", opts.quota),
                "--logger=zap".into(),
                format!(
                    "--log-level={}",
                    if opts.info_log { "info" } else { "warn" }
                ),
            ]);
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
                    return Etcd {
                        process,
                        client_port,
                        tls_port,
                        data_dir,
                        log,
                        startup: started.elapsed(),
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
    /// `https://127.0.0.1:PORT`, when started with TLS.
    pub fn tls_url(&self) -> Option<String> {
        self.tls_port.map(|p| format!("https://127.0.0.1:{p}"))
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
    /// etcd's own log (zap JSON lines).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One request to the client port (v3 JSON gateway at `/v3/...`, `/metrics`, `/health`).
    pub fn request(&self, method: &str, path: &str, body: &str) -> HttpResponse {
        request(
            &format!("127.0.0.1:{}", self.client_port),
            method,
            path,
            body,
        )
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

/// One request to an etcd client port (`host:port`).
pub fn request(addr: &str, method: &str, path: &str, body: &str) -> HttpResponse {
    let headers: &[(&str, &str)] = if body.is_empty() {
        &[]
    } else {
        &[("Content-Type", "application/json")]
    };
    http_tcp(addr, method, path, headers, body.as_bytes())
        .unwrap_or_else(|e| panic!("{method} {path} on etcd {addr}: {e}"))
}

// etcd 3.4 refuses to start outside amd64/arm64/ppc64le unless this names
// the (Go) architecture; on supported ones it is ignored.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}
