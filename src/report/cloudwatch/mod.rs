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
use tokio::sync::mpsc;
use tracing::{info, warn};

mod datums;

pub use datums::{MAX_DIMENSION_VALUE, split, to_datums};

use super::metrics::Batch;
use crate::actors::{PlanReceiver, or_closed};
use crate::backoff::Backoff;
use crate::config::{Settings, Toggle};
use crate::counters::Counters;

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

/// Whether CloudWatch is to be used: off, or on with a client.
async fn client(settings: &Settings) -> Option<aws_sdk_cloudwatch::Client> {
    let sdk = crate::aws::sdk_config().await;
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
        match crate::aws::instance_id().await {
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
    // Setting up may wait on credentials and IMDS; shutdown does not wait for it.
    let Some(client) = or_closed(&plans, client(&settings)).await else {
        return;
    };
    let Some(client) = client else {
        // Off: keep draining the channel so the loop's sends never pile up.
        or_closed(&plans, async { while batches.recv().await.is_some() {} }).await;
        return;
    };
    let Some(identity) = or_closed(&plans, identity(&settings)).await else {
        return;
    };
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
        backoff: Backoff::new(BACKOFF_START, BACKOFF_MAX).jittered(),
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
    backoff: Backoff,
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
                self.next_try = Instant::now() + self.backoff.failed();
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
        self.backoff.succeeded();
        self.next_try = Instant::now();
        self.buffer.pop_front();
    }
}
