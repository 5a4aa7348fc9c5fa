//! etcd's backend numbers from its Prometheus text on `/metrics`, parsed with the
//! `prometheus-parse` crate (types, labels, exponent floats, comments all handled there).

/// The db size: etcd ≥ 3.4 names it this way …
pub const DB_TOTAL: &str = "etcd_mvcc_db_total_size_in_bytes";
/// … and 3.3 (still on older Container Linux hosts) under the debugging prefix; 3.4
/// publishes both.
pub const DB_TOTAL_3_3: &str = "etcd_debugging_mvcc_db_total_size_in_bytes";
/// Bytes of the db file holding live data (3.4+); the rest is free pages a defragment
/// gives back.
pub const DB_IN_USE: &str = "etcd_mvcc_db_total_size_in_use_in_bytes";
/// `--quota-backend-bytes` as etcd applies it.
pub const QUOTA: &str = "etcd_server_quota_backend_bytes";

/// The three numbers diskguard reads from `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendMetrics {
    pub db_bytes: u64,
    /// `None` on etcd 3.3, which does not publish it.
    pub in_use_bytes: Option<u64>,
    pub quota_bytes: u64,
}

/// Why a `/metrics` body could not be used; the caller adds the URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsError {
    #[error("no {0} in /metrics (is this etcd?)")]
    Missing(&'static str),
    #[error("{name} is {value}, not a byte count")]
    NotBytes { name: &'static str, value: String },
}

/// Reads the db size (either name), the in-use size and the quota.
pub fn parse_metrics(text: &str) -> Result<BackendMetrics, MetricsError> {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    // Reading from a string cannot fail; a malformed line is skipped by the parser, and a
    // missing number is reported below.
    let scrape =
        prometheus_parse::Scrape::parse(lines).map_err(|_| MetricsError::Missing(DB_TOTAL))?;
    let value = |name: &'static str| -> Result<Option<u64>, MetricsError> {
        let Some(sample) = scrape.samples.iter().find(|s| s.metric == name) else {
            return Ok(None);
        };
        let v = match sample.value {
            prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => {
                return Err(MetricsError::NotBytes {
                    name,
                    value: "a histogram or summary".into(),
                });
            }
        };
        if !(v.is_finite() && v >= 0.0) {
            return Err(MetricsError::NotBytes {
                name,
                value: v.to_string(),
            });
        }
        // Byte counts are integers; Prometheus prints them as floats (1.6777216e+07).
        Ok(Some(v.round() as u64))
    };
    let db_bytes = match value(DB_TOTAL)? {
        Some(v) => v,
        None => value(DB_TOTAL_3_3)?.ok_or(MetricsError::Missing(DB_TOTAL))?,
    };
    let quota_bytes = value(QUOTA)?.ok_or(MetricsError::Missing(QUOTA))?;
    if quota_bytes == 0 {
        return Err(MetricsError::NotBytes {
            name: QUOTA,
            value: "0".into(),
        });
    }
    Ok(BackendMetrics {
        db_bytes,
        in_use_bytes: value(DB_IN_USE)?,
        quota_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ETCD_3_4: &str = "\
# HELP etcd_debugging_mvcc_db_total_size_in_bytes Total size of the underlying database physically allocated in bytes.
# TYPE etcd_debugging_mvcc_db_total_size_in_bytes gauge
etcd_debugging_mvcc_db_total_size_in_bytes 20480
# HELP etcd_mvcc_db_total_size_in_bytes Total size of the underlying database physically allocated in bytes.
# TYPE etcd_mvcc_db_total_size_in_bytes gauge
etcd_mvcc_db_total_size_in_bytes 1.7371136e+07
# TYPE etcd_mvcc_db_total_size_in_use_in_bytes gauge
etcd_mvcc_db_total_size_in_use_in_bytes 1.3701120e+07
# TYPE etcd_server_quota_backend_bytes gauge
etcd_server_quota_backend_bytes 1.6777216e+07
# TYPE etcd_disk_wal_fsync_duration_seconds histogram
etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"} 3
etcd_disk_wal_fsync_duration_seconds_bucket{le=\"+Inf\"} 5
etcd_disk_wal_fsync_duration_seconds_sum 0.01
etcd_disk_wal_fsync_duration_seconds_count 5
";

    #[test]
    fn reads_the_3_4_names_with_exponent_floats() {
        let m = parse_metrics(ETCD_3_4).expect("parses");
        assert_eq!(
            m,
            BackendMetrics {
                db_bytes: 17_371_136,
                in_use_bytes: Some(13_701_120),
                quota_bytes: 16_777_216,
            }
        );
    }

    #[test]
    fn falls_back_to_the_3_3_debugging_name_without_in_use() {
        let text = "\
# TYPE etcd_debugging_mvcc_db_total_size_in_bytes gauge
etcd_debugging_mvcc_db_total_size_in_bytes 4096
# TYPE etcd_server_quota_backend_bytes gauge
etcd_server_quota_backend_bytes 2.147483648e+09
";
        let m = parse_metrics(text).expect("parses");
        assert_eq!(m.db_bytes, 4096);
        assert_eq!(m.in_use_bytes, None);
        assert_eq!(m.quota_bytes, 2_147_483_648);
    }

    #[test]
    fn garbage_is_an_error_naming_what_is_missing() {
        assert_eq!(
            parse_metrics("<html>hello</html>\n{\"json\": 1}\n"),
            Err(MetricsError::Missing(DB_TOTAL))
        );
        assert_eq!(
            parse_metrics("etcd_mvcc_db_total_size_in_bytes 10\n"),
            Err(MetricsError::Missing(QUOTA))
        );
    }

    #[test]
    fn negative_or_infinite_numbers_are_refused() {
        let text = "etcd_mvcc_db_total_size_in_bytes -5\netcd_server_quota_backend_bytes 100\n";
        assert!(matches!(
            parse_metrics(text),
            Err(MetricsError::NotBytes { .. })
        ));
        let text = "etcd_mvcc_db_total_size_in_bytes 5\netcd_server_quota_backend_bytes +Inf\n";
        assert!(matches!(
            parse_metrics(text),
            Err(MetricsError::NotBytes { .. })
        ));
    }
}
