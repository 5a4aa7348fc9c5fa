//! A node for the install tests: a private dockerd on its own loop filesystem, the cached
//! systemd image imported into it, the release tarball served by a loopback HTTP server,
//! and a container booted with systemd as PID 1 in which user data is applied.
//!
//! Inside, diskguard runs in local mode and never leaves the machine: the config turns ECS,
//! CloudWatch and etcd off and observe mode on, and a drop-in sets
//! `AWS_EC2_METADATA_DISABLED=true` so nothing probes the link-local IMDS address. It does
//! reach a real Docker: the private dockerd's socket is bound at /run/docker.sock (where
//! `/var/run/docker.sock` leads), and a loop filesystem of its own is bound at
//! /var/lib/docker for it to watch — so the hardened unit is shown to reach both.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::docker::dockerd::Dockerd;
use crate::fs::loopfs::{LoopFs, LoopFsOptions};
use crate::network::http_client::http_tcp;
use crate::network::mockhttp::{Reply, Response, Server};
use crate::processes::peer::temp_dir;
use crate::systemd::cloudinit::{UnitCommand, apply_cloud_config, apply_ignition};
use crate::systemd::container::{Bind, SystemdContainer};
use crate::systemd::image::{self, Recipe};
use crate::systemd::release::{Release, artifacts};

/// The config the user data installs: local mode, observe only, nothing off the machine.
pub const TEST_CONFIG: &str = "# install tests: local mode, observe only; nothing leaves the machine\n\
mode = \"observe\"\n\n[ecs]\nenabled = false\n\n[cloudwatch]\nenabled = false\n\n[etcd]\nenabled = false\n";

/// diskguard.service's test drop-in; must be in place before diskguard first starts.
pub const TEST_DROP_IN: &str = "[Service]\n# The tests must never reach the link-local IMDS address.\nEnvironment=AWS_EC2_METADATA_DISABLED=true\n";

/// Units get this long to settle (start, restart after the 10 s watchdog, …).
pub const SETTLE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serve {
    /// The release tarball as built.
    Genuine,
    /// Same length, last byte flipped: its sha256 no longer matches.
    Tampered,
}

pub struct World {
    pub release: Release,
    pub server: Server,
    requests: Arc<AtomicUsize>,
    pub image: String,
    // Dropped after the server; the container (borrowing `dockerd`) is dropped by the test
    // before the world.
    pub docker_root: LoopFs,
    pub dockerd: Dockerd,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "World(release {})", self.release.version)
    }
}

impl World {
    pub fn new(serve: Serve) -> World {
        World::with_image(serve, Recipe::Systemd)
    }

