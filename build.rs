//! Records the git commit the binary is built from, for `diskguard --version` and the
//! release artifact names.
//!
//! `DISKGUARD_GIT_SHA` set and not empty wins: a build from a release tarball has no git,
//! and one unpacked inside some other repository (a distro's packaging tree) would
//! otherwise report that repository's commit. Next comes git, only when this crate is the
//! top of the work tree; last `unknown`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=DISKGUARD_GIT_SHA");
    let from_env = std::env::var("DISKGUARD_GIT_SHA")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    let sha = from_env
        .or_else(from_git)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=DISKGUARD_GIT_SHA={sha}");
}

/// `1a2b3c4d5e6f`, with `-dirty` when tracked files differ from the commit.
fn from_git() -> Option<String> {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    let top = git(&manifest_dir, &["rev-parse", "--show-toplevel"])?;
    if Path::new(&top).canonicalize().ok()? != manifest_dir.canonicalize().ok()? {
        return None;
    }
    watch_git_state(&manifest_dir);
    let sha = git(&manifest_dir, &["rev-parse", "--short=12", "HEAD"])?;
    let dirty = Command::new("git")
        .current_dir(&manifest_dir)
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .is_ok_and(|o| o.status.success() && !o.stdout.is_empty());
    Some(if dirty { format!("{sha}-dirty") } else { sha })
}

/// Re-runs this script when HEAD moves. In a linked worktree `.git` is a file, so the
/// files are found through git itself: HEAD and the index live in the worktree's git
/// dir, branch refs in the common one.
fn watch_git_state(dir: &Path) {
    let absolute = |p: String| {
        let p = PathBuf::from(p);
        if p.is_absolute() { p } else { dir.join(p) }
    };
    let (Some(git_dir), Some(common)) = (
        git(dir, &["rev-parse", "--git-dir"]).map(absolute),
        git(dir, &["rev-parse", "--git-common-dir"]).map(absolute),
    ) else {
        return;
    };
    let mut watched = vec![git_dir.join("HEAD"), git_dir.join("index")];
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        watched.push(common.join(branch));
    }
    watched.push(common.join("packed-refs"));
    for path in watched.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}
