//! A real ext4 filesystem of a chosen size, loop-mounted in a temp dir, with
//! helpers to push its block or inode usage to a given df-style percentage.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::fs::mounts::mount_source;
use crate::processes::peer::{Bin, binary, temp_dir};
use crate::processes::procs::{run_ok, run_raw};

/// The mount-table helpers, at the paths they had before they moved to `mounts.rs`.
pub use crate::fs::mounts::{
    MountEntry, detach_loops_under, loop_devices_backed_by, mount_of, mounts, unmount_tree,
};

/// How to make the filesystem. Block size is pinned to 4 KiB because mke2fs
/// picks 1 KiB for images under 512 MiB, which would make small and large
/// test filesystems behave differently.
#[derive(Debug, Clone)]
pub struct LoopFsOptions {
    pub size_mib: u64,
    /// `mkfs.ext4 -N`: a small inode table makes inode-exhaustion tests fast.
    pub inodes: Option<u64>,
    /// `mkfs.ext4 -m`; `None` keeps mke2fs's default (5%), as on real hosts.
    /// Even with 0, ext4 keeps ~2% (at most 4096 blocks) out of `blocks_avail`.
    pub reserved_percent: Option<u8>,
    /// `false` adds `-O ^has_journal` (slightly more usable space).
    pub journal: bool,
}

impl LoopFsOptions {
    pub fn new(size_mib: u64) -> Self {
        LoopFsOptions {
            size_mib,
            inodes: None,
            reserved_percent: None,
            journal: true,
        }
    }
    pub fn inodes(mut self, n: u64) -> Self {
        self.inodes = Some(n);
        self
    }
    pub fn reserved_percent(mut self, pct: u8) -> Self {
        self.reserved_percent = Some(pct);
        self
    }
    pub fn without_journal(mut self) -> Self {
        self.journal = false;
        self
    }
}

/// statvfs numbers, in `block_size` units, as `df` sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsUsage {
    pub block_size: u64,
    pub blocks: u64,
    pub blocks_free: u64,
    pub blocks_avail: u64,
    pub inodes: u64,
    pub inodes_free: u64,
}

impl FsUsage {
    pub fn used_blocks(&self) -> u64 {
        self.blocks - self.blocks_free
    }
    /// df's Use%: used / (used + available to non-root), reserved blocks excluded.
    pub fn used_percent(&self) -> f64 {
        let used = self.used_blocks() as f64;
        100.0 * used / (used + self.blocks_avail as f64)
    }
    pub fn inodes_used(&self) -> u64 {
        self.inodes - self.inodes_free
    }
    pub fn inode_used_percent(&self) -> f64 {
        100.0 * self.inodes_used() as f64 / self.inodes as f64
    }
}

/// Reads statvfs through `stat -f` (nix's statvfs needs a feature we lack).
pub fn fs_usage(path: &Path) -> FsUsage {
    let out = run_ok(
        Command::new("stat")
            .args(["-f", "-c", "%S %b %f %a %c %d"])
            .arg(path),
    );
    let n: Vec<u64> = out
        .split_whitespace()
        .map(|f| {
            f.parse().unwrap_or_else(|_| {
                panic!(
                    "unexpected `stat -f` output for {}: {out:?}",
                    path.display()
                )
            })
        })
        .collect();
    assert_eq!(
        n.len(),
        6,
        "unexpected `stat -f` output for {}: {out:?}",
        path.display()
    );
    FsUsage {
        block_size: n[0],
        blocks: n[1],
        blocks_free: n[2],
        blocks_avail: n[3],
        inodes: n[4],
        inodes_free: n[5],
    }
}

/// A mounted ext4 image. Dropping it (also while unwinding from a panic)
/// unmounts everything under it, detaches the loop device and deletes the image.
#[derive(Debug)]
pub struct LoopFs {
    dir: tempfile::TempDir,
    image: PathBuf,
    mount: PathBuf,
    device: String,
    fills: Vec<PathBuf>,
    next_fill: usize,
}

impl LoopFs {
    pub fn new(size_mib: u64) -> Self {
        Self::with_options(&LoopFsOptions::new(size_mib))
    }

