//! The findings rule: what an operator should know, with what to do about it — volumes
//! that cannot be read, etcd sharing Docker's filesystem or filling its own. etcd's quota
//! is the etcd rule's (`etcd.rs`).

use serde::Serialize;

use super::level::Level;
use super::volume::VolumeVerdict;
use crate::sample::Volume;

/// Something an operator should know, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub volume: Option<Volume>,
    pub message: String,
}

pub fn findings(volumes: &[VolumeVerdict]) -> Vec<Finding> {
    let mut findings: Vec<Finding> = volumes
        .iter()
        .filter_map(|v| {
            v.error.as_ref().map(|e| Finding {
                volume: Some(v.volume),
                message: e.clone(),
            })
        })
        .collect();
    let find = |which| volumes.iter().find(|v| v.volume == which);
    if let (Some(d), Some(e)) = (find(Volume::Docker), find(Volume::Etcd)) {
        match (d.stats, e.stats) {
            (Some(ds), Some(es)) if ds.device == es.device => findings.push(Finding {
                volume: Some(Volume::Etcd),
                message: format!(
                    "etcd data dir {} is on the same filesystem as Docker's data root {}: a full Docker disk takes etcd down (diskguard's reclaim of Docker space is what keeps etcd alive); move etcd to its own volume",
                    e.path.display(),
                    d.path.display()
                ),
            }),
            (Some(_), Some(_)) if e.level >= Level::Prune => findings.push(Finding {
                volume: Some(Volume::Etcd),
                message: format!(
                    "etcd's filesystem is {:.1}% full and diskguard cannot reclaim it: compact and defragment etcd or grow the volume",
                    e.usage_percent
                ),
            }),
            _ => {}
        }
    }
    findings
}
