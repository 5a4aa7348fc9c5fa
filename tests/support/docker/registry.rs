//! A private Docker registry (Debian's docker-registry, distribution 2.8) on a free
//! loopback port, storing in a temp dir: the only way to get an image that has a repo
//! digest and no tag without reaching the internet. dockerd treats 127.0.0.0/8
//! registries as insecure by default, so no daemon flag is needed.

use std::time::Duration;

use crate::processes::peer::{Bin, PeerProcess, binary, free_port, http_tcp, temp_dir};

#[derive(Debug)]
pub struct Registry {
    _process: PeerProcess,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        let dir = temp_dir("registry");
        let program = binary(Bin::Registry);
        let port = free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .expect("write registry config");
        let log = dir.path().join("registry.log");
        let args = ["serve".to_owned(), config.display().to_string()];
        let mut process = PeerProcess::spawn("docker-registry", &program, &args, &log, &[]);
        let addr = format!("127.0.0.1:{port}");
        process
            .wait_ready(Duration::from_secs(30), || {
                http_tcp(&addr, "GET", "/v2/", &[], b"").is_ok_and(|r| r.status == 200)
            })
            .unwrap_or_else(|why| panic!("docker-registry on {addr} did not start: {why}"));
        Registry {
            _process: process,
            port,
            _dir: dir,
        }
    }

    /// `127.0.0.1:PORT`, the prefix of image names pushed here.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}
