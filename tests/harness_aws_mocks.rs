//! Pins the ECS test peers of `tests/support` — the ECS agent introspection
//! mock, the IMDSv2 mock, the fault proxy (in front of moto) — so a broken
//! mock fails here rather than inside an ECS test. The moto behaviour the ECS
//! tests rely on is pinned in `harness_moto_ecs.rs`.
//! Run as root after `scripts/test-deps.sh` (moto comes from its venv).

use diskguard_testkit as support;

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::Moto;
use support::aws::ecs_agent::{AGENT_VERSION, AgentMode, EcsAgent, task};
use support::aws::ecs_world::signed_post;
use support::aws::faultproxy::{Fault, FaultProxy, OpCount};
use support::aws::imds::{Imds, InstanceIdentity, TOKEN_HEADER, TTL_HEADER};
use support::processes::peer::{HttpResponse, http_tcp};
const ARN: &str = "arn:aws:ecs:us-east-1:123456789012:container-instance/prod/0123456789abcdef";

fn addr(url: &str) -> String {
    url.trim_start_matches("http://").to_owned()
}

fn get(url: &str, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
    http_tcp(&addr(url), "GET", path, headers, b"").expect("HTTP exchange with the mock")
}

fn json_of(r: &HttpResponse) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.text()))
}

/// One HTTP/1.1 request on a connection that stays open (as hyper's pool
/// does); the answer is read by its Content-Length, not to EOF.
fn keepalive(
    s: &mut TcpStream,
    request: &str,
    headers: &[(&str, &str)],
) -> io::Result<HttpResponse> {
    // `request` is "METHOD /path"; POSTs carry an empty JSON object.
    let body = if request.starts_with("POST") {
        "{}"
    } else {
        ""
    };
    let mut req = format!(
        "{request} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n",
        body.len()
    );
    headers
        .iter()
        .for_each(|(k, v)| req.push_str(&format!("{k}: {v}\r\n")));
    s.write_all(format!("{req}\r\n{body}").as_bytes())?;
    let mut r = BufReader::new(s.try_clone()?);
    let mut lines = Vec::new();
    while lines.last().is_none_or(|l: &String| !l.trim().is_empty()) {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        lines.push(line);
    }
    let status = lines[0]
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok());
    let headers = lines[1..].iter().filter_map(|l| l.split_once(':'));
    let headers = headers
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut resp = HttpResponse {
        status: status.unwrap_or(0),
        headers,
        body: Vec::new(),
    };
    let len = resp.header("content-length").and_then(|l| l.parse().ok());
    resp.body = vec![0; len.unwrap_or(0)];
    r.read_exact(&mut resp.body)?;
    Ok(resp)
}

#[test]
fn introspection_serves_documented_metadata_and_each_failure_mode() {
    let agent = EcsAgent::start(AgentMode::healthy("prod", ARN));
    let url = agent.url();
    let metadata = || get(&url, "/v1/metadata", &[]);

    let meta = metadata();
    assert_eq!(meta.header("content-type"), Some("application/json"));
    let documented =
        json!({"Cluster": "prod", "ContainerInstanceArn": ARN, "Version": AGENT_VERSION});
    assert_eq!((meta.status, json_of(&meta)), (200, documented));
    assert_eq!(json_of(&get(&url, "/v1/tasks", &[])), json!({"Tasks": []}));
    let containers = [("abc123", "/ecs-web-3-app", "app")];
    agent.set_tasks(vec![task(
        "arn:aws:ecs:us-east-1:123456789012:task/prod/t1",
        "web",
        "3",
        &containers,
    )]);
    let tasks = json_of(&get(&url, "/v1/tasks", &[]));
    assert_eq!(tasks["Tasks"][0]["KnownStatus"], "RUNNING");
    let container = json!({"DockerId": "abc123", "DockerName": "/ecs-web-3-app", "Name": "app"});
    assert_eq!(tasks["Tasks"][0]["Containers"][0], container);

    // Up but not registered yet: the real agent sends a null ARN.
    agent.set_mode(AgentMode::Registering {
        cluster: "prod".into(),
    });
    let meta = json_of(&metadata());
    assert_eq!(
        (&meta["Cluster"], &meta["ContainerInstanceArn"]),
        (&json!("prod"), &Value::Null)
    );

    agent.set_mode(AgentMode::NotFound);
    assert_eq!(metadata().status, 404);
    agent.set_mode(AgentMode::Unavailable);
    let unavailable = metadata();
    assert_eq!(
        (unavailable.status, unavailable.body.is_empty()),
        (503, false)
    );
    agent.set_mode(AgentMode::Garbage);
    let garbage = metadata();
    assert_eq!(garbage.status, 200);
    assert!(
        serde_json::from_slice::<Value>(&garbage.body).is_err(),
        "{}",
        garbage.text()
    );

    agent.set_mode(AgentMode::Refuse);
    let refused = TcpStream::connect(addr(&url)).expect_err("nothing should listen");
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
    agent.set_mode(AgentMode::healthy("prod", ARN));
    assert_eq!(metadata().status, 200, "same URL once back");

    agent.set_mode(AgentMode::Hang);
    let mut hung = TcpStream::connect(addr(&url)).expect("Hang still accepts");
    hung.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    hung.write_all(b"GET /v1/metadata HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let mut buf = [0u8; 64];
    let err = hung.read(&mut buf).expect_err("no answer while hanging");
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );
    agent.set_mode(AgentMode::healthy("prod", ARN));
    // Leaving Hang closes the parked connection unanswered.
    hung.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    assert_eq!(
        hung.read(&mut buf).unwrap_or(0),
        0,
        "got an answer after all"
    );
    assert_eq!(metadata().status, 200);

    // metadata, 2 tasks, registering, 404, 503, garbage, healthy, hung, last.
    assert_eq!(agent.requests(), 10, "{:?}", agent.paths());
}

