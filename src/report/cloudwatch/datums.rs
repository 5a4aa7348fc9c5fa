//! Closed intervals as CloudWatch datums: units, dimensions (cut to CloudWatch's limit),
//! no NaN or infinity, and requests split at the PutMetricData limits.

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit, StatisticSet};
use tracing::warn;

use super::Identity;
use crate::report::metrics::{Batch, Datum, Scope, Unit, Value};

/// PutMetricData limits (conventions.md).
const MAX_DATUMS: usize = 1000;
const MAX_BYTES: usize = 1_000_000;
/// CloudWatch's longest dimension value.
pub const MAX_DIMENSION_VALUE: usize = 1024;

fn unit(u: Unit) -> StandardUnit {
    match u {
        Unit::Percent => StandardUnit::Percent,
        Unit::Bytes => StandardUnit::Bytes,
        Unit::Seconds => StandardUnit::Seconds,
        Unit::Count => StandardUnit::Count,
        Unit::None => StandardUnit::None,
    }
}

/// A dimension, its value cut to CloudWatch's limit (with a log line) rather than sent to
/// fail the whole batch.
fn dimension(name: &str, value: &str) -> Dimension {
    let value = if value.chars().count() > MAX_DIMENSION_VALUE {
        warn!(
            dimension = name,
            "dimension value longer than {MAX_DIMENSION_VALUE} characters; truncated"
        );
        value.chars().take(MAX_DIMENSION_VALUE).collect()
    } else {
        value.to_owned()
    };
    Dimension::builder().name(name).value(value).build()
}

/// The batch as SDK datums, with what could not be sent (non-finite values, and metrics
/// that need a cluster name in local mode) left out and counted.
pub fn to_datums(
    batch: &Batch,
    identity: &Identity,
    high_resolution: bool,
) -> (Vec<MetricDatum>, usize) {
    let mut skipped = 0;
    let mut out = Vec::with_capacity(batch.datums.len());
    let timestamp = aws_sdk_cloudwatch::primitives::DateTime::from(batch.timestamp);
    for Datum {
        name,
        scope,
        unit: u,
        value,
    } in &batch.datums
    {
        if !value.is_finite() {
            skipped += 1;
            continue;
        }
        let mut dims = Vec::new();
        match scope {
            Scope::Cluster => match &batch.cluster {
                Some(c) => dims.push(dimension("ClusterName", c)),
                None => continue,
            },
            Scope::Instance | Scope::Volume(_) => {
                if let (true, Some(c)) = (identity.with_cluster, &batch.cluster) {
                    dims.push(dimension("ClusterName", c));
                }
                if let Some((n, v)) = &identity.instance {
                    dims.push(dimension(n, v));
                }
                if let Scope::Volume(v) = scope {
                    dims.push(dimension("Volume", v.name()));
                }
            }
        }
        let mut d = MetricDatum::builder()
            .metric_name(*name)
            .set_dimensions(Some(dims))
            .timestamp(timestamp)
            .unit(unit(*u))
            .storage_resolution(if high_resolution { 1 } else { 60 });
        d = match value {
            Value::Single(v) => d.value(*v),
            Value::Stats(s) => d.statistic_values(
                StatisticSet::builder()
                    .sample_count(s.count)
                    .sum(s.sum)
                    .minimum(s.min)
                    .maximum(s.max)
                    .build(),
            ),
        };
        out.push(d.build());
    }
    // One datum per task family that caused an eviction or a drain in the interval, by
    // cluster and family only: the alarm counts them across the fleet.
    for (family, n) in &batch.evictions {
        let mut dims = Vec::new();
        if let Some(c) = &batch.cluster {
            dims.push(dimension("ClusterName", c));
        }
        dims.push(dimension("TaskFamily", family));
        out.push(
            MetricDatum::builder()
                .metric_name("Evictions")
                .set_dimensions(Some(dims))
                .timestamp(timestamp)
                .unit(StandardUnit::Count)
                .storage_resolution(if high_resolution { 1 } else { 60 })
                .value(*n as f64)
                .build(),
        );
    }
    (out, skipped)
}

