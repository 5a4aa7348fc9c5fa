//! A private dockerd on a loop-mounted ext4, a diskguard config pointing at it, and the
//! small readers the Docker tests share (`prune` output lines, usage after a sync).

use std::path::PathBuf;
use std::process::{Command, Output};

use crate::fs::loopfs::fs_usage;
use crate::{Dockerd, LoopFsOptions};

pub const MIB: u64 = 1 << 20;

/// A private dockerd on a fresh ext4 of `mib` MiB, and a config pointing diskguard at it.
#[derive(Debug)]
pub struct World {
    pub d: Dockerd,
    pub config: PathBuf,
    pub _tmp: tempfile::TempDir,
}

pub fn world(mib: u64, extra: &str) -> World {
    let d = Dockerd::start_on_loopfs(&LoopFsOptions::new(mib));
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("diskguard.toml");
    std::fs::write(
        &config,
        format!(
            "[sample]\ninterval = \"200ms\"\ninventory_interval = \"2s\"\n\
             [docker]\nhost = {:?}\nroot = {:?}\nmin_image_age = \"1s\"\nstopped_container_age = \"4s\"\n{extra}\n\
             [etcd]\nenabled = false\n",
            d.docker_host(),
            d.data_root().display().to_string()
        ),
    )
    .expect("write config");
    World {
        d,
        config,
        _tmp: tmp,
    }
}

pub use crate::processes::cli::diskguard;

/// `word rung id name bytes` lines of `prune` output → (rung, id) for lines starting `word`.
pub fn lines_with(out: &Output, word: &str) -> Vec<(String, String)> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            if parts.next()? != word {
                return None;
            }
            Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
        })
        .collect()
}

pub fn used_percent(d: &Dockerd) -> f64 {
    Command::new("sync")
        .arg("-f")
        .arg(d.data_root())
        .status()
        .expect("sync");
    fs_usage(d.data_root()).used_percent()
}

pub fn exists(d: &Dockerd, id: &str) -> bool {
    d.docker()
        .args(["inspect", id])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}