    pub fn with_options(opts: &LoopFsOptions) -> Self {
        let dir = temp_dir("loopfs");
        let image = dir.path().join("loop.img");
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount).unwrap_or_else(|e| panic!("mkdir {}: {e}", mount.display()));
        // Sparse: only what the filesystem writes takes host disk space.
        File::create(&image)
            .and_then(|f| f.set_len(opts.size_mib * 1024 * 1024))
            .unwrap_or_else(|e| panic!("creating image {}: {e}", image.display()));
        // Eager table/journal init: no background ext4lazyinit writes that
        // would shift free-block counts under a test.
        let mut mkfs = Command::new(binary(Bin::MkfsExt4));
        mkfs.args([
            "-F",
            "-q",
            "-b",
            "4096",
            "-E",
            "lazy_itable_init=0,lazy_journal_init=0",
        ]);
        if let Some(n) = opts.inodes {
            mkfs.arg("-N").arg(n.to_string());
        }
        if let Some(m) = opts.reserved_percent {
            mkfs.arg("-m").arg(m.to_string());
        }
        if !opts.journal {
            mkfs.args(["-O", "^has_journal"]);
        }
        run_ok(mkfs.arg(&image));
        // Parallel tests race for free loop devices; mount retries internally
        // but can still lose, so try a few times.
        let mut last = String::new();
        for _ in 0..5 {
            let out = run_raw(
                Command::new(binary(Bin::Mount))
                    .args(["-t", "ext4", "-o", "loop"])
                    .arg(&image)
                    .arg(&mount),
            );
            if out.status.success() {
                let device = mount_source(&mount).unwrap_or_else(|| {
                    panic!("{} mounted but absent from mountinfo", mount.display())
                });
                return LoopFs {
                    dir,
                    image,
                    mount,
                    device,
                    fills: Vec::new(),
                    next_fill: 0,
                };
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!(
            "`mount -o loop {} {}` failed: {last}",
            image.display(),
            mount.display()
        );
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.mount
    }
    pub fn image(&self) -> &Path {
        &self.image
    }
    /// e.g. `/dev/loop3`.
    pub fn device(&self) -> &str {
        &self.device
    }
    pub fn usage(&self) -> FsUsage {
        fs_usage(&self.mount)
    }

    /// Writes one file until df-style used% is at least `pct` (or the disk is
    /// full). Root may write into the reserved blocks, so 100% is reachable.
    pub fn fill_to_used_percent(&mut self, pct: f64) -> PathBuf {
        let path = self.new_fill_path();
        let mut f =
            File::create(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        self.fills.push(path.clone());
        let chunk = vec![0xA5u8; 1 << 20];
        loop {
            let u = self.usage();
            if u.used_percent() >= pct {
                return path;
            }
            let total = (u.used_blocks() + u.blocks_avail) as f64;
            let want_blocks = ((pct / 100.0 * total).ceil() as u64)
                .saturating_sub(u.used_blocks())
                .max(1);
            let mut left = want_blocks * u.block_size;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                match f.write_all(&chunk[..n]) {
                    Ok(()) => left -= n as u64,
                    Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => {
                        let _ = f.sync_all();
                        return path;
                    }
                    Err(e) => panic!("writing {}: {e}", path.display()),
                }
            }
            // ext4 accounts delayed allocations in statfs, but syncing makes
            // the numbers final (extent blocks included) before re-checking.
            if let Err(e) = f.sync_all() {
                if e.raw_os_error() == Some(nix::libc::ENOSPC) {
                    return path;
                }
                panic!("fsync {}: {e}", path.display());
            }
        }
    }

    /// Like [`Self::fill_to_used_percent`], but allocates the blocks (fallocate) instead
    /// of writing them: instant on any size, so several disks can cross a threshold
    /// within the same second.
    pub fn allocate_to_used_percent(&mut self, pct: f64) -> PathBuf {
        let path = self.new_fill_path();
        let f = File::create(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        self.fills.push(path.clone());
        let u = self.usage();
        let total = (u.used_blocks() + u.blocks_avail) as f64;
        let want_blocks = ((pct / 100.0 * total).ceil() as u64).saturating_sub(u.used_blocks());
        let len = i64::try_from(want_blocks * u.block_size).expect("fits");
        if len > 0 {
            nix::fcntl::fallocate(&f, nix::fcntl::FallocateFlags::empty(), 0, len)
                .unwrap_or_else(|e| panic!("fallocate {}: {e}", path.display()));
        }
        path
    }

    /// Creates empty files until inode use is at least `pct` (or none are left).
    pub fn fill_inodes_to_percent(&mut self, pct: f64) -> PathBuf {
        let dir = self.new_fill_path();
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        self.fills.push(dir.clone());
        let mut i = 0u64;
        loop {
            let u = self.usage();
            if u.inode_used_percent() >= pct {
                return dir;
            }
            let want = ((pct / 100.0 * u.inodes as f64).ceil() as u64)
                .saturating_sub(u.inodes_used())
                .max(1);
            for _ in 0..want {
                let p = dir.join(i.to_string());
                i += 1;
                match File::create(&p) {
                    Ok(_) => {}
                    Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => return dir,
                    Err(e) => panic!("creating {}: {e}", p.display()),
                }
            }
        }
    }

    /// Deletes everything the fill helpers made and waits for the space to
    /// show up: ext4 returns freed blocks only when the journal commits.
    pub fn remove_fill(&mut self) {
        for p in self.fills.drain(..) {
            let r = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
            r.unwrap_or_else(|e| panic!("removing fill {}: {e}", p.display()));
        }
        run_ok(Command::new("sync").arg("-f").arg(&self.mount));
    }

    fn new_fill_path(&mut self) -> PathBuf {
        self.next_fill += 1;
        self.mount
            .join(format!(".diskguard-fill-{}", self.next_fill))
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        unmount_tree(&self.mount);
        detach_loops_under(self.dir.path());
        // TempDir's own drop deletes the (now detached) image.
    }
}