/// Splits datums into requests of at most 1,000 datums and about 1 MB (estimated
/// generously, since the wire size depends on the protocol).
pub fn split(datums: Vec<MetricDatum>) -> Vec<Vec<MetricDatum>> {
    let size = |d: &MetricDatum| {
        128 + d.metric_name().map_or(0, str::len)
            + d.dimensions()
                .iter()
                .map(|x| 16 + x.name().map_or(0, str::len) + x.value().map_or(0, str::len))
                .sum::<usize>()
    };
    let mut requests = vec![Vec::new()];
    let mut bytes = 0;
    for d in datums {
        let s = size(&d);
        let current = requests
            .last_mut()
            .expect("there is always a current request");
        if !current.is_empty() && (current.len() == MAX_DATUMS || bytes + s > MAX_BYTES) {
            requests.push(Vec::new());
            bytes = 0;
        }
        bytes += s;
        requests.last_mut().expect("just pushed").push(d);
    }
    requests.retain(|r| !r.is_empty());
    requests
}

#[cfg(test)]
mod tests {
    use super::super::Identity;
    use super::*;
    use crate::report::metrics::StatSet;
    use crate::sample::Volume;
    use std::time::{Duration, SystemTime};

    fn batch(values: Vec<(&'static str, Scope, Value)>) -> Batch {
        Batch {
            timestamp: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            datums: values
                .into_iter()
                .map(|(name, scope, value)| Datum {
                    name,
                    scope,
                    unit: Unit::Percent,
                    value,
                })
                .collect(),
            cluster: Some("prod".into()),
            evictions: Vec::new(),
        }
    }

    fn id() -> Identity {
        Identity {
            instance: Some(("InstanceId", "i-0abc".into())),
            with_cluster: true,
        }
    }

    #[test]
    fn non_finite_values_are_never_sent() {
        let nan = StatSet {
            count: 1.0,
            sum: f64::NAN,
            min: 0.0,
            max: 1.0,
        };
        let b = batch(vec![
            (
                "DiskUsedPercent",
                Scope::Volume(Volume::Docker),
                Value::Stats(nan),
            ),
            (
                "TimeToFullSeconds",
                Scope::Volume(Volume::Docker),
                Value::Single(f64::INFINITY),
            ),
            ("ReclaimedBytes", Scope::Instance, Value::Single(5.0)),
        ]);
        let (datums, skipped) = to_datums(&b, &id(), false);
        assert_eq!(skipped, 2);
        assert_eq!(datums.len(), 1);
        assert_eq!(datums[0].metric_name(), Some("ReclaimedBytes"));
    }

    #[test]
    fn dimensions_follow_the_contract() {
        let b = batch(vec![
            (
                "DiskUsedPercent",
                Scope::Volume(Volume::Docker),
                Value::Single(1.0),
            ),
            ("Draining", Scope::Instance, Value::Single(0.0)),
            ("Draining", Scope::Cluster, Value::Single(0.0)),
        ]);
        let (datums, _) = to_datums(&b, &id(), true);
        let names = |d: &MetricDatum| {
            d.dimensions()
                .iter()
                .map(|x| x.name().unwrap_or_default().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&datums[0]), ["ClusterName", "InstanceId", "Volume"]);
        assert_eq!(names(&datums[1]), ["ClusterName", "InstanceId"]);
        assert_eq!(names(&datums[2]), ["ClusterName"]);
        assert_eq!(datums[0].storage_resolution(), Some(1));
    }

    #[test]
    fn without_a_cluster_the_roll_up_is_left_out_and_the_rest_go_without_cluster_name() {
        let mut b = batch(vec![
            (
                "DiskUsedPercent",
                Scope::Volume(Volume::Docker),
                Value::Single(1.0),
            ),
            ("Draining", Scope::Cluster, Value::Single(0.0)),
        ]);
        b.cluster = None;
        let (datums, _) = to_datums(&b, &id(), false);
        assert_eq!(datums.len(), 1);
        assert!(
            datums[0]
                .dimensions()
                .iter()
                .all(|d| d.name() != Some("ClusterName"))
        );
    }

    #[test]
    fn long_dimension_values_are_truncated_not_sent_to_fail() {
        let mut b = batch(vec![("Draining", Scope::Instance, Value::Single(0.0))]);
        b.cluster = Some("c".repeat(3000));
        let (datums, _) = to_datums(&b, &id(), false);
        assert_eq!(
            datums[0].dimensions()[0].value().map(str::len),
            Some(MAX_DIMENSION_VALUE)
        );
    }

    #[test]
    fn requests_split_only_past_a_thousand_datums() {
        let one = || {
            MetricDatum::builder()
                .metric_name("DiskUsedPercent")
                .value(1.0)
                .build()
        };
        assert_eq!(split((0..1000).map(|_| one()).collect()).len(), 1);
        let parts = split((0..2500).map(|_| one()).collect());
        assert_eq!(
            parts.iter().map(Vec::len).collect::<Vec<_>>(),
            [1000, 1000, 500]
        );
    }
}
