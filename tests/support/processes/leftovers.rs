//! Cleanup of what outlives a peer: containerd shim sockets under
//! /run/containerd/s, and the temp dirs, mounts, loop devices and processes of
//! earlier test processes that died without running their guards.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;

use crate::fs::mounts::{detach_loops_under, unmount_tree};
use crate::processes::procs::{kill_processes_mentioning, processes};

/// Where containerd 1.6 puts a shim's ttrpc socket: outside every dir we
/// own, at /run/containerd/s/<sha256("<containerd address>/<ns>/<id>")>.
pub fn shim_socket_paths(keys: &[String]) -> Vec<PathBuf> {
    if keys.is_empty() {
        return Vec::new();
    }
    let script = r#"for k; do printf %s "$k" | sha256sum; done"#;
    let out = Command::new("sh")
        .args(["-c", script, "sh"])
        .args(keys)
        .output();
    let Ok(out) = out else { return Vec::new() };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(|hex| Path::new("/run/containerd/s").join(hex))
        .collect()
}

pub(crate) fn remove_shim_sockets(keys: &[String]) {
    for socket in shim_socket_paths(keys) {
        let _ = std::fs::remove_file(socket);
    }
}

/// `<address>/<namespace>/<id>` of every live shim whose command line
/// mentions `needle`, i.e. the keys of [`shim_socket_paths`].
fn shim_keys_mentioning(needle: &str) -> Vec<String> {
    let flag = |args: &[&str], name: &str| {
        let i = args.iter().position(|a| *a == name)?;
        args.get(i + 1).map(|v| (*v).to_owned())
    };
    processes()
        .iter()
        .filter(|p| p.cmdline.contains("containerd-shim") && p.cmdline.contains(needle))
        .filter_map(|p| {
            let args: Vec<&str> = p.cmdline.split(' ').collect();
            let (ns, id) = (flag(&args, "-namespace")?, flag(&args, "-id")?);
            Some(format!("{}/{ns}/{id}", flag(&args, "-address")?))
        })
        .collect()
}

/// Once per test process: clean up after earlier test processes that died
/// without running their guards (SIGKILL, abort, CI timeout). Only dirs whose
/// owning pid is gone are touched, so concurrent test binaries are safe.
pub fn sweep_stale_once() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        sweep_stale();
    });
}

/// The sweep itself; returns the dirs it removed.
pub fn sweep_stale() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return Vec::new();
    };
    let mut swept = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("diskguard-t")
            .and_then(|r| r.split('-').next())
        else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let dir = entry.path();
        eprintln!(
            "diskguard tests: cleaning up {} left by dead test process {pid}",
            dir.display()
        );
        let needle = format!("{}/", dir.display());
        let shim_keys = shim_keys_mentioning(&needle);
        kill_processes_mentioning(&needle);
        remove_shim_sockets(&shim_keys);
        unmount_tree(&dir);
        detach_loops_under(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        swept.push(dir);
    }
    swept
}
