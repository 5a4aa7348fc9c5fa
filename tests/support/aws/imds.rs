//! A mock EC2 instance metadata service, IMDSv2 only (tokens required), in the
//! shape aws-config's IMDS client (`aws_config::imds::Client`) expects:
//!
//! - `PUT /latest/api/token` with `x-aws-ec2-metadata-token-ttl-seconds: N`
//!   (1..=21600, else 400) → the token as text, with the TTL echoed back in the
//!   `x-aws-ec2-metadata-token-ttl-seconds` response header. aws-config
//!   rejects a token response without that header (`TokenErrorKind::NoTtl`).
//! - `GET` with `x-aws-ec2-metadata-token` → the value; missing, unknown or
//!   expired token → 401; unknown path → 404.
//!
//! Checked against aws-config 1.13: it caches the token until 120 s before the
//! TTL it was told, and retries a 401 *with the cached token* (4 attempts,
//! ~3 s, then `ImdsError` "error response from IMDS (code: 401)"): it never
//! drops the token on 401. So after [`Imds::expire_tokens`] a client that
//! asked for a long TTL keeps failing until its own clock expires the token
//! (a new `Client` starts with an empty cache). With
//! [`Imds::set_advertised_ttl`] ≤ 120 s aws-config fetches a fresh token for
//! every call, and so recovers at once.
//!
//! Point the client here with `AWS_EC2_METADATA_SERVICE_ENDPOINT=<endpoint()>`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::network::mockhttp::{Reply, Request, Response, Server};

pub const TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
pub const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";

/// Who the mock instance is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceIdentity {
    pub instance_id: String,
    pub region: String,
    pub availability_zone: String,
    pub account_id: String,
    pub image_id: String,
    pub instance_type: String,
}

