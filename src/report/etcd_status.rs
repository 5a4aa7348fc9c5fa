//! etcd in `status`: the JSON object (contract: `db_bytes`, `quota_bytes`,
//! `alarm_nospace`) and its line in the table.

use serde::Serialize;

use crate::config::Settings;
use crate::human;
use crate::policy::{EtcdVerdict, QuotaLevel};
use crate::sample::EtcdView;

/// `status.etcd`; `null` when etcd is not watched.
#[derive(Debug, Serialize)]
pub struct EtcdStatus {
    pub endpoint: String,
    /// etcd answered (an answer that is not etcd's counts: see `error`).
    pub reachable: bool,
    pub error: Option<String>,
    pub db_bytes: Option<u64>,
    pub in_use_bytes: Option<u64>,
    pub quota_bytes: Option<u64>,
    pub quota_used_percent: Option<f64>,
    pub quota_level: Option<QuotaLevel>,
    /// `null` when etcd could not be read.
    pub alarm_nospace: Option<bool>,
    /// Raised alarms as `NAME@member-id-in-hex`, the way etcdctl prints member ids.
    pub alarms: Vec<String>,
    pub data_dir: String,
    /// `config`, `unit PATH` or `default`.
    pub data_dir_source: String,
    /// etcd's data dir is on Docker's filesystem (`null`: one of them cannot be read).
    pub shares_docker_fs: Option<bool>,
    pub maintenance: bool,
}

impl EtcdStatus {
    pub fn new(view: &EtcdView, verdict: Option<&EtcdVerdict>, settings: &Settings) -> Self {
        let readable = view.is_readable();
        EtcdStatus {
            endpoint: view.endpoint.clone(),
            reachable: view.reachable,
            error: view.error.clone(),
            db_bytes: view.db_bytes,
            in_use_bytes: view.in_use_bytes,
            quota_bytes: view.quota_bytes,
            quota_used_percent: view
                .quota_used_percent()
                .map(|p| (p * 100.0).round() / 100.0),
            quota_level: verdict.and_then(|v| v.quota_level),
            alarm_nospace: readable.then_some(view.alarm_nospace),
            alarms: view
                .alarms
                .iter()
                .map(|a| format!("{}@{:x}", a.alarm, a.member_id))
                .collect(),
            data_dir: settings.etcd.data_dir.display().to_string(),
            data_dir_source: settings.etcd.data_dir_source.describe(),
            shares_docker_fs: verdict.and_then(|v| v.shares_docker_fs),
            maintenance: settings.etcd.maintenance,
        }
    }

    /// One line for the table.
    pub fn line(&self) -> String {
        let mut out = format!("etcd: {}", self.endpoint);
        match (&self.error, self.db_bytes, self.quota_bytes) {
            (Some(e), _, _) => out.push_str(&format!(" — cannot be read: {e}")),
            (None, Some(db), Some(quota)) => {
                out.push_str(&format!(" — db {}", human::bytes(db)));
                if let Some(in_use) = self.in_use_bytes {
                    out.push_str(&format!(", in use {}", human::bytes(in_use)));
                }
                out.push_str(&format!(
                    ", quota {} ({:.1}%)",
                    human::bytes(quota),
                    self.quota_used_percent.unwrap_or_default()
                ));
                if self.alarms.is_empty() {
                    out.push_str(", no alarms");
                } else {
                    out.push_str(&format!(", alarms: {}", self.alarms.join(" ")));
                }
            }
            _ => {}
        }
        let fs = match self.shares_docker_fs {
            Some(true) => " on Docker's filesystem",
            Some(false) => " on its own filesystem",
            None => "",
        };
        out.push_str(&format!(
            "\n  data dir {} ({}){fs}; maintenance {}",
            self.data_dir,
            self.data_dir_source,
            if self.maintenance { "on" } else { "off" }
        ));
        out
    }
}
