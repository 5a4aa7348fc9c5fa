//! Images of known size and containers in known states, made with the docker
//! CLI against a private [`Dockerd`]. Images are `docker import`ed from a tar
//! of static busybox plus an incompressible payload, so no registry is needed.

use std::io::Write;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::docker::dockerd::Dockerd;
use crate::processes::peer::{Bin, binary, run_ok, temp_dir};

/// Applets linked in every image so `sh -c` and friends work.
const APPLETS: &[&str] = &[
    "sh", "sleep", "true", "false", "echo", "cat", "ls", "rm", "touch", "dd", "head", "kill",
];
/// Keeps containers started without a command running.
const DEFAULT_CMD: &str = r#"CMD ["/bin/sleep", "86400"]"#;

/// Runs the docker CLI with `args` against `d`; panics with stderr on failure.
/// Returns trimmed stdout.
pub fn docker_ok(d: &Dockerd, args: &[&str]) -> String {
    run_ok(d.docker().args(args))
}

/// Imports an image with a `payload_bytes` random file at `/payload` and
/// returns its id (`sha256:…`). Its size is payload + busybox (~2 MB).
pub fn import_image(d: &Dockerd, reference: &str, payload_bytes: u64) -> String {
    // The build dir is in the host temp dir, not on the daemon's (possibly
    // tiny) loop filesystem, so building never eats the space under test.
    let work = temp_dir("image");
    let root = work.path().join("rootfs");
    for sub in ["bin", "etc", "tmp", "proc", "sys", "dev"] {
        std::fs::create_dir_all(root.join(sub))
            .unwrap_or_else(|e| panic!("mkdir {}/{sub}: {e}", root.display()));
    }
    let busybox = root.join("bin/busybox");
    std::fs::copy(binary(Bin::Busybox), &busybox)
        .unwrap_or_else(|e| panic!("copying busybox to {}: {e}", busybox.display()));
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet))
            .expect("symlinking busybox applet");
    }
    write_random(&root.join("payload"), payload_bytes);
    let tar = work.path().join("image.tar");
    run_ok(
        Command::new(binary(Bin::Tar))
            .arg("-C")
            .arg(&root)
            .args(["--numeric-owner", "-cf"])
            .arg(&tar)
            .arg("."),
    );
    let tar_arg = tar.display().to_string();
    let out = docker_ok(d, &["import", "--change", DEFAULT_CMD, &tar_arg, reference]);
    let id = out.lines().last().unwrap_or_default().to_owned();
    assert!(
        id.starts_with("sha256:"),
        "`docker import` of {reference} printed {out:?}, expected an image id"
    );
    id
}

