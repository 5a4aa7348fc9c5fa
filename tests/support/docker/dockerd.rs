//! A private Docker Engine (Debian's docker.io, 20.10) per test: its own
//! socket, exec root, containerd and data root, so tests never touch the
//! host's daemon or each other.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::fs::loopfs::{LoopFs, LoopFsOptions};
use crate::fs::mounts::unmount_tree;
use crate::network::http_client::{HttpResponse, http_unix};
use crate::processes::leftovers::remove_shim_sockets;
use crate::processes::peer::{Bin, binary, temp_dir};
use crate::processes::procs::PeerProcess;

/// The process and leftover helpers, at the paths they had before they moved
/// to `procs.rs` and `leftovers.rs`.
pub use crate::processes::leftovers::{shim_socket_paths, sweep_stale, sweep_stale_once};
pub use crate::processes::procs::{ProcInfo, kill_processes_mentioning, processes};

/// Startup on this kind of machine takes ~0.2 s; the margin is for loaded CI.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct Dockerd {
    process: Option<PeerProcess>,
    data_root: PathBuf,
    last_start: Duration,
    // Declared after `process` so the daemon is gone before its filesystem,
    // and before `dir`, which holds the socket, exec root and logs.
    fs: Option<LoopFs>,
    dir: tempfile::TempDir,
}

impl Dockerd {
    /// A new ext4 loop filesystem with the daemon's data root at `<mount>/docker`.
    pub fn start_on_loopfs(opts: &LoopFsOptions) -> Self {
        let fs = LoopFs::with_options(opts);
        let data_root = fs.path().join("docker");
        Self::launch(data_root, Some(fs))
    }

    /// Uses `data_root` as given; the caller keeps whatever holds it alive
    /// longer than this guard (declare it first).
    pub fn start(data_root: impl Into<PathBuf>) -> Self {
        Self::launch(data_root.into(), None)
    }

