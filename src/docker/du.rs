//! Bytes allocated under a directory, as du counts them: the Docker layer directories the
//! cgroup v1 write meter watches grow, and what the leftovers report finds on the disk. One
//! walk for both, bounded by a budget of directory entries.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// du's count under one filesystem: allocated blocks, each inode once, symlinks not
/// followed, other filesystems (an overlay mounted on `merged`, a volume on NFS) not entered.
#[derive(Debug)]
pub struct Du {
    /// The filesystem walked; `None`: whichever `top` is on.
    dev: Option<u64>,
    /// The entries a walk may still visit, of `limit`.
    budget: usize,
    limit: usize,
    seen: HashSet<(u64, u64)>,
}

impl Du {
    /// Walks that stay on `root`'s filesystem, visiting at most `budget` entries in all.
    pub fn on(root: &Path, budget: usize) -> std::io::Result<Self> {
        Ok(Du {
            dev: Some(std::fs::metadata(root)?.dev()),
            budget,
            limit: budget,
            seen: HashSet::new(),
        })
    }

    /// Walks that stay on the filesystem of the directory each one starts from.
    pub fn new(budget: usize) -> Self {
        Du {
            dev: None,
            budget,
            limit: budget,
            seen: HashSet::new(),
        }
    }

    /// [`Du::measure`] where only the figure matters: 0 for what cannot be measured.
    pub fn bytes(&mut self, top: &Path) -> u64 {
        self.measure(top, &mut Vec::new())
            .map_or(0, |(bytes, _)| bytes)
    }

    /// Bytes under `top` and whether the budget cut the walk short; `None` when `top` is not
    /// on Docker's disk, cannot be read, or the budget was spent before it (said in `errors`).
    pub fn measure(&mut self, top: &Path, errors: &mut Vec<String>) -> Option<(u64, bool)> {
        if self.budget == 0 {
            errors.push(format!(
                "{}: not measured, {} entries walked",
                top.display(),
                self.limit
            ));
            return None;
        }
        let meta = match std::fs::symlink_metadata(top) {
            Ok(m) => m,
            Err(e) => {
                errors.push(format!("{}: {e}", top.display()));
                return None;
            }
        };
        let dev = self.dev.unwrap_or(meta.dev());
        if meta.dev() != dev || !meta.is_dir() {
            return None;
        }
        let mut total = meta.blocks() * 512;
        let mut stack = vec![top.to_owned()];
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) => {
                    errors.push(format!("{}: {e}", dir.display()));
                    continue;
                }
            };
            for entry in entries.flatten() {
                if self.budget == 0 {
                    return Some((total, true));
                }
                self.budget -= 1;
                let Ok(meta) = entry.metadata() else { continue };
                if meta.dev() != dev {
                    continue;
                }
                if meta.nlink() > 1 && !meta.is_dir() && !self.seen.insert((meta.dev(), meta.ino()))
                {
                    continue;
                }
                total = total.saturating_add(meta.blocks() * 512);
                if meta.is_dir() {
                    stack.push(entry.path());
                }
            }
        }
        Some((total, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn a_walk_counts_allocated_blocks_once_per_inode_and_stops_at_its_budget() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let top = tmp.path().join("layer");
        std::fs::create_dir_all(top.join("diff/sub")).expect("mkdir");
        std::fs::write(top.join("diff/sub/a"), vec![7u8; MIB as usize]).expect("write");
        std::fs::hard_link(top.join("diff/sub/a"), top.join("diff/b")).expect("link");
        std::os::unix::fs::symlink("/", top.join("diff/root")).expect("symlink");
        // A sparse file holds nothing.
        std::fs::File::create(top.join("sparse"))
            .and_then(|f| f.set_len(64 * MIB))
            .expect("sparse");
        let mut errors = Vec::new();
        let mut w = Du::on(tmp.path(), 1_000_000).expect("walker");
        let (bytes, cut) = w.measure(&top, &mut errors).expect("measured");
        assert!(!cut && errors.is_empty(), "{errors:?}");
        assert!((MIB..2 * MIB).contains(&bytes), "{bytes}");

        w.budget = 2;
        let (_, cut) = w.measure(&top, &mut errors).expect("measured");
        assert!(cut, "the budget cut the walk");
        assert_eq!(
            w.measure(&top, &mut errors),
            None,
            "nothing left to walk with"
        );
        assert!(errors[0].contains("not measured"), "{errors:?}");
    }

    #[test]
    fn a_walk_counts_allocated_bytes_and_stops_at_its_budget() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("sub/a"), vec![1u8; 64 * 1024]).expect("write");
        std::fs::write(dir.path().join("b"), vec![1u8; 64 * 1024]).expect("write");
        let all = Du::new(100).bytes(dir.path());
        assert!(all >= 128 * 1024, "{all}");
        assert!(Du::new(1).bytes(dir.path()) < all);
    }
}
