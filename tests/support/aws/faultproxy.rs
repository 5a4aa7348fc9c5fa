//! A fault-injecting HTTP proxy in front of moto: it forwards each request and
//! relays the answer, except for the requests a test told it to fail — with
//! the exact error an AWS JSON 1.1 service sends (ECS's ThrottlingException,
//! ServerException), or after a delay. It counts requests per operation.
//!
//! Toward the client (the AWS SDK: hyper, keep-alive) it is an HTTP/1.1
//! server that keeps connections alive properly (see `mockhttp.rs`);
//! toward moto it opens one short HTTP/1.0 connection per request.
//!
//! What aws-sdk-ecs 1.157 (standard retry: 3 attempts, jittered backoff) makes
//! of the faults: 2 throttles or 2 server errors → the third attempt succeeds
//! (~1–2 s); 3 → the call fails with code `ThrottlingException` /
//! `ServerException`; `Drop` → retried as an I/O error; a `Delay` longer than
//! the attempt timeout → retried, and the delayed request still reaches moto.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::network::http_client::http_tcp;
use crate::network::mockhttp::{Reply, Request, Response, Server};

/// What an injected fault does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// 400 `{"__type":"ThrottlingException","message":"Rate exceeded"}`.
    Throttle,
    /// 500 `{"__type":"ServerException","message":…}`.
    ServerError,
    /// Wait this long, then forward (a slow endpoint; an SDK timeout shorter
    /// than this sees a hang, yet moto still applies the call afterwards).
    Delay(Duration),
    /// Close the connection without answering (forwarding nothing).
    Drop,
}

/// Requests seen for one operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpCount {
    /// All requests, faulted or not.
    pub calls: u32,
    /// Answered by an injected Throttle/ServerError/Drop (not forwarded).
    pub failed: u32,
    /// Delayed by an injected Delay (then forwarded).
    pub delayed: u32,
}

#[derive(Debug)]
struct Rule {
    /// `None`: any operation.
    op: Option<String>,
    fault: Fault,
    remaining: u32,
}

#[derive(Debug)]
struct ProxyState {
    upstream: String,
    rules: Mutex<Vec<Rule>>,
    counts: Mutex<BTreeMap<String, OpCount>>,
    stopped: AtomicBool,
}

/// The proxy on `127.0.0.1:<free port>`; dropping it stops it.
#[derive(Debug)]
pub struct FaultProxy {
    server: Server,
    state: Arc<ProxyState>,
}

impl FaultProxy {
    /// `upstream` is moto's endpoint, `http://127.0.0.1:PORT`.
    pub fn start(upstream: &str) -> FaultProxy {
        let addr = upstream
            .strip_prefix("http://")
            .unwrap_or(upstream)
            .trim_end_matches('/');
        let state = Arc::new(ProxyState {
            upstream: addr.to_owned(),
            rules: Mutex::new(Vec::new()),
            counts: Mutex::new(BTreeMap::new()),
            stopped: AtomicBool::new(false),
        });
        let handler_state = Arc::clone(&state);
        let server = Server::start("faultproxy", Arc::new(move |r| answer(&handler_state, r)));
        FaultProxy { server, state }
    }

