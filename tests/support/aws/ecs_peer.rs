//! An ECS-faithful peer: a small proxy in front of moto that behaves like ECS where
//! diskguard's read budget depends on it and moto 5 does not. Everything it does not
//! change is relayed as is (other services too). Each behaviour, and the ECS API
//! reference page it follows:
//!
//! - **ListContainerInstances** ("ListContainerInstances": `maxResults` 1–100, default
//!   100; an opaque `nextToken` while more remain; `filter` in the cluster query language).
//!   moto applies `status` but returns everything in one page and ignores `filter`; the
//!   peer pages moto's answer and applies `ec2InstanceId == i-…` (the only filter diskguard
//!   sends; any other answers InvalidParameterException, naming the peer).
//! - **ListAttributes** by `attributeName` alone ("ListAttributes": "You can filter the list
//!   of results to a single attribute name"; paged like the above). moto finds nothing
//!   without `attributeValue`; the peer answers from moto's instances of the cluster.
//! - **DeleteAttributes** without `value` ("DeleteAttributes": custom attributes are deleted
//!   by name and target). moto deletes only on a matching value; the peer fills in the
//!   stored value before relaying.
//! - **DescribeClusters** `registeredContainerInstancesCount` ("Cluster": the ACTIVE and
//!   DRAINING instances): computed from moto's instances, whatever moto says.
//! - **Request throttling** ("Request throttling for the Amazon ECS API": token buckets per
//!   account and Region, shared by every caller): cluster resource reads burst 100, refill
//!   20/s; cluster reads (DescribeClusters) 50 and 20/s; cluster resource modifications 100
//!   and 40/s. An empty bucket answers 400 `ThrottlingException` "Rate exceeded", as ECS.
//! - **Eventual consistency** ("Amazon ECS API eventual consistency"), off unless set: a
//!   write is acknowledged at once and applied `lag` later, so reads (the writer's too)
//!   see it late.
//!
//! Calls are counted per operation and per caller (the access key id of the SigV4
//! `Authorization` header), throttled ones included.
//!
//! Auto Scaling requests (the query protocol: a form body with `Action=…`, signed for the
//! `autoscaling` service) are relayed to moto unchanged — no quota, no lag — and counted by
//! action apart from ECS's calls ([`EcsPeer::autoscaling_calls`]), so that a test pointing
//! `AWS_ENDPOINT_URL_AUTO_SCALING` here can count SetInstanceHealth without changing what
//! the ECS counts and totals say.

use std::collections::BTreeMap;
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::ecs_world::ECS_TARGET_PREFIX;
use super::faultproxy::{aws_error, operation_of, relay};
use crate::network::mockhttp::{Reply, Request, Response, Server};

/// ECS's largest and default page.
pub const PAGE: usize = 100;

/// One of ECS's throttling buckets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quota {
    pub burst: u32,
    pub per_second: f64,
}