impl InstanceIdentity {
    /// Zone `<region>a`, moto's default account, an ECS-optimized AMI id.
    pub fn new(instance_id: &str, region: &str) -> Self {
        InstanceIdentity {
            instance_id: instance_id.to_owned(),
            region: region.to_owned(),
            availability_zone: format!("{region}a"),
            account_id: "123456789012".to_owned(),
            image_id: "ami-0d75e18107f482a72".to_owned(),
            instance_type: "m5.large".to_owned(),
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    token_requests: AtomicU64,
    gets: AtomicU64,
    unauthorized: AtomicU64,
}

#[derive(Debug)]
struct ImdsState {
    identity: InstanceIdentity,
    // token → when it stops being valid (server side).
    tokens: Mutex<HashMap<String, Instant>>,
    advertised_ttl: Mutex<Option<u64>>,
    /// `autoscaling/target-lifecycle-state`; `None`: not in an Auto Scaling group (404).
    lifecycle: Mutex<Option<String>>,
    issued: AtomicU64,
    counters: Counters,
}

/// The mock IMDS on `127.0.0.1:<free port>`; dropping it stops it.
#[derive(Debug)]
pub struct Imds {
    server: Server,
    state: Arc<ImdsState>,
}

impl Imds {
    pub fn start(identity: InstanceIdentity) -> Imds {
        let state = Arc::new(ImdsState {
            identity,
            tokens: Mutex::new(HashMap::new()),
            advertised_ttl: Mutex::new(None),
            lifecycle: Mutex::new(None),
            issued: AtomicU64::new(0),
            counters: Counters::default(),
        });
        let handler_state = Arc::clone(&state);
        let server = Server::start("imds", Arc::new(move |r| answer(&handler_state, r)));
        Imds { server, state }
    }

    /// `http://127.0.0.1:PORT` — the value for `AWS_EC2_METADATA_SERVICE_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port())
    }

    pub fn identity(&self) -> &InstanceIdentity {
        &self.state.identity
    }

    /// Every token issued so far becomes invalid (401) at once, as after an
    /// IMDS restart; the client must PUT for a new one.
    pub fn expire_tokens(&self) {
        lock(&self.state.tokens).clear();
    }

    /// TTL announced in token responses regardless of the one asked for
    /// (`None`: echo the request, as EC2 does). The server-side validity
    /// stays what the client asked for.
    pub fn set_advertised_ttl(&self, ttl_seconds: Option<u64>) {
        *lock(&self.state.advertised_ttl) = ttl_seconds;
    }

    /// What `autoscaling/target-lifecycle-state` answers (`InService`, `Terminated` …);
    /// `None` answers 404, as on an instance outside any Auto Scaling group.
    pub fn set_target_lifecycle_state(&self, state: Option<&str>) {
        *lock(&self.state.lifecycle) = state.map(str::to_owned);
    }

    /// `PUT /latest/api/token` requests received (answered 200 or 400).
    pub fn token_requests(&self) -> u64 {
        self.state.counters.token_requests.load(Ordering::SeqCst)
    }

    /// `GET` requests received, whatever the answer.
    pub fn metadata_requests(&self) -> u64 {
        self.state.counters.gets.load(Ordering::SeqCst)
    }

    /// `GET`s answered 401 (no, unknown or expired token).
    pub fn unauthorized(&self) -> u64 {
        self.state.counters.unauthorized.load(Ordering::SeqCst)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn answer(state: &ImdsState, req: &Request) -> Reply {
    let path = req.path.split('?').next().unwrap_or_default();
    let resp = match (req.method.as_str(), path) {
        ("PUT", "/latest/api/token") => issue_token(state, req),
        ("GET", _) => {
            state.counters.gets.fetch_add(1, Ordering::SeqCst);
            if token_is_valid(state, req) {
                let lifecycle = lock(&state.lifecycle).clone();
                let value = if path == "/latest/meta-data/autoscaling/target-lifecycle-state" {
                    lifecycle
                } else {
                    metadata(&state.identity, path)
                };
                value.map_or_else(|| text(404, "Not Found"), |body| text(200, &body))
            } else {
                state.counters.unauthorized.fetch_add(1, Ordering::SeqCst);
                text(401, "Unauthorized")
            }
        }
        // EC2 answers other methods with 405 (GET on the token path too).
        _ => text(405, "Method Not Allowed"),
    };
    Reply::Send(resp)
}

fn text(status: u16, body: &str) -> Response {
    Response::new(status, "text/plain", body)
}

fn issue_token(state: &ImdsState, req: &Request) -> Response {
    state.counters.token_requests.fetch_add(1, Ordering::SeqCst);
    let ttl = req
        .header(TTL_HEADER)
        .and_then(|v| v.trim().parse::<u64>().ok());
    let Some(ttl) = ttl.filter(|t| (1..=21_600).contains(t)) else {
        return text(400, "Bad Request");
    };
    // Unique and a valid header value, like EC2's base64 tokens.
    let n = state.issued.fetch_add(1, Ordering::SeqCst);
    let token = format!("AQAEAdiskguardMockToken{n:04}{}==", std::process::id());
    lock(&state.tokens).insert(token.clone(), Instant::now() + Duration::from_secs(ttl));
    let advertised = lock(&state.advertised_ttl).unwrap_or(ttl);
    text(200, &token).with_header(TTL_HEADER, &advertised.to_string())
}

fn token_is_valid(state: &ImdsState, req: &Request) -> bool {
    let Some(token) = req.header(TOKEN_HEADER) else {
        return false;
    };
    lock(&state.tokens)
        .get(token.trim())
        .is_some_and(|expiry| Instant::now() < *expiry)
}

fn metadata(id: &InstanceIdentity, path: &str) -> Option<String> {
    let value = match path.trim_end_matches('/') {
        "/latest/meta-data/instance-id" => id.instance_id.clone(),
        "/latest/meta-data/placement/region" => id.region.clone(),
        "/latest/meta-data/placement/availability-zone" => id.availability_zone.clone(),
        "/latest/meta-data/instance-type" => id.instance_type.clone(),
        "/latest/meta-data/ami-id" => id.image_id.clone(),
        // The real document's fields, in its order (version 2017-09-30).
        "/latest/dynamic/instance-identity/document" => serde_json::to_string_pretty(&json!({
            "accountId": id.account_id,
            "architecture": "x86_64",
            "availabilityZone": id.availability_zone,
            "billingProducts": null,
            "devpayProductCodes": null,
            "marketplaceProductCodes": null,
            "imageId": id.image_id,
            "instanceId": id.instance_id,
            "instanceType": id.instance_type,
            "kernelId": null,
            "pendingTime": "2026-01-01T00:00:00Z",
            "privateIp": "10.0.0.10",
            "ramdiskId": null,
            "region": id.region,
            "version": "2017-09-30",
        }))
        .expect("serializing a JSON literal"),
        _ => return None,
    };
    Some(value)
}
