//! Delivery to CloudWatch: one PutMetricData call per interval (split only past 1,000
//! datums or 1 MB), never NaN or infinity, failures retried with jittered backoff, unsent
//! intervals buffered in memory (bounded; the oldest dropped first, counted and logged)
//! and sent with their own timestamps when the endpoint answers again, and a final flush
//! on SIGTERM bounded to fit the 2 s exit. Runs as its own task: a slow endpoint delays
//! nothing else.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_sdk_cloudwatch::error::DisplayErrorContext;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit, StatisticSet};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::counters::Counters;
use super::metrics::{Batch, Datum, Scope, Unit, Value};
use crate::act::PlanReceiver;
use crate::config::{Settings, Toggle};

/// PutMetricData limits (conventions.md).
const MAX_DATUMS: usize = 1000;
const MAX_BYTES: usize = 1_000_000;
/// CloudWatch's longest dimension value.
pub const MAX_DIMENSION_VALUE: usize = 1024;
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// The final flush gets this much of the 2 s exit.
pub const FINAL_FLUSH: Duration = Duration::from_millis(1200);

/// The dimensions every instance metric carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `InstanceId` or `Host`, and its value; `None` when not configured.
    pub instance: Option<(&'static str, String)>,
    pub with_cluster: bool,
}

/// This machine's name, for `Host` off EC2.
pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

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

/// Whether CloudWatch is to be used: off, or on with a client.
async fn client(settings: &Settings) -> Option<aws_sdk_cloudwatch::Client> {
    let sdk = crate::sample::ecs::sdk_config().await;
    let region = sdk.region().is_some();
    let credentials = match sdk.credentials_provider() {
        Some(p) => {
            use aws_sdk_cloudwatch::config::ProvideCredentials;
            tokio::time::timeout(Duration::from_secs(5), p.provide_credentials())
                .await
                .is_ok_and(|r| r.is_ok())
        }
        None => false,
    };
    if !(region && credentials) {
        let why = if region {
            "no AWS credentials"
        } else {
            "no AWS region"
        };
        if settings.cloudwatch.enabled == Toggle::On {
            warn!(
                "CloudWatch is on in the configuration, but {why} were found; metrics are buffered until they are"
            );
        } else {
            info!("CloudWatch off: {why} found (cloudwatch.enabled = \"auto\")");
            return None;
        }
    }
    // One attempt per call: the actor retries with its own backoff, so that the proxy
    // (and the bill) sees exactly one PutMetricData per interval when all is well.
    let config = aws_sdk_cloudwatch::config::Builder::from(&sdk)
        .retry_config(RetryConfig::standard().with_max_attempts(1))
        .build();
    Some(aws_sdk_cloudwatch::Client::from_conf(config))
}

/// Resolves the instance dimension: `InstanceId` from IMDS, else `Host`.
async fn identity(settings: &Settings) -> Identity {
    let dims = &settings.cloudwatch.dimensions;
    let instance = if dims.iter().any(|d| d == "InstanceId") {
        match crate::sample::ecs::instance_id().await {
            Ok(id) => Some(("InstanceId", id)),
            Err(_) => Some(("Host", hostname())),
        }
    } else if dims.iter().any(|d| d == "Host") {
        Some(("Host", hostname()))
    } else {
        None
    };
    Identity {
        instance,
        with_cluster: dims.iter().any(|d| d == "ClusterName"),
    }
}