    fn launch(data_root: PathBuf, fs: Option<LoopFs>) -> Self {
        let dir = temp_dir("dockerd");
        // Our own config file shields us from the host's /etc/docker/daemon.json.
        // The key path (settable only here in Debian's build) stops every
        // daemon sharing, and racing to create, /etc/docker/key.json.
        let config = serde_json::json!({ "deprecated-key-path": dir.path().join("key.json") });
        std::fs::write(dir.path().join("daemon.json"), config.to_string())
            .expect("writing daemon.json");
        std::fs::create_dir_all(dir.path().join("cli")).expect("creating docker CLI config dir");
        let mut d = Dockerd {
            process: None,
            data_root,
            last_start: Duration::ZERO,
            fs,
            dir,
        };
        let socket_len = d.socket().as_os_str().len().max(
            d.exec_root()
                .join("containerd/containerd.sock.ttrpc")
                .as_os_str()
                .len(),
        );
        assert!(
            socket_len < 100,
            "temp dir {} too long for unix socket paths; set TMPDIR shorter",
            d.dir.path().display()
        );
        d.restart();
        d
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("docker.sock")
    }
    /// Value for `DOCKER_HOST`, e.g. `unix:///tmp/diskguard-t42-dockerd-x/docker.sock`.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }
    pub fn data_root(&self) -> &Path {
        &self.data_root
    }
    /// Holds containerd's private state and socket, and container netns.
    pub fn exec_root(&self) -> PathBuf {
        self.dir.path().join("exec")
    }
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("dockerd.log")
    }
    pub fn loopfs(&self) -> Option<&LoopFs> {
        self.fs.as_ref()
    }
    pub fn loopfs_mut(&mut self) -> Option<&mut LoopFs> {
        self.fs.as_mut()
    }
    /// How long the last (re)start took until `/_ping` answered.
    pub fn startup_time(&self) -> Duration {
        self.last_start
    }

    /// dockerd's pid; panics if it is not running.
    pub fn pid(&self) -> u32 {
        self.process
            .as_ref()
            .map(PeerProcess::pid)
            .expect("dockerd is not running (killed and not restarted?)")
    }

    /// `true` if the socket answers `GET /_ping` with `OK`.
    pub fn ping(&self) -> bool {
        http_unix(&self.socket(), "GET", "/_ping", &[], b"")
            .is_ok_and(|r| r.status == 200 && r.body == b"OK")
    }

    /// A raw Engine API call over the private socket.
    pub fn api(&self, method: &str, path: &str, body: &[u8]) -> HttpResponse {
        let headers: &[(&str, &str)] = if body.is_empty() {
            &[]
        } else {
            &[("Content-Type", "application/json")]
        };
        http_unix(&self.socket(), method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path} on {}: {e}", self.socket().display()))
    }

    /// Debian's docker CLI pointed at this daemon only. Its config dir is
    /// private too, so host contexts or credential helpers cannot redirect it.
    pub fn docker(&self) -> Command {
        let mut cmd = Command::new(binary(Bin::Docker));
        cmd.env("DOCKER_HOST", self.docker_host())
            .env("DOCKER_CONFIG", self.dir.path().join("cli"))
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH");
        cmd
    }

    /// SIGKILL dockerd alone, like a crash: its containerd dies with it
    /// (dockerd gives it a parent-death signal) but shims and containers keep
    /// running, as on a real host. Use [`Dockerd::restart`] to bring it back.
    pub fn kill9(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill9();
        }
    }

    /// Graceful stop (SIGTERM, bounded), keeping the data root for a restart.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            // Containers would otherwise get their 10 s stop timeout each.
            self.kill_containers();
            p.stop(Duration::from_secs(15));
        }
    }

    /// Starts dockerd (again) on the same data root, sockets and exec root,
    /// and waits until `/_ping` answers. Stops a running one first.
    pub fn restart(&mut self) {
        self.stop();
        self.clear_stale_containerd_pidfile();
        let dir = self.dir.path();
        let args: Vec<String> = vec![
            format!("--host={}", self.docker_host()),
            format!("--data-root={}", self.data_root.display()),
            format!("--exec-root={}", self.exec_root().display()),
            format!("--pidfile={}", dir.join("docker.pid").display()),
            format!("--config-file={}", dir.join("daemon.json").display()),
            "--bridge=none".into(),
            "--iptables=false".into(),
            "--ip-masq=false".into(),
            "--ip-forward=false".into(),
            "--userland-proxy=false".into(),
            "--storage-driver=overlay2".into(),
            "--log-level=warn".into(),
            // No --containerd: dockerd then runs its own, configured under
            // the exec root (state, socket) and data root, so it is private.
        ];
        let log = self.log_path();
        // A fixed PATH so Debian's containerd, runc and shim are the ones used.
        let env = [("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")];
        let started = Instant::now();
        let mut p = PeerProcess::spawn("dockerd", &binary(Bin::Dockerd), &args, &log, &env);
        let socket = self.socket();
        let ready = p.wait_ready(READY_TIMEOUT, || {
            http_unix(&socket, "GET", "/_ping", &[], b"").is_ok_and(|r| r.status == 200)
        });
        self.process = Some(p);
        if let Err(why) = ready {
            panic!(
                "private dockerd on {} (data root {}): {why}",
                socket.display(),
                self.data_root.display()
            );
        }
        self.last_start = started.elapsed();
    }

    // After a SIGKILL, dockerd's containerd dies too but lingers as a zombie
    // until init reaps it (slowly, on some hosts). dockerd treats the pid in
    // this file as "containerd still running" if kill(pid, 0) succeeds, and
    // then times out dialing its dead socket instead of starting a new one.
    fn clear_stale_containerd_pidfile(&self) {
        let pidfile = self.exec_root().join("containerd/containerd.pid");
        let Ok(pid) = std::fs::read_to_string(&pidfile) else {
            return;
        };
        let Ok(pid) = pid.trim().parse::<i32>() else {
            return;
        };
        let live = || {
            processes()
                .iter()
                .any(|p| p.pid == pid && p.cmdline.contains("containerd"))
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while live() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if live() {
            panic!(
                "containerd {pid} of the previous dockerd is still running; cannot restart on {}",
                self.data_root.display()
            );
        }
        let _ = std::fs::remove_file(&pidfile);
    }

    // Container processes are children of shims that name our containerd
    // socket; killing them (not the shims) lets dockerd shut down promptly.
    fn kill_containers(&self) {
        let needle = self
            .exec_root()
            .join("containerd/containerd.sock")
            .display()
            .to_string();
        let procs = processes();
        let shims: Vec<i32> = procs
            .iter()
            .filter(|p| p.cmdline.contains("containerd-shim") && p.cmdline.contains(&needle))
            .map(|p| p.pid)
            .collect();
        for child in procs.iter().filter(|p| shims.contains(&p.ppid)) {
            let _ = kill(Pid::from_raw(child.pid), Signal::SIGKILL);
        }
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        self.stop();
        // Whatever survived (shims after kill9, containerd if dockerd was
        // SIGKILLed mid-shutdown) names our temp dir on its command line.
        kill_processes_mentioning(&format!("{}/", self.dir.path().display()));
        // Every container this daemon ever ran may have left a shim socket
        // (a SIGKILLed shim cannot remove its own).
        let address = self.exec_root().join("containerd/containerd.sock");
        let ids = std::fs::read_dir(self.data_root.join("containers"))
            .into_iter()
            .flatten();
        let keys: Vec<String> = ids
            .flatten()
            .map(|e| {
                format!(
                    "{}/moby/{}",
                    address.display(),
                    e.file_name().to_string_lossy()
                )
            })
            .collect();
        remove_shim_sockets(&keys);
        // Overlay and shm mounts of containers, netns under the exec root.
        unmount_tree(self.dir.path());
        unmount_tree(&self.data_root);
    }
}
