//! Where etcd keeps its data: the config file's `etcd.data_dir` when written there, else
//! `ETCD_DATA_DIR` from the etcd unit's environment (Flatcar's etcd-member, CoreOS's
//! etcd2, a plain etcd unit, with their drop-ins), else the default.

use std::path::PathBuf;

use crate::config::{DataDirSource, Settings};
use crate::unit_file::read_unit;

/// The units that run etcd on CoreOS-lineage hosts, in the order they are looked for.
pub const ETCD_UNITS: &[&str] = &["etcd-member.service", "etcd2.service", "etcd.service"];

/// The data dir from the first etcd unit that sets `ETCD_DATA_DIR`, with that unit.
pub fn from_units(dirs: &[PathBuf]) -> Option<(PathBuf, PathBuf)> {
    ETCD_UNITS.iter().find_map(|name| {
        // An unreadable unit is as good as absent here; `doctor` reports it.
        let unit = read_unit(dirs, name).ok().flatten()?;
        let dir = unit.environment().remove("ETCD_DATA_DIR")?;
        Some((PathBuf::from(dir), unit.path))
    })
}

/// Applies discovery to `settings.etcd.data_dir` unless the config file set it.
pub fn resolve_data_dir(settings: &mut Settings) {
    if settings.etcd.data_dir_source == DataDirSource::Config {
        return;
    }
    if let Some((dir, unit)) = from_units(&settings.host.systemd_dirs) {
        settings.etcd.data_dir = dir;
        settings.etcd.data_dir_source = DataDirSource::Unit(unit);
    }
}
