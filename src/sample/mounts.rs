//! Which mount holds a watched path (sysinfo reads the mount table). Used at start-up and
//! in `status`, never on the 1 s path: listing mounts stats every filesystem on the host.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// The mount a path lives on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MountInfo {
    pub mount_point: PathBuf,
    pub device: String,
    pub fs_type: String,
}

/// The deepest mount point that contains `path`, or `None` if the path cannot be resolved.
pub fn mount_of(path: &Path) -> Option<MountInfo> {
    let path = path.canonicalize().ok()?;
    // Names and mount points only: no space or I/O counters are needed here.
    let disks =
        sysinfo::Disks::new_with_refreshed_list_specifics(sysinfo::DiskRefreshKind::nothing())
            .ok()?;
    disks
        .iter()
        .filter(|d| path.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().as_os_str().len())
        .map(|d| MountInfo {
            mount_point: d.mount_point().to_owned(),
            device: d.name().to_string_lossy().into_owned(),
            fs_type: d.file_system().to_string_lossy().into_owned(),
        })
}
