//! Checks across keys: threshold order, ranges that depend on other keys, and the
//! CloudWatch section's names and limits.

use std::time::Duration;

use super::settings::{ALLOWED_DIMENSIONS, EXTRA_METRICS, Invalid, MIN_SAMPLE_INTERVAL, Settings};

impl Settings {
    /// The relations between keys that no single key can check.
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        let t = &self.thresholds;
        if self.sample.interval < MIN_SAMPLE_INTERVAL {
            return Err(Invalid::new("sample.interval", "must be at least 100ms"));
        }
        if self.sample.inventory_interval < self.sample.interval {
            return Err(Invalid::new(
                "sample.inventory_interval",
                "must not be shorter than sample.interval",
            ));
        }
        let order = [
            (
                "thresholds.prune_target",
                t.prune_target,
                "thresholds.prune_start",
                t.prune_start,
            ),
            (
                "thresholds.prune_start",
                t.prune_start,
                "thresholds.drain",
                t.drain,
            ),
            (
                "thresholds.drain",
                t.drain,
                "thresholds.critical",
                t.critical,
            ),
        ];
        for (low_key, low, high_key, high) in order {
            if low >= high {
                return Err(Invalid::new(
                    low_key,
                    format!(
                        "{low} must be below {high_key} ({high}): prune_target < prune_start < drain < critical ≤ 100"
                    ),
                ));
            }
        }
        if t.recover >= t.prune_start {
            return Err(Invalid::new(
                "thresholds.recover",
                format!(
                    "{} must be below thresholds.prune_start ({})",
                    t.recover, t.prune_start
                ),
            ));
        }
        let m = self.ecs.max_draining_percent;
        if !(m.is_finite() && (0.0..=100.0).contains(&m)) {
            return Err(Invalid::new(
                "ecs.max_draining_percent",
                format!("{m} is not a percent in [0, 100]"),
            ));
        }
        let m = self.escalate.max_percent;
        if !(m.is_finite() && (0.0..=100.0).contains(&m)) {
            return Err(Invalid::new(
                "escalate.max_percent",
                format!("{m} is not a percent in [0, 100]"),
            ));
        }
        let r = self.ecs.idle_read_percent;
        if !(r.is_finite() && r > 0.0 && r <= 100.0) {
            return Err(Invalid::new(
                "ecs.idle_read_percent",
                format!("{r} is not a percent in (0, 100]"),
            ));
        }
        // ECS allows 255 characters; anything longer cannot be a cluster, and would not fit
        // a CloudWatch dimension either.
        if self.ecs.cluster.chars().count() > 255 {
            return Err(Invalid::new(
                "ecs.cluster",
                "longer than ECS's 255-character limit for cluster names",
            ));
        }
        if !self.ecs.introspection_url.starts_with("http://") {
            return Err(Invalid::new(
                "ecs.introspection_url",
                "must be an http:// URL",
            ));
        }
        if !self.etcd.endpoint.starts_with("http://") && !self.etcd.endpoint.starts_with("https://")
        {
            return Err(Invalid::new(
                "etcd.endpoint",
                "must be an http:// or https:// URL",
            ));
        }
        self.validate_etcd_tls()?;
        if let Some(host) = &self.docker.host {
            if !(host.starts_with("unix://") || host.starts_with("tcp://")) {
                return Err(Invalid::new(
                    "docker.host",
                    "must start with unix:// or tcp://",
                ));
            }
        }
        self.validate_cloudwatch()
    }

    fn validate_etcd_tls(&self) -> Result<(), Invalid> {
        let e = &self.etcd;
        let set = |p: &std::path::Path| !p.as_os_str().is_empty();
        let https = e.endpoint.starts_with("https://");
        if https && !set(&e.ca_file) {
            return Err(Invalid::new(
                "etcd.ca_file",
                "required for an https:// endpoint: the CA that signed etcd's certificate",
            ));
        }
        if !https && (set(&e.ca_file) || set(&e.cert_file) || set(&e.key_file)) {
            return Err(Invalid::new(
                "etcd.endpoint",
                "ca_file, cert_file and key_file are set but the endpoint is not https://",
            ));
        }
        if set(&e.cert_file) != set(&e.key_file) {
            let key = if set(&e.cert_file) {
                "etcd.key_file"
            } else {
                "etcd.cert_file"
            };
            return Err(Invalid::new(
                key,
                "cert_file and key_file go together (the client certificate and its key)",
            ));
        }
        if e.interval < Duration::from_secs(1) {
            return Err(Invalid::new("etcd.interval", "must be at least 1s"));
        }
        if self.host.systemd_dirs.is_empty() {
            return Err(Invalid::new(
                "host.systemd_dirs",
                "must name at least one directory",
            ));
        }
        Ok(())
    }

    fn validate_cloudwatch(&self) -> Result<(), Invalid> {
        let w = &self.cloudwatch;
        let ns = &w.namespace;
        if ns.is_empty() || ns.len() > 255 {
            return Err(Invalid::new(
                "cloudwatch.namespace",
                "must be 1 to 255 characters",
            ));
        }
        if ns.starts_with("AWS/") {
            return Err(Invalid::new(
                "cloudwatch.namespace",
                format!("{ns:?} starts with \"AWS/\", which is reserved for AWS services"),
            ));
        }
        for dim in &w.dimensions {
            if !ALLOWED_DIMENSIONS.contains(&dim.as_str()) {
                return Err(Invalid::new(
                    "cloudwatch.dimensions",
                    format!("{dim:?} is not one of {}", ALLOWED_DIMENSIONS.join(", ")),
                ));
            }
        }
        for metric in &w.extra_metrics {
            if !EXTRA_METRICS.contains(&metric.as_str()) {
                return Err(Invalid::new(
                    "cloudwatch.extra_metrics",
                    format!("{metric:?} is not one of {}", EXTRA_METRICS.join(", ")),
                ));
            }
        }
        if !(1..=10_080).contains(&w.max_buffered_intervals) {
            return Err(Invalid::new(
                "cloudwatch.max_buffered_intervals",
                "must be 1 to 10080 (a week of minutes)",
            ));
        }
        if w.interval < Duration::from_secs(1) {
            return Err(Invalid::new("cloudwatch.interval", "must be at least 1s"));
        }
        Ok(())
    }
}
