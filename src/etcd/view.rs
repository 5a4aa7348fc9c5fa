//! One read of etcd as plain data: `/metrics` for the backend numbers, the alarm list,
//! and this member's status — the three calls the 15 s watch and `status` make.

use std::path::Path;

use super::{EtcdClient, EtcdError, Gateway, parse_metrics};
use crate::config::{EtcdSettings, Toggle};
use crate::error::chain;
use crate::sample::{EtcdAlarm, EtcdView};

/// Reads etcd. Never fails: what could not be read is in the view's `error`.
pub async fn read_view(etcd: &EtcdClient) -> EtcdView {
    let endpoint = etcd.endpoint();
    let (metrics, alarms, status) =
        tokio::join!(etcd.get_text("/metrics"), etcd.alarms(), etcd.status());
    let failed = |e: EtcdError| EtcdView::failed(endpoint, e.answered(), chain(&e));
    let text = match metrics {
        Ok(text) => text,
        Err(e) => return failed(e),
    };
    let backend = match parse_metrics(&text) {
        Ok(m) => m,
        Err(e) => {
            return failed(EtcdError::Garbage {
                url: format!("{endpoint}/metrics"),
                message: e.to_string(),
            });
        }
    };
    let alarms: Vec<EtcdAlarm> = match alarms {
        Ok(list) => list
            .into_iter()
            .filter(|a| !a.alarm.is_empty())
            .map(|a| EtcdAlarm {
                member_id: a.member_id,
                alarm: a.alarm,
            })
            .collect(),
        Err(e) => return failed(e),
    };
    // The status only adds the member id and revision (and the in-use size on an etcd
    // whose /metrics lacks it); the view stands without it.
    let status = status.ok();
    EtcdView {
        endpoint: endpoint.to_owned(),
        reachable: true,
        error: None,
        db_bytes: Some(backend.db_bytes),
        in_use_bytes: backend
            .in_use_bytes
            .or_else(|| status.as_ref().and_then(|s| s.in_use_bytes)),
        quota_bytes: Some(backend.quota_bytes),
        alarm_nospace: alarms.iter().any(|a| a.alarm == "NOSPACE"),
        alarms,
        member_id: status.as_ref().map(|s| s.member_id),
        revision: status.as_ref().map(|s| s.revision),
    }
}

/// `etcd.enabled`: `true` always watches, `false` never; `"auto"` watches when the data
/// dir exists or the endpoint answers.
pub fn watched(settings: &EtcdSettings, data_dir: &Path, view: &EtcdView) -> bool {
    match settings.enabled {
        Toggle::On => true,
        Toggle::Off => false,
        Toggle::Auto => view.reachable || data_dir.exists(),
    }
}