/// Runs until the plan channel closes, then flushes what is left within `FINAL_FLUSH`.
pub async fn run(
    settings: Settings,
    mut batches: mpsc::UnboundedReceiver<Batch>,
    counters: Arc<Counters>,
    mut plans: PlanReceiver,
) {
    let Some(client) = client(&settings).await else {
        // Off: keep draining the channel so the loop's sends never pile up.
        while batches.recv().await.is_some() {}
        return;
    };
    let identity = identity(&settings).await;
    info!(
        namespace = %settings.cloudwatch.namespace,
        interval = %humantime::format_duration(settings.cloudwatch.interval),
        instance = ?identity.instance,
        "publishing metrics to CloudWatch"
    );
    let mut sender = Sender {
        client,
        namespace: settings.cloudwatch.namespace.clone(),
        high_resolution: settings.cloudwatch.high_resolution,
        identity,
        buffer: VecDeque::new(),
        capacity: settings.cloudwatch.max_buffered_intervals,
        counters,
        backoff: BACKOFF_START,
        next_try: Instant::now(),
        failing: false,
    };
    loop {
        let wait = sender.next_try.saturating_duration_since(Instant::now());
        tokio::select! {
            batch = batches.recv() => match batch {
                Some(b) => sender.push(b),
                None => break,
            },
            _ = tokio::time::sleep(wait), if !sender.buffer.is_empty() => sender.send_oldest().await,
            changed = plans.changed() => if changed.is_err() { break },
        }
    }
    // Shutdown: the loop has sent its last, partial interval before closing the plans.
    while let Ok(b) = batches.try_recv() {
        sender.push(b);
    }
    let deadline = Instant::now() + FINAL_FLUSH;
    while !sender.buffer.is_empty() && Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, sender.send_oldest())
            .await
            .is_err()
            || sender.failing
        {
            break;
        }
    }
    if !sender.buffer.is_empty() {
        warn!(
            unsent = sender.buffer.len(),
            "stopping with metric intervals unsent"
        );
    }
}

struct Sender {
    client: aws_sdk_cloudwatch::Client,
    namespace: String,
    high_resolution: bool,
    identity: Identity,
    buffer: VecDeque<Batch>,
    capacity: usize,
    counters: Arc<Counters>,
    backoff: Duration,
    next_try: Instant,
    failing: bool,
}

impl Sender {
    fn push(&mut self, batch: Batch) {
        self.buffer.push_back(batch);
        while self.buffer.len() > self.capacity {
            if let Some(old) = self.buffer.pop_front() {
                let dropped = self
                    .counters
                    .metric_intervals_dropped
                    .fetch_add(1, Ordering::Relaxed)
                    + 1;
                warn!(
                    dropped_total = dropped,
                    interval = %humantime::format_rfc3339_seconds(old.timestamp),
                    "CloudWatch buffer full ({} intervals): dropped the oldest",
                    self.capacity
                );
            }
        }
    }

    /// Sends the oldest buffered interval; on failure keeps it and backs off.
    async fn send_oldest(&mut self) {
        let Some(batch) = self.buffer.front() else {
            return;
        };
        let (datums, skipped) = to_datums(batch, &self.identity, self.high_resolution);
        if skipped > 0 {
            self.counters
                .metric_values_skipped
                .fetch_add(skipped as u64, Ordering::Relaxed);
            warn!(
                skipped,
                "left out metric values that were not finite or had no cluster to name"
            );
        }
        for request in split(datums) {
            let sent = self
                .client
                .put_metric_data()
                .namespace(&self.namespace)
                .set_metric_data(Some(request))
                .send()
                .await;
            if let Err(e) = sent {
                if !self.failing {
                    warn!(error = %DisplayErrorContext(&e), buffered = self.buffer.len(), "CloudWatch PutMetricData failed; buffering and retrying");
                }
                self.failing = true;
                // Jitter: anywhere from half to the whole backoff.
                let jittered = self.backoff.mul_f64(0.5 + fastrand::f64() / 2.0);
                self.next_try = Instant::now() + jittered;
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                return;
            }
        }
        if self.failing {
            info!(
                buffered = self.buffer.len(),
                "CloudWatch answers again; sending the buffered intervals"
            );
        }
        self.failing = false;
        self.backoff = BACKOFF_START;
        self.next_try = Instant::now();
        self.buffer.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::metrics::StatSet;
    use crate::sample::Volume;
    use std::time::SystemTime;

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
