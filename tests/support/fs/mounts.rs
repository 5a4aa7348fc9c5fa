//! The mount table and loop devices: reading /proc/self/mountinfo and
//! /sys/block, and tearing down mounts and loop devices under a dir.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::processes::peer::{Bin, binary};
use crate::processes::procs::run_raw;

/// One line of /proc/self/mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_point: PathBuf,
    pub fstype: String,
    pub source: String,
}

/// Source device of the mount at exactly `mountpoint`.
pub(crate) fn mount_source(mountpoint: &Path) -> Option<String> {
    mounts()
        .into_iter()
        .rev()
        .find(|m| m.mount_point == mountpoint)
        .map(|m| m.source)
}

/// Current mounts, in mount order.
pub fn mounts() -> Vec<MountEntry> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split(' ').collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            Some(MountEntry {
                mount_point: PathBuf::from(unescape(fields.get(4)?)),
                fstype: unescape(fields.get(sep + 1)?),
                source: unescape(fields.get(sep + 2)?),
            })
        })
        .collect()
}

/// `true` if something is mounted at exactly `path`.
pub fn is_mounted(path: &Path) -> bool {
    mounts().iter().any(|m| m.mount_point == path)
}

/// The mount that `path` lives on (longest mount point prefix).
pub fn mount_of(path: &Path) -> Option<MountEntry> {
    mounts()
        .into_iter()
        .filter(|m| path.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.as_os_str().len())
}

/// Loop devices currently backed by `image`.
pub fn loop_devices_backed_by(image: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let backing = std::fs::read_to_string(e.path().join("loop/backing_file")).ok()?;
            let backing = backing.trim().trim_end_matches(" (deleted)");
            Path::new(backing)
                .starts_with(image)
                .then(|| format!("/dev/{name}"))
        })
        .collect()
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(std::str::from_utf8(o).ok()?, 8).ok());
        match (b[i], octal) {
            (b'\\', Some(v)) => {
                out.push(v);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unmounts `root` and every mount below it, deepest (latest) first, falling
/// back to a lazy unmount for anything still busy. Never panics: it runs in Drop.
pub fn unmount_tree(root: &Path) {
    let under: Vec<PathBuf> = mounts()
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|mp| mp.starts_with(root))
        .collect();
    for mp in under.iter().rev() {
        if !mounts().iter().any(|m| &m.mount_point == mp) {
            continue; // already gone with a parent's lazy unmount
        }
        let out = run_raw(Command::new(binary(Bin::Umount)).arg(mp));
        if !out.status.success() {
            let lazy = run_raw(Command::new(binary(Bin::Umount)).arg("-l").arg(mp));
            if !lazy.status.success() {
                eprintln!(
                    "diskguard tests: cannot unmount {}: {} / {}",
                    mp.display(),
                    String::from_utf8_lossy(&out.stderr).trim(),
                    String::from_utf8_lossy(&lazy.stderr).trim()
                );
            }
        }
    }
}

/// Detaches loop devices whose backing file lies under `dir`. `mount -o loop`
/// sets autoclear, so this only matters after a lazy unmount or a crash; the
/// backing-file check keeps us off devices another test has since reused.
pub fn detach_loops_under(dir: &Path) {
    for dev in loop_devices_backed_by(dir) {
        let out = run_raw(Command::new(binary(Bin::Losetup)).arg("-d").arg(&dev));
        if !out.status.success() {
            eprintln!(
                "diskguard tests: losetup -d {dev}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
}
