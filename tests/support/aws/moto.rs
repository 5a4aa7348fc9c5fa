//! A private moto_server (fake AWS APIs, ECS included) on a free loopback port.

use std::time::{Duration, Instant};

use crate::aws::ecs_peer::EcsPeer;
use crate::processes::peer::{
    Bin, HttpResponse, PeerProcess, binary, free_port, http_tcp, temp_dir,
};

/// Python startup plus moto's imports take ~0.5 s here.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct Moto {
    /// ECS as the daemon under test sees it: moto behind the ECS-faithful peer (pages,
    /// ListAttributes by name, DeleteAttributes by name, ECS's throttling quotas).
    ecs: EcsPeer,
    process: PeerProcess,
    port: u16,
    startup: Duration,
    _dir: tempfile::TempDir,
}

impl Moto {
    pub fn start() -> Self {
        let dir = temp_dir("moto");
        let program = binary(Bin::MotoServer);
        let mut last_err = String::new();
        // The port can be taken between free_port() and moto's bind; retry.
        for attempt in 0..3 {
            let port = free_port();
            let log = dir.path().join(format!("moto-{attempt}.log"));
            let args = vec![
                "-H".to_owned(),
                "127.0.0.1".to_owned(),
                "-p".to_owned(),
                port.to_string(),
            ];
            // Any credentials will do; fixing them keeps moto off ~/.aws.
            let env = [
                ("AWS_ACCESS_KEY_ID", "testing"),
                ("AWS_SECRET_ACCESS_KEY", "testing"),
                ("AWS_DEFAULT_REGION", "us-east-1"),
            ];
            let started = Instant::now();
            let mut process = PeerProcess::spawn("moto_server", &program, &args, &log, &env);
            let addr = format!("127.0.0.1:{port}");
            match process.wait_ready(READY_TIMEOUT, || {
                http_tcp(&addr, "GET", "/", &[], b"").is_ok()
            }) {
                Ok(()) => {
                    return Moto {
                        ecs: EcsPeer::start(&format!("http://127.0.0.1:{port}")),
                        process,
                        port,
                        startup: started.elapsed(),
                        _dir: dir,
                    };
                }
                Err(why) => last_err = why,
            }
            if !last_err.contains("already in use") {
                break;
            }
        }
        panic!(
            "moto_server ({}) did not start: {last_err}",
            program.display()
        );
    }

    /// `http://127.0.0.1:PORT` of the ECS-faithful peer in front of moto: what the daemon
    /// under test is pointed at (`AWS_ENDPOINT_URL_ECS`). Other services pass through it.
    pub fn endpoint(&self) -> String {
        self.ecs.endpoint()
    }

    /// moto itself, for seeding and checking state without counting or throttling.
    pub fn raw_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The ECS-faithful peer: its call counts, quotas and lag.
    pub fn ecs(&self) -> &EcsPeer {
        &self.ecs
    }
    pub fn port(&self) -> u16 {
        self.port
    }
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// One AWS JSON-1.1 call, e.g. `("AmazonEC2ContainerServiceV20141113.ListClusters", "ecs", "{}")`.
    /// moto picks the service from the SigV4 credential scope, not from
    /// X-Amz-Target: unsigned requests land in its S3 mock, so a fake
    /// (unverified) signature naming `service` is sent.
    pub fn aws_json(&self, target: &str, service: &str, body: &str) -> HttpResponse {
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/{service}/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=0000"
        );
        let headers = [
            ("X-Amz-Target", target),
            ("Content-Type", "application/x-amz-json-1.1"),
            ("X-Amz-Date", "20260101T000000Z"),
            ("Authorization", auth.as_str()),
        ];
        let addr = format!("127.0.0.1:{}", self.port);
        http_tcp(&addr, "POST", "/", &headers, body.as_bytes())
            .unwrap_or_else(|e| panic!("POST {target} to moto at {addr}: {e}"))
    }
}
