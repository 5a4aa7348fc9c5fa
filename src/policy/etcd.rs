//! etcd's rule: its quota level (warn at `quota_warn_percent`, critical on the NOSPACE
//! alarm) with its findings, and whether its data dir shares Docker's filesystem.

use serde::Serialize;

use super::{Finding, VolumeVerdict};
use crate::config::Settings;
use crate::sample::{EtcdView, Volume};

/// How close etcd's backend is to its quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QuotaLevel {
    Ok,
    /// At or above `quota_warn_percent`.
    Warn,
    /// NOSPACE is raised: etcd refuses every write.
    Critical,
}

/// etcd as the policy judged it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EtcdVerdict {
    /// `None` when etcd could not be read.
    pub quota_level: Option<QuotaLevel>,
    pub quota_used_percent: Option<f64>,
    /// `None` when either filesystem could not be read.
    pub shares_docker_fs: Option<bool>,
}

impl EtcdVerdict {
    pub fn readable(&self) -> bool {
        self.quota_level.is_some()
    }
}

/// The quota level alone.
pub fn quota_level(view: &EtcdView, warn_percent: f64) -> Option<QuotaLevel> {
    if !view.is_readable() {
        return None;
    }
    Some(if view.alarm_nospace {
        QuotaLevel::Critical
    } else if view.quota_used_percent().is_some_and(|p| p >= warn_percent) {
        QuotaLevel::Warn
    } else {
        QuotaLevel::Ok
    })
}

/// Judges etcd: its volume against Docker's, and its quota. `view` is `None` when etcd
/// is not watched (then only the volume rules apply, if its volume is sampled).
pub fn judge_etcd(
    view: Option<&EtcdView>,
    volumes: &[VolumeVerdict],
    settings: &Settings,
) -> (Option<EtcdVerdict>, Vec<Finding>) {
    let mut findings = Vec::new();
    let docker = volumes
        .iter()
        .find(|v| v.volume == Volume::Docker && v.stats.is_some());
    let etcd_volume = volumes.iter().find(|v| v.volume == Volume::Etcd);
    // The findings rule says what sharing (or filling its own) means; here only whether.
    let shares = match (
        docker.and_then(|d| d.stats),
        etcd_volume.and_then(|e| e.stats),
    ) {
        (Some(d), Some(e)) => Some(d.device == e.device),
        _ => None,
    };
    let Some(view) = view else {
        return (None, findings);
    };
    let level = quota_level(view, settings.etcd.quota_warn_percent);
    let percent = view.quota_used_percent();
    // An etcd that cannot be read is not a finding here: the etcd actor logs each change
    // of its health once, and `status` shows the error in its own `etcd` object.
    match level {
        Some(QuotaLevel::Critical) => findings.push(Finding {
            volume: Some(Volume::Etcd),
            message: "etcd raised its NOSPACE alarm and accepts only reads and deletes: compact, defragment, then `etcdctl alarm disarm` (or set etcd.maintenance = true)".into(),
        }),
        Some(QuotaLevel::Warn) => findings.push(Finding {
            volume: Some(Volume::Etcd),
            message: format!(
                "etcd's database is at {:.0}% of its quota: compact and defragment before it reaches NOSPACE",
                percent.unwrap_or_default()
            ),
        }),
        _ => {}
    }
    (
        Some(EtcdVerdict {
            quota_level: level,
            quota_used_percent: percent,
            shares_docker_fs: shares,
        }),
        findings,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(db: u64, quota: u64, nospace: bool) -> EtcdView {
        EtcdView {
            endpoint: "http://127.0.0.1:2379".into(),
            reachable: true,
            error: None,
            db_bytes: Some(db),
            in_use_bytes: Some(db / 2),
            quota_bytes: Some(quota),
            alarm_nospace: nospace,
            alarms: Vec::new(),
            member_id: Some(1),
            revision: Some(10),
        }
    }

    #[test]
    fn quota_levels_follow_warn_percent_and_the_alarm() {
        assert_eq!(
            quota_level(&view(79, 100, false), 80.0),
            Some(QuotaLevel::Ok)
        );
        assert_eq!(
            quota_level(&view(80, 100, false), 80.0),
            Some(QuotaLevel::Warn)
        );
        assert_eq!(
            quota_level(&view(120, 100, false), 80.0),
            Some(QuotaLevel::Warn)
        );
        assert_eq!(
            quota_level(&view(10, 100, true), 80.0),
            Some(QuotaLevel::Critical)
        );
        let down = EtcdView::failed("http://x", false, "refused".into());
        assert_eq!(quota_level(&down, 80.0), None);
    }

    #[test]
    fn unreadable_etcd_has_no_level() {
        let down = EtcdView::failed("http://x", false, "etcd http://x: refused".into());
        let (verdict, findings) = judge_etcd(Some(&down), &[], &Settings::default());
        assert_eq!(verdict.map(|v| v.readable()), Some(false));
        assert!(
            findings.is_empty(),
            "the actor logs it, status shows it: {findings:?}"
        );
    }

    #[test]
    fn the_alarm_says_how_to_recover() {
        let (verdict, findings) = judge_etcd(Some(&view(17, 16, true)), &[], &Settings::default());
        let verdict = verdict.expect("watched");
        assert_eq!(verdict.quota_level, Some(QuotaLevel::Critical));
        assert!(verdict.quota_used_percent.is_some_and(|p| p > 100.0));
        assert!(findings[0].message.contains("NOSPACE"));
    }
}