    /// A world whose containers boot the root filesystem of `recipe`.
    pub fn with_image(serve: Serve, recipe: Recipe) -> World {
        let release = artifacts();
        let mut bytes = std::fs::read(&release.tarball)
            .unwrap_or_else(|e| panic!("reading {}: {e}", release.tarball.display()));
        if serve == Serve::Tampered {
            if let Some(last) = bytes.last_mut() {
                *last ^= 0xff;
            }
        }
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&requests);
        let body = Arc::new(bytes);
        let server = Server::start(
            "release-server",
            Arc::new(move |req| {
                counted.fetch_add(1, Ordering::SeqCst);
                if req.method == "GET" && req.path == "/diskguard.tar.gz" {
                    Reply::Send(Response::new(
                        200,
                        "application/gzip",
                        body.as_ref().clone(),
                    ))
                } else {
                    Reply::Send(Response::text(404, "not here"))
                }
            }),
        );
        let dockerd = Dockerd::start_on_loopfs(&LoopFsOptions::new(1024));
        let image = image::import_recipe(&dockerd, recipe);
        World {
            release,
            server,
            requests,
            image,
            docker_root: LoopFs::new(64),
            dockerd,
        }
    }

    pub fn release_url(&self) -> String {
        format!("http://127.0.0.1:{}/diskguard.tar.gz", self.server.port())
    }

    /// GET requests the release server has answered.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// After a genuine tarball: the install unit succeeded, fetched it exactly once, and
    /// its log names this release.
    pub fn assert_installed_once(&self, c: &SystemdContainer<'_>) {
        let install = c.show(
            "diskguard-install.service",
            &["ActiveState", "Result", "ExecMainStatus"],
        );
        assert_eq!(install["ActiveState"], "active", "{install:?}");
        assert_eq!(install["Result"], "success", "{install:?}");
        assert_eq!(self.requests(), 1, "the tarball is downloaded exactly once");
        let log = c.journal("diskguard-install.service");
        assert!(
            log.contains(&self.release.sha),
            "install log names no version:\n{log}"
        );
    }

    /// After a tampered tarball (its install unit already failed): the install said why,
    /// the tarball was fetched, diskguard never ran and nothing was installed.
    pub fn assert_install_refused(&self, c: &SystemdContainer<'_>) {
        let log = c.journal("diskguard-install.service");
        assert!(log.contains("not installing"), "install log:\n{log}");
        assert!(self.requests() >= 1, "the tarball was never fetched");
        let dg = c.show(
            "diskguard.service",
            &[
                "ActiveState",
                "NRestarts",
                "ExecMainStartTimestampMonotonic",
                "MainPID",
            ],
        );
        assert!(
            dg["ActiveState"] == "inactive" || dg["ActiveState"] == "failed",
            "{dg:?}"
        );
        assert_eq!(
            dg["ExecMainStartTimestampMonotonic"], "0",
            "diskguard ran: {dg:?}"
        );
        assert_eq!(dg["NRestarts"], "0", "{dg:?}");
        let installed = c.exec(&["test", "-e", "/opt/bin/diskguard"]);
        assert!(
            !installed.status.success(),
            "/opt/bin/diskguard was installed"
        );
    }

    /// What a node's bootloader would hand over: the container, booted, with the test drop-in.
    pub fn boot(&self) -> SystemdContainer<'_> {
        self.boot_with(&[])
    }

    /// [`World::boot`] with more bind mounts (a cloud-init seed, say), there from PID 1 on.
    pub fn boot_with(&self, extra: &[Bind<'_>]) -> SystemdContainer<'_> {
        let socket = self.dockerd.socket();
        let mut binds = vec![
            Bind {
                host: &socket,
                container: "/run/docker.sock",
                read_only: false,
            },
            Bind {
                host: self.docker_root.path(),
                container: "/var/lib/docker",
                read_only: false,
            },
        ];
        binds.extend_from_slice(extra);
        let c = SystemdContainer::boot(&self.dockerd, &self.image, &binds);
        c.write_file(
            "/etc/systemd/system/diskguard.service.d/50-test.conf",
            TEST_DROP_IN.as_bytes(),
            0o644,
        );
        c
    }

    /// `diskguard userdata` for this world (this build's binary, the served tarball).
    pub fn render(&self, format: &str) -> String {
        self.render_with(format, &[])
    }

    /// [`World::render`] with more flags (`--part FILE`, say).
    pub fn render_with(&self, format: &str, extra: &[&str]) -> String {
        let dir = temp_dir("node-config");
        let config = dir.path().join("diskguard.toml");
        std::fs::write(&config, TEST_CONFIG).expect("writing the test config");
        let config = config.display().to_string();
        let flags: Vec<&str> = ["--config", config.as_str()]
            .into_iter()
            .chain(extra.iter().copied())
            .collect();
        let out = crate::processes::cli::userdata(
            format,
            "test",
            &self.release_url(),
            &self.release.tarball_sha256,
            &flags,
        );
        assert!(
            out.status.success(),
            "diskguard userdata --format {format} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned() + "\n"
    }

    /// Boots and applies the rendered cloud-config; returns the container and what each
    /// unit command did.
    pub fn boot_with_cloud_config(&self) -> (SystemdContainer<'_>, Vec<UnitCommand>) {
        let c = self.boot();
        let text = self.render("cloud-config");
        let commands = apply_cloud_config(&c, &text);
        (c, commands)
    }

    /// Boots and applies the rendered Ignition config (remote sources fetched from the
    /// release server); then starts diskguard.service as first boot would.
    pub fn boot_with_ignition(&self) -> SystemdContainer<'_> {
        let c = self.boot();
        let text = self.render("ignition");
        let port = self.server.port();
        apply_ignition(&c, &text, |url| {
            let path = url
                .strip_prefix(&format!("http://127.0.0.1:{port}"))
                .unwrap_or_else(|| panic!("{url} is not the release server"));
            let resp = http_tcp(&format!("127.0.0.1:{port}"), "GET", path, &[], b"")
                .unwrap_or_else(|e| panic!("GET {url}: {e}"));
            assert_eq!(resp.status, 200, "GET {url}");
            resp.body
        });
        c
    }
}

/// Waits until diskguard.service is active, running and has said something in STATUS=.
pub fn wait_running(c: &SystemdContainer<'_>) -> std::collections::HashMap<String, String> {
    c.wait_for(
        "diskguard.service",
        &[
            "ActiveState",
            "SubState",
            "StatusText",
            "MainPID",
            "NRestarts",
        ],
        SETTLE,
        "active and running with a StatusText",
        |p| {
            p.get("ActiveState").is_some_and(|s| s == "active")
                && p.get("SubState").is_some_and(|s| s == "running")
                && p.get("StatusText").is_some_and(|s| !s.is_empty())
        },
    )
}