#[test]
fn introspection_keeps_connections_alive_and_shuts_them_on_refuse() {
    let agent = EcsAgent::start(AgentMode::healthy("prod", ARN));
    let mut conn = TcpStream::connect(addr(&agent.url())).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    for _ in 0..3 {
        let r = keepalive(&mut conn, "GET /v1/metadata", &[]).expect("answer, same connection");
        assert_eq!(
            (r.status, r.header("connection")),
            (200, Some("keep-alive"))
        );
    }
    // Refuse also cuts pooled connections, as an agent restart would.
    agent.set_mode(AgentMode::Refuse);
    assert!(keepalive(&mut conn, "GET /v1/metadata", &[]).is_err());
    assert_eq!(agent.requests(), 3);

    // `Connection: close` (and HTTP/1.0, used by http_tcp) get it closed.
    agent.set_mode(AgentMode::healthy("prod", ARN));
    let mut conn = TcpStream::connect(addr(&agent.url())).expect("connect");
    let r = keepalive(&mut conn, "GET /v1/tasks", &[("Connection", "close")]).expect("answer");
    assert_eq!(r.header("connection"), Some("close"));
    let again = keepalive(&mut conn, "GET /v1/tasks", &[]);
    assert!(again.is_err(), "not closed after the answer: {again:?}");
}

#[test]
fn imds_requires_a_token_and_answers_401_when_expired() {
    let imds = Imds::start(InstanceIdentity::new("i-0abc123", "us-east-1"));
    let url = imds.endpoint();
    let put = |ttl: Option<&str>| {
        let headers: Vec<(&str, &str)> = ttl.map(|t| (TTL_HEADER, t)).into_iter().collect();
        http_tcp(&addr(&url), "PUT", "/latest/api/token", &headers, b"").expect("PUT token")
    };
    let fetch = |path: &str, token: &str| get(&url, path, &[(TOKEN_HEADER, token)]);
    let id_status = |token: &str| fetch("/latest/meta-data/instance-id", token).status;
    assert_eq!(put(None).status, 400, "the TTL header is required");
    assert_eq!(put(Some("0")).status, 400);
    assert_eq!(put(Some("21601")).status, 400);
    let issued = put(Some("21600"));
    assert_eq!(issued.status, 200);
    // aws-config rejects a token answer without its TTL.
    assert_eq!(issued.header(TTL_HEADER), Some("21600"));
    let token = issued.text();

    assert_eq!(get(&url, "/latest/meta-data/instance-id", &[]).status, 401);
    assert_eq!(id_status("forged"), 401);
    assert_eq!(
        fetch("/latest/meta-data/instance-id", &token).text(),
        "i-0abc123"
    );
    assert_eq!(
        fetch("/latest/meta-data/placement/region", &token).text(),
        "us-east-1"
    );
    let doc = json_of(&fetch("/latest/dynamic/instance-identity/document", &token));
    let fields = ["instanceId", "region", "availabilityZone", "accountId"].map(|k| doc[k].clone());
    assert_eq!(
        fields,
        ["i-0abc123", "us-east-1", "us-east-1a", "123456789012"].map(|v| json!(v))
    );
    assert_eq!(fetch("/latest/meta-data/no-such-thing", &token).status, 404);

    imds.expire_tokens();
    assert_eq!(id_status(&token), 401);
    let fresh = put(Some("60")).text();
    assert_ne!(fresh, token);
    assert_eq!(id_status(&fresh), 200);

    // Server-side expiry after the TTL the client asked for.
    let short = put(Some("1")).text();
    assert_eq!(id_status(&short), 200);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(id_status(&short), 401);

    imds.set_advertised_ttl(Some(60));
    assert_eq!(put(Some("21600")).header(TTL_HEADER), Some("60"));

    assert_eq!(imds.token_requests(), 7);
    assert_eq!((imds.metadata_requests(), imds.unauthorized()), (10, 4));
}

