//! The findings rule: what an operator should know, with what to do about it — volumes
//! that cannot be read, etcd sharing Docker's filesystem or filling its own, etcd's quota.

use serde::Serialize;

use super::level::Level;
use super::volume::VolumeVerdict;
use crate::config::Settings;
use crate::sample::{Snapshot, Volume};

/// Something an operator should know, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub volume: Option<Volume>,
    pub message: String,
}

pub fn findings(
    volumes: &[VolumeVerdict],
    snapshot: &Snapshot,
    settings: &Settings,
) -> Vec<Finding> {
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
                    "etcd data dir {} is on the same filesystem as Docker's data root {}: a full Docker disk takes etcd down; move etcd to its own volume",
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
    if let Some(etcd) = &snapshot.etcd {
        let quota = percent(etcd.db_bytes, etcd.quota_bytes);
        if etcd.alarm_nospace {
            findings.push(Finding {
                volume: Some(Volume::Etcd),
                message: "etcd raised its NOSPACE alarm and accepts only reads and deletes: compact, defragment, then `etcdctl alarm disarm`".into(),
            });
        } else if quota >= settings.etcd.quota_warn_percent {
            findings.push(Finding {
                volume: Some(Volume::Etcd),
                message: format!("etcd's database is at {quota:.0}% of its quota: compact and defragment before it reaches NOSPACE"),
            });
        }
    }
    findings
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}