    /// `http://127.0.0.1:PORT` — e.g. for `AWS_ENDPOINT_URL_ECS`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port())
    }

    /// The next `times` requests for `op` (`"UpdateContainerInstancesState"`;
    /// `None` = any operation) get `fault`. Rules are consumed in the order
    /// they were added; a request consumes at most one rule.
    pub fn inject(&self, op: Option<&str>, fault: Fault, times: u32) {
        lock(&self.state.rules).push(Rule {
            op: op.map(str::to_owned),
            fault,
            remaining: times,
        });
    }

    /// Shorthand: the next `times` calls of `op` are throttled.
    pub fn throttle(&self, op: &str, times: u32) {
        self.inject(Some(op), Fault::Throttle, times);
    }

    /// Drops every pending fault; requests are forwarded from now on.
    pub fn clear(&self) {
        lock(&self.state.rules).clear();
    }

    /// Injections not yet consumed.
    pub fn pending_faults(&self) -> u32 {
        lock(&self.state.rules).iter().map(|r| r.remaining).sum()
    }

    /// Counts for one operation (zero when never seen).
    pub fn count(&self, op: &str) -> OpCount {
        lock(&self.state.counts)
            .get(op)
            .copied()
            .unwrap_or_default()
    }

    /// Counts for every operation seen, by name.
    pub fn counts(&self) -> BTreeMap<String, OpCount> {
        lock(&self.state.counts).clone()
    }

    /// All requests seen.
    pub fn total_calls(&self) -> u32 {
        lock(&self.state.counts).values().map(|c| c.calls).sum()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // Cuts injected delays short; the server stops in its own Drop.
        self.state.stopped.store(true, Ordering::SeqCst);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The operation a request calls: the part of `X-Amz-Target` after the last
/// dot (JSON protocols), else the `Action` of a query-protocol form post,
/// else `"?"`.
pub fn operation_of(req: &Request) -> String {
    if let Some(target) = req.header("x-amz-target") {
        return target.rsplit('.').next().unwrap_or(target).to_owned();
    }
    let body = String::from_utf8_lossy(&req.body);
    body.split('&')
        .find_map(|kv| kv.strip_prefix("Action="))
        .map_or_else(|| "?".to_owned(), str::to_owned)
}

fn answer(state: &ProxyState, req: &Request) -> Reply {
    let op = operation_of(req);
    let fault = take_fault(state, &op);
    {
        let mut counts = lock(&state.counts);
        let count = counts.entry(op.clone()).or_default();
        count.calls += 1;
        match fault {
            Some(Fault::Delay(_)) => count.delayed += 1,
            Some(_) => count.failed += 1,
            None => {}
        }
    }
    match fault {
        Some(Fault::Throttle) => {
            Reply::Send(aws_error(400, "ThrottlingException", "Rate exceeded"))
        }
        Some(Fault::ServerError) => Reply::Send(aws_error(
            500,
            "ServerException",
            &format!("injected server error for {op}"),
        )),
        Some(Fault::Drop) => Reply::Close,
        Some(Fault::Delay(d)) => {
            let until = Instant::now() + d;
            while Instant::now() < until && !state.stopped.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(10).min(until - Instant::now()));
            }
            Reply::Send(forward(state, req))
        }
        None => Reply::Send(forward(state, req)),
    }
}

fn take_fault(state: &ProxyState, op: &str) -> Option<Fault> {
    let mut rules = lock(&state.rules);
    let rule = rules
        .iter_mut()
        .find(|r| r.remaining > 0 && r.op.as_deref().is_none_or(|o| o == op))?;
    rule.remaining -= 1;
    let fault = rule.fault.clone();
    rules.retain(|r| r.remaining > 0);
    Some(fault)
}

/// An AWS JSON 1.1 error as ECS sends it: the SDK reads the code from
/// `x-amzn-ErrorType` first, then from `__type`.
pub fn aws_error(status: u16, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"__type": code, "message": message});
    Response::new(status, "application/x-amz-json-1.1", body.to_string())
        .with_header("x-amzn-ErrorType", code)
        .with_header("x-amzn-RequestId", "00000000-0000-4000-8000-diskguard000")
}

// Headers that describe one hop's connection or framing: never relayed.
// (`host` and `content-length` are rewritten by http_tcp itself; `expect`
// was already dealt with by our server.)
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "upgrade",
    "host",
    "content-length",
    "expect",
];

fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
}

fn forward(state: &ProxyState, req: &Request) -> Response {
    relay(&state.upstream, req, "faultproxy")
}

/// Relays `req` to `upstream` (`127.0.0.1:PORT`) and its answer back, without the
/// hop-by-hop headers; 502 when the upstream is down. `who` names the proxy in that 502.
pub(crate) fn relay(upstream: &str, req: &Request, who: &str) -> Response {
    let headers: Vec<(&str, &str)> = req
        .headers
        .iter()
        .filter(|(k, _)| !is_hop_by_hop(k))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    match http_tcp(upstream, &req.method, &req.path, &headers, &req.body) {
        Ok(up) => Response {
            status: up.status,
            headers: up
                .headers
                .into_iter()
                .filter(|(k, _)| !is_hop_by_hop(k))
                .collect(),
            body: up.body,
        },
        // Upstream down: what a load balancer in front of a dead backend says.
        Err(e) => Response::text(502, &format!("{who}: upstream {upstream}: {e}\n")),
    }
}