fn op_count(calls: u32, failed: u32, delayed: u32) -> OpCount {
    OpCount {
        calls,
        failed,
        delayed,
    }
}

fn ecs_via(endpoint: &str, op: &str, body: &str) -> HttpResponse {
    let target = format!("AmazonEC2ContainerServiceV20141113.{op}");
    signed_post(
        &addr(endpoint),
        "ecs",
        "application/x-amz-json-1.1",
        Some(&target),
        body,
    )
}

#[test]
fn fault_proxy_throttles_n_calls_then_forwards() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint());
    let ep = proxy.endpoint();
    assert_eq!(
        ecs_via(&ep, "CreateCluster", r#"{"clusterName":"c"}"#).status,
        200
    );

    proxy.throttle("ListClusters", 2);
    for _ in 0..2 {
        let r = ecs_via(&ep, "ListClusters", "{}");
        assert_eq!(r.status, 400);
        assert_eq!(r.header("x-amzn-errortype"), Some("ThrottlingException"));
        assert_eq!(r.header("content-type"), Some("application/x-amz-json-1.1"));
        assert_eq!(
            json_of(&r),
            json!({"__type": "ThrottlingException", "message": "Rate exceeded"})
        );
    }
    let r = ecs_via(&ep, "ListClusters", "{}");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        json_of(&r)["clusterArns"],
        json!(["arn:aws:ecs:us-east-1:123456789012:cluster/c"])
    );
    assert_eq!(proxy.count("ListClusters"), op_count(3, 2, 0));

    // Any operation; other operations are unaffected by a targeted rule.
    proxy.inject(None, Fault::ServerError, 1);
    let r = ecs_via(&ep, "DescribeClusters", r#"{"clusters":["c"]}"#);
    assert_eq!(
        (r.status, r.header("x-amzn-errortype")),
        (500, Some("ServerException"))
    );
    assert_eq!(json_of(&r)["__type"], "ServerException");
    assert_eq!(
        ecs_via(&ep, "DescribeClusters", r#"{"clusters":["c"]}"#).status,
        200
    );

    let delay = Duration::from_millis(300);
    proxy.inject(Some("ListClusters"), Fault::Delay(delay), 1);
    let started = Instant::now();
    assert_eq!(ecs_via(&ep, "ListClusters", "{}").status, 200);
    assert!(started.elapsed() >= delay);

    proxy.inject(Some("ListClusters"), Fault::Drop, 1);
    let target = [("X-Amz-Target", "x.ListClusters")];
    assert!(http_tcp(&addr(&ep), "POST", "/", &target, b"{}").is_err());

    // Keep-alive toward the client, as hyper uses it.
    let mut conn = TcpStream::connect(addr(&ep)).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let auth = "AWS4-HMAC-SHA256 Credential=t/20260101/us-east-1/ecs/aws4_request, SignedHeaders=host, Signature=0";
    let h = [
        (
            "X-Amz-Target",
            "AmazonEC2ContainerServiceV20141113.ListClusters",
        ),
        ("Authorization", auth),
    ];
    for _ in 0..2 {
        assert_eq!(
            keepalive(&mut conn, "POST /", &h)
                .expect("kept alive")
                .status,
            200
        );
    }
    assert_eq!(proxy.count("ListClusters"), op_count(7, 3, 1));
    assert_eq!((proxy.pending_faults(), proxy.total_calls()), (0, 10));
}