/// Cluster resource reads: DescribeContainerInstances, ListContainerInstances,
/// ListAttributes, ListTasks, DescribeTasks.
pub const READS: Quota = Quota {
    burst: 100,
    per_second: 20.0,
};
/// Cluster reads: DescribeClusters.
pub const CLUSTER_READS: Quota = Quota {
    burst: 50,
    per_second: 20.0,
};
/// Cluster resource modifications: PutAttributes, DeleteAttributes,
/// UpdateContainerInstancesState, RunTask, StopTask …
pub const WRITES: Quota = Quota {
    burst: 100,
    per_second: 40.0,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Bucket {
    Reads,
    ClusterReads,
    Writes,
}

fn bucket_of(op: &str) -> Option<Bucket> {
    match op {
        "DescribeContainerInstances"
        | "ListContainerInstances"
        | "ListAttributes"
        | "ListTasks"
        | "DescribeTasks" => Some(Bucket::Reads),
        "DescribeClusters" => Some(Bucket::ClusterReads),
        "PutAttributes"
        | "DeleteAttributes"
        | "UpdateContainerInstancesState"
        | "RunTask"
        | "StopTask"
        | "StartTask"
        | "UpdateContainerAgent" => Some(Bucket::Writes),
        _ => None,
    }
}

fn is_write(op: &str) -> bool {
    matches!(
        op,
        "PutAttributes" | "DeleteAttributes" | "UpdateContainerInstancesState"
    )
}

#[derive(Debug)]
struct Tokens {
    quota: Quota,
    level: f64,
    at: Instant,
}

impl Tokens {
    fn new(quota: Quota) -> Self {
        Tokens {
            quota,
            level: f64::from(quota.burst),
            at: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * self.quota.per_second;
        self.level = (self.level + refill).min(f64::from(self.quota.burst));
        self.at = now;
        if self.level >= 1.0 {
            self.level -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Requests seen for one operation (or one caller).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Calls {
    pub calls: u32,
    /// Answered with ThrottlingException.
    pub throttled: u32,
}

#[derive(Debug, Default)]
struct Counts {
    by_op: BTreeMap<String, Calls>,
    by_caller: BTreeMap<String, Calls>,
    /// Auto Scaling requests relayed, by action.
    autoscaling: BTreeMap<String, u32>,
}

#[derive(Debug)]
struct State {
    upstream: String,
    buckets: Mutex<Option<BTreeMap<Bucket, Tokens>>>,
    counts: Mutex<Counts>,
    lag: Mutex<Duration>,
    /// Writes held for `lag`, applied in order by one thread.
    delayed: Mutex<Sender<(Instant, Request)>>,
}

/// The peer on `127.0.0.1:<free port>`; dropping it stops it.
#[derive(Debug)]
pub struct EcsPeer {
    server: Server,
    state: Arc<State>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl EcsPeer {
    /// In front of moto at `upstream` (`http://127.0.0.1:PORT`), with ECS's documented
    /// quotas.
    pub fn start(upstream: &str) -> EcsPeer {
        let addr = upstream
            .strip_prefix("http://")
            .unwrap_or(upstream)
            .trim_end_matches('/')
            .to_owned();
        let (tx, rx) = channel::<(Instant, Request)>();
        let state = Arc::new(State {
            upstream: addr.clone(),
            buckets: Mutex::new(Some(default_buckets())),
            counts: Mutex::new(Counts::default()),
            lag: Mutex::new(Duration::ZERO),
            delayed: Mutex::new(tx),
        });
        // Applies held writes in order once due; ends when the peer is dropped.
        std::thread::spawn(move || {
            while let Ok((due, req)) = rx.recv() {
                let wait = due.saturating_duration_since(Instant::now());
                std::thread::sleep(wait);
                let _ = relay(&addr, &req, "ecs peer");
            }
        });
        let handler_state = Arc::clone(&state);
        let server = Server::start("ecs peer", Arc::new(move |r| answer(&handler_state, r)));
        EcsPeer { server, state }
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL_ECS`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port())
    }

    /// The cluster resource reads' bucket, refilled now (e.g. `(0, 0.0)`: every read
    /// throttled; [`READS`] again to end it).
    pub fn set_read_quota(&self, burst: u32, per_second: f64) {
        self.set_quota(Bucket::Reads, Quota { burst, per_second });
    }

    /// The modifications' bucket, refilled now.
    pub fn set_write_quota(&self, burst: u32, per_second: f64) {
        self.set_quota(Bucket::Writes, Quota { burst, per_second });
    }

    fn set_quota(&self, bucket: Bucket, quota: Quota) {
        let mut buckets = lock(&self.state.buckets);
        buckets
            .get_or_insert_with(default_buckets)
            .insert(bucket, Tokens::new(quota));
    }

    /// No throttling at all (the default: ECS's documented quotas).
    pub fn unthrottled(&self) {
        *lock(&self.state.buckets) = None;
    }

    /// Writes become visible to reads this long after they are acknowledged.
    pub fn set_lag(&self, lag: Duration) {
        *lock(&self.state.lag) = lag;
    }

    pub fn count(&self, op: &str) -> Calls {
        lock(&self.state.counts)
            .by_op
            .get(op)
            .copied()
            .unwrap_or_default()
    }

    pub fn counts(&self) -> BTreeMap<String, Calls> {
        lock(&self.state.counts).by_op.clone()
    }

    /// Calls by one caller (its AWS access key id).
    pub fn caller(&self, access_key: &str) -> Calls {
        lock(&self.state.counts)
            .by_caller
            .get(access_key)
            .copied()
            .unwrap_or_default()
    }

    /// Auto Scaling requests relayed with this action (`"SetInstanceHealth"` …).
    pub fn autoscaling_calls(&self, action: &str) -> u32 {
        lock(&self.state.counts)
            .autoscaling
            .get(action)
            .copied()
            .unwrap_or_default()
    }

    /// Every Auto Scaling request relayed, by action.
    pub fn autoscaling_counts(&self) -> BTreeMap<String, u32> {
        lock(&self.state.counts).autoscaling.clone()
    }

    /// ECS calls seen, throttled ones included.
    pub fn total_calls(&self) -> u32 {
        lock(&self.state.counts)
            .by_op
            .values()
            .map(|c| c.calls)
            .sum()
    }

    pub fn reset_counts(&self) {
        *lock(&self.state.counts) = Counts::default();
    }
}

fn default_buckets() -> BTreeMap<Bucket, Tokens> {
    BTreeMap::from([
        (Bucket::Reads, Tokens::new(READS)),
        (Bucket::ClusterReads, Tokens::new(CLUSTER_READS)),
        (Bucket::Writes, Tokens::new(WRITES)),
    ])
}

/// The access key id in `Credential=AKID/…`.
fn caller_of(req: &Request) -> String {
    req.header("authorization")
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').next())
        .unwrap_or("?")
        .to_owned()
}

/// The service of the SigV4 credential scope, `Credential=AKID/DATE/REGION/SERVICE/aws4_request`
/// (what moto routes by, too).
fn service_of(req: &Request) -> Option<&str> {
    req.header("authorization")?
        .split("Credential=")
        .nth(1)?
        .split('/')
        .nth(3)
}

fn answer(state: &State, req: &Request) -> Reply {
    let is_ecs = req
        .header("x-amz-target")
        .is_some_and(|t| t.starts_with(ECS_TARGET_PREFIX));
    if !is_ecs {
        if service_of(req) == Some("autoscaling") {
            let mut counts = lock(&state.counts);
            *counts.autoscaling.entry(operation_of(req)).or_default() += 1;
        }
        return Reply::Send(relay(&state.upstream, req, "ecs peer"));
    }
    let op = operation_of(req);
    let allowed = match bucket_of(&op) {
        Some(b) => lock(&state.buckets)
            .as_mut()
            .and_then(|all| all.get_mut(&b))
            .is_none_or(Tokens::take),
        None => true,
    };
    {
        let mut counts = lock(&state.counts);
        let caller = caller_of(req);
        let c = counts.by_op.entry(op.clone()).or_default();
        c.calls += 1;
        c.throttled += u32::from(!allowed);
        let c = counts.by_caller.entry(caller).or_default();
        c.calls += 1;
        c.throttled += u32::from(!allowed);
    }
    if !allowed {
        return Reply::Send(aws_error(400, "ThrottlingException", "Rate exceeded"));
    }
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    Reply::Send(match op.as_str() {
        "ListContainerInstances" => list_container_instances(state, &body),
        "ListAttributes" if body.get("attributeName").is_some() => list_attributes(state, &body),
        "DeleteAttributes" => delete_attributes(state, req, &body),
        "DescribeClusters" => describe_clusters(state, req),
        w if is_write(w) => write(state, req, &body),
        _ => relay(&state.upstream, req, "ecs peer"),
    })
}

/// One call to moto, as JSON.
fn moto(state: &State, op: &str, body: &Value) -> Result<Value, Response> {
    let target = format!("{ECS_TARGET_PREFIX}{op}");
    let req = Request::synthetic(
        vec![
            ("Content-Type".into(), "application/x-amz-json-1.1".into()),
            ("X-Amz-Target".into(), target),
            (
                "Authorization".into(),
                "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/ecs/aws4_request, SignedHeaders=host, Signature=0".into(),
            ),
        ],
        body.to_string().into_bytes(),
    );
    let resp = relay(&state.upstream, &req, "ecs peer");
    if resp.status != 200 {
        return Err(resp);
    }
    serde_json::from_slice(&resp.body).map_err(|e| {
        aws_error(
            500,
            "ServerException",
            &format!("ecs peer: moto's {op} answer: {e}"),
        )
    })
}

fn invalid(message: &str) -> Response {
    aws_error(400, "InvalidParameterException", message)
}

/// `maxResults` and `nextToken` as ECS checks them: the page's start and size.
fn page_of(body: &Value) -> Result<(usize, usize), Response> {
    let size = match body.get("maxResults").and_then(Value::as_i64) {
        None => PAGE,
        Some(n) if (1..=PAGE as i64).contains(&n) => n as usize,
        Some(n) => return Err(invalid(&format!("maxResults {n} is not between 1 and 100"))),
    };
    let start = match body.get("nextToken").and_then(Value::as_str) {
        None => 0,
        Some(t) => t
            .strip_prefix("ecs-peer-")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| invalid(&format!("nextToken {t:?} is not valid")))?,
    };
    Ok((start, size))
}

/// `items[start..start + size]`, and the token for the rest.
fn paged<T: Clone>(items: &[T], start: usize, size: usize) -> (Vec<T>, Option<String>) {
    let end = (start + size).min(items.len());
    let page = items.get(start.min(end)..end).unwrap_or_default().to_vec();
    let token = (end < items.len()).then(|| format!("ecs-peer-{end}"));
    (page, token)
}

fn cluster_of(body: &Value) -> Value {
    body.get("cluster").cloned().unwrap_or(json!("default"))
}

/// Every container instance of the cluster in `status` (every status when `None`).
fn arns(state: &State, cluster: &Value, status: Option<&str>) -> Result<Vec<String>, Response> {
    let mut body = json!({ "cluster": cluster });
    if let Some(s) = status {
        body["status"] = json!(s);
    }
    let out = moto(state, "ListContainerInstances", &body)?;
    Ok(out["containerInstanceArns"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

fn describe(state: &State, cluster: &Value, arns: &[String]) -> Result<Vec<Value>, Response> {
    let mut all = Vec::new();
    for chunk in arns.chunks(PAGE) {
        let out = moto(
            state,
            "DescribeContainerInstances",
            &json!({ "cluster": cluster, "containerInstances": chunk }),
        )?;
        all.extend(
            out["containerInstances"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        );
    }
    Ok(all)
}

fn list_container_instances(state: &State, body: &Value) -> Response {
    let run = || -> Result<Value, Response> {
        let (start, size) = page_of(body)?;
        let cluster = cluster_of(body);
        let mut all = arns(state, &cluster, body.get("status").and_then(Value::as_str))?;
        if let Some(filter) = body.get("filter").and_then(Value::as_str) {
            let Some(id) = filter
                .split_once("==")
                .filter(|(k, _)| k.trim() == "ec2InstanceId")
                .map(|(_, v)| v.trim().to_owned())
            else {
                return Err(invalid(&format!(
                    "the ECS test peer supports only `ec2InstanceId == i-…` filters, not {filter:?}"
                )));
            };
            let described = describe(state, &cluster, &all)?;
            all = described
                .iter()
                .filter(|c| c["ec2InstanceId"].as_str() == Some(id.as_str()))
                .filter_map(|c| c["containerInstanceArn"].as_str().map(str::to_owned))
                .collect();
        }
        let (page, token) = paged(&all, start, size);
        let mut out = json!({ "containerInstanceArns": page });
        if let Some(t) = token {
            out["nextToken"] = json!(t);
        }
        Ok(out)
    };
    match run() {
        Ok(v) => json_response(&v),
        Err(e) => e,
    }
}

fn list_attributes(state: &State, body: &Value) -> Response {
    let run = || -> Result<Value, Response> {
        let (start, size) = page_of(body)?;
        let cluster = cluster_of(body);
        let name = body["attributeName"].as_str().unwrap_or_default();
        let value = body.get("attributeValue").and_then(Value::as_str);
        let all = arns(state, &cluster, None)?;
        let mut found = Vec::new();
        for c in describe(state, &cluster, &all)? {
            let target = c["containerInstanceArn"].as_str().unwrap_or_default();
            for a in c["attributes"].as_array().into_iter().flatten() {
                let v = a.get("value").and_then(Value::as_str);
                if a["name"].as_str() == Some(name) && value.is_none_or(|want| Some(want) == v) {
                    let mut attr = json!({
                        "name": name,
                        "targetType": "container-instance",
                        "targetId": target,
                    });
                    if let Some(v) = v {
                        attr["value"] = json!(v);
                    }
                    found.push(attr);
                }
            }
        }
        let (page, token) = paged(&found, start, size);
        let mut out = json!({ "attributes": page });
        if let Some(t) = token {
            out["nextToken"] = json!(t);
        }
        Ok(out)
    };
    match run() {
        Ok(v) => json_response(&v),
        Err(e) => e,
    }
}

fn delete_attributes(state: &State, req: &Request, body: &Value) -> Response {
    let cluster = cluster_of(body);
    let mut body = body.clone();
    if let Some(list) = body["attributes"].as_array_mut() {
        for a in list.iter_mut().filter(|a| a.get("value").is_none()) {
            let target = a["targetId"].as_str().unwrap_or_default().to_owned();
            let name = a["name"].as_str().unwrap_or_default().to_owned();
            let Ok(found) = describe(state, &cluster, &[target]) else {
                continue;
            };
            let stored = found.first().and_then(|c| {
                c["attributes"]
                    .as_array()?
                    .iter()
                    .find(|x| x["name"].as_str() == Some(name.as_str()))
                    .and_then(|x| x.get("value").cloned())
            });
            if let Some(v) = stored {
                a["value"] = v;
            }
        }
    }
    let filled = Request::synthetic(req.headers.clone(), body.to_string().into_bytes());
    write(state, &filled, &body)
}

fn write(state: &State, req: &Request, body: &Value) -> Response {
    let lag = *lock(&state.lag);
    if lag.is_zero() {
        return relay(&state.upstream, req, "ecs peer");
    }
    let op = operation_of(req);
    let _ = lock(&state.delayed).send((Instant::now() + lag, req.clone()));
    let ack = if op == "UpdateContainerInstancesState" {
        json!({ "containerInstances": [], "failures": [] })
    } else {
        json!({ "attributes": body["attributes"].clone() })
    };
    json_response(&ack)
}

fn describe_clusters(state: &State, req: &Request) -> Response {
    let resp = relay(&state.upstream, req, "ecs peer");
    if resp.status != 200 {
        return resp;
    }
    let Ok(mut out) = serde_json::from_slice::<Value>(&resp.body) else {
        return resp;
    };
    if let Some(clusters) = out["clusters"].as_array_mut() {
        for c in clusters {
            let name = c["clusterArn"].clone();
            let mut n = 0;
            for status in ["ACTIVE", "DRAINING"] {
                match arns(state, &name, Some(status)) {
                    Ok(a) => n += a.len(),
                    Err(e) => return e,
                }
            }
            c["registeredContainerInstancesCount"] = json!(n);
        }
    }
    json_response(&out)
}

fn json_response(v: &Value) -> Response {
    Response::new(200, "application/x-amz-json-1.1", v.to_string())
}