// xorshift64*: fast and incompressible enough that the layer's size on disk
// is the size asked for; the seed differs per call so no two payloads match.
fn write_random(path: &std::path::Path, mut len: u64) {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut state = nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ CALLS
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        | 1;
    let file =
        std::fs::File::create(path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut buf = [0u8; 8192];
    while len > 0 {
        for word in buf.chunks_exact_mut(8) {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            word.copy_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        let n = len.min(buf.len() as u64) as usize;
        w.write_all(&buf[..n])
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        len -= n as u64;
    }
    w.flush()
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// `docker image inspect --format {{.Size}}`.
pub fn image_size(d: &Dockerd, reference: &str) -> u64 {
    let out = docker_ok(d, &["image", "inspect", "--format", "{{.Size}}", reference]);
    out.parse()
        .unwrap_or_else(|_| panic!("image size of {reference}: unexpected {out:?}"))
}

pub fn tag_image(d: &Dockerd, source: &str, target: &str) {
    docker_ok(d, &["tag", source, target]);
}

/// `docker rmi` (forced: also untags every reference of an id).
pub fn remove_image(d: &Dockerd, reference: &str) {
    docker_ok(d, &["rmi", "--force", reference]);
}

/// Full ids (`sha256:…`) of all images, dangling ones included, sorted.
pub fn image_ids(d: &Dockerd) -> Vec<String> {
    let mut ids: Vec<String> = docker_ok(d, &["images", "--all", "--quiet", "--no-trunc"])
        .lines()
        .map(str::to_owned)
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Options for a container; `command` empty means the image's `sleep 86400`.
#[derive(Debug, Clone, Default)]
pub struct ContainerOpts {
    pub name: Option<String>,
    pub labels: Vec<(String, String)>,
    pub command: Vec<String>,
    /// `--log-opt key=value` (the json-file driver's `max-size`, `max-file` …).
    pub log_opts: Vec<(String, String)>,
}

impl ContainerOpts {
    pub fn named(name: &str) -> Self {
        ContainerOpts {
            name: Some(name.to_owned()),
            ..Self::default()
        }
    }
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.push((key.to_owned(), value.to_owned()));
        self
    }
    pub fn log_opt(mut self, key: &str, value: &str) -> Self {
        self.log_opts.push((key.to_owned(), value.to_owned()));
        self
    }
    pub fn command(mut self, argv: &[&str]) -> Self {
        self.command = argv.iter().map(|s| (*s).to_owned()).collect();
        self
    }
    /// `sh -c script`.
    pub fn shell(self, script: &str) -> Self {
        self.command(&["/bin/sh", "-c", script])
    }

    fn cli_args(&self, verb: &[&str], image: &str) -> Vec<String> {
        let mut args: Vec<String> = verb.iter().map(|s| (*s).to_owned()).collect();
        // The daemon runs with --bridge=none, so only the none network exists.
        // --init: busybox as pid 1 ignores SIGTERM, so every stop (and the
        // restore after a dockerd crash) would wait out the 10 s timeout.
        args.extend([
            "--network".to_owned(),
            "none".to_owned(),
            "--init".to_owned(),
        ]);
        if let Some(name) = &self.name {
            args.extend(["--name".to_owned(), name.clone()]);
        }
        for (k, v) in &self.labels {
            args.extend(["--label".to_owned(), format!("{k}={v}")]);
        }
        for (k, v) in &self.log_opts {
            args.extend(["--log-opt".to_owned(), format!("{k}={v}")]);
        }
        args.push(image.to_owned());
        args.extend(self.command.iter().cloned());
        args
    }
}

fn docker_owned(d: &Dockerd, args: &[String]) -> String {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    docker_ok(d, &refs)
}

/// `docker run -d`: a running container (unless its command exits). Returns the full id.
pub fn run_container(d: &Dockerd, image: &str, opts: &ContainerOpts) -> String {
    docker_owned(d, &opts.cli_args(&["run", "--detach"], image))
}

/// `docker create`: a container in the `created` state. Returns the full id.
pub fn create_container(d: &Dockerd, image: &str, opts: &ContainerOpts) -> String {
    docker_owned(d, &opts.cli_args(&["create"], image))
}

/// A container that has run and exited (state `exited`); the default command
/// here is `true`. Returns the full id.
pub fn run_exited_container(d: &Dockerd, image: &str, opts: &ContainerOpts) -> String {
    let mut opts = opts.clone();
    if opts.command.is_empty() {
        opts.command = vec!["/bin/true".to_owned()];
    }
    let id = create_container(d, image, &opts);
    // `start --attach` returns once the container has exited.
    docker_ok(d, &["start", "--attach", &id]);
    id
}

/// `docker stop` (prompt: containers made here run under `--init`).
pub fn stop_container(d: &Dockerd, id: &str) {
    docker_ok(d, &["stop", id]);
}

pub fn remove_container(d: &Dockerd, id: &str) {
    docker_ok(d, &["rm", "--force", id]);
}

/// `.State.Status`: created, running, exited, …
pub fn container_state(d: &Dockerd, id: &str) -> String {
    docker_ok(
        d,
        &["container", "inspect", "--format", "{{.State.Status}}", id],
    )
}

/// Full ids of containers; `all` includes stopped and created ones.
pub fn container_ids(d: &Dockerd, all: bool) -> Vec<String> {
    let mut args = vec!["ps", "--quiet", "--no-trunc"];
    if all {
        args.push("--all");
    }
    docker_ok(d, &args).lines().map(str::to_owned).collect()
}
