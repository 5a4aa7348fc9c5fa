//! Bytes and inodes of the filesystem holding a path, with df's arithmetic.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::Serialize;

/// One statvfs reading. Counts are in bytes and inodes; `device` is `st_dev` of the path,
/// equal for two paths on the same filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FsStats {
    pub total_bytes: u64,
    /// Free for root (f_bfree).
    pub free_bytes: u64,
    /// Free for everyone else (f_bavail): what a container can still write.
    pub avail_bytes: u64,
    pub total_inodes: u64,
    pub free_inodes: u64,
    pub device: u64,
}

impl FsStats {
    /// Bytes in use: total − free, as df counts them.
    pub fn used_bytes(&self) -> u64 {
        self.total_bytes.saturating_sub(self.free_bytes)
    }

    pub fn used_inodes(&self) -> u64 {
        self.total_inodes.saturating_sub(self.free_inodes)
    }

    /// df's Use%: used / (used + available), so the root reserve counts as full.
    pub fn used_percent(&self) -> f64 {
        ratio(self.used_bytes(), self.used_bytes() + self.avail_bytes)
    }

    /// df -i's IUse%. Filesystems without inode limits (btrfs reports 0 inodes) read 0.
    pub fn inodes_used_percent(&self) -> f64 {
        ratio(self.used_inodes(), self.total_inodes)
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// Reads the filesystem under `path`. Costs two syscalls (statvfs, stat).
pub fn stat(path: &Path) -> std::io::Result<FsStats> {
    let v = rustix::fs::statvfs(path)?;
    let device = std::fs::metadata(path)?.dev();
    let unit = v.f_frsize.max(1);
    Ok(FsStats {
        total_bytes: v.f_blocks.saturating_mul(unit),
        free_bytes: v.f_bfree.saturating_mul(unit),
        avail_bytes: v.f_bavail.saturating_mul(unit),
        total_inodes: v.f_files,
        free_inodes: v.f_ffree,
        device,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_follows_df_semantics_with_root_reserve() {
        // 100 blocks, 30 free for root, 25 of them for users: df shows 70/(70+25) = 73.7 %.
        let s = FsStats {
            total_bytes: 100,
            free_bytes: 30,
            avail_bytes: 25,
            total_inodes: 10,
            free_inodes: 1,
            device: 1,
        };
        assert!((s.used_percent() - 73.684).abs() < 0.01);
        assert!((s.inodes_used_percent() - 90.0).abs() < 1e-9);
    }

    #[test]
    fn filesystem_without_inode_counts_reads_zero_percent() {
        let s = FsStats {
            total_bytes: 10,
            free_bytes: 10,
            avail_bytes: 10,
            total_inodes: 0,
            free_inodes: 0,
            device: 1,
        };
        assert_eq!(s.inodes_used_percent(), 0.0);
        assert_eq!(s.used_percent(), 0.0);
    }

    #[test]
    fn reads_a_real_filesystem() {
        let s = stat(Path::new("/")).expect("/ is always there");
        assert!(s.total_bytes > 0);
        assert!(s.used_percent() <= 100.0);
    }
}
