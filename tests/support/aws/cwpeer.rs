//! The CloudWatch test peer: moto for the CloudWatch semantics, behind
//! `tests/support/aws/cw_proxy.py`, which speaks the Smithy RPC v2 CBOR protocol the Rust SDK
//! uses and counts calls and injects faults (see that file's header).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::aws::moto::Moto;
use crate::processes::peer::{HttpResponse, http_tcp, test_venv};

#[derive(Debug)]
pub struct CwPeer {
    pub moto: Moto,
    proxy: Child,
    port: u16,
}

impl CwPeer {
    pub fn start() -> CwPeer {
        let moto = Moto::start();
        let python = test_venv().join("bin/python");
        assert!(
            python.exists(),
            "{} not found: run `scripts/test-deps.sh` (it makes the test venv with moto, cbor2 and botocore) or `make test`",
            python.display()
        );
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/aws/cw_proxy.py");
        let mut proxy = Command::new(&python)
            .args([script, "--port", "0", "--moto", &moto.raw_endpoint()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start cw_proxy.py");
        let mut line = String::new();
        BufReader::new(proxy.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("read LISTENING");
        let port = line
            .strip_prefix("LISTENING ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("cw_proxy.py did not say LISTENING <port>: {line:?}"));
        CwPeer { moto, proxy, port }
    }

    /// For `AWS_ENDPOINT_URL_CLOUDWATCH`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn proxy(&self, method: &str, path: &str, body: &Value) -> HttpResponse {
        let body = body.to_string();
        http_tcp(
            &format!("127.0.0.1:{}", self.port),
            method,
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .expect("cw_proxy answers")
    }

    /// Calls forwarded per operation, and `failed` ones refused by fault injection.
    pub fn stats(&self) -> Value {
        serde_json::from_slice(&self.proxy("GET", "/_proxy/stats", &json!({})).body)
            .expect("stats JSON")
    }

    pub fn calls(&self, op: &str) -> u64 {
        self.stats()[op].as_u64().unwrap_or(0)
    }

    pub fn failed(&self, op: &str) -> u64 {
        self.stats()["failed"][op].as_u64().unwrap_or(0)
    }

    /// Every call fails with 503 until `heal`.
    pub fn go_down(&self) {
        self.proxy(
            "POST",
            "/_proxy/fail",
            &json!({"mode": "down", "status": 503, "type": "ServiceUnavailable"}),
        );
    }

    pub fn heal(&self) {
        self.proxy("POST", "/_proxy/heal", &json!({}));
    }

    /// Asks moto directly (AWS JSON 1.0) for a metric's statistics.
    pub fn statistics(
        &self,
        namespace: &str,
        metric: &str,
        dims: &[(&str, &str)],
        since: SystemTime,
        period: u64,
    ) -> Vec<Value> {
        let secs = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64()
        };
        let body = json!({
            "Namespace": namespace,
            "MetricName": metric,
            "Dimensions": dims.iter().map(|(n, v)| json!({"Name": n, "Value": v})).collect::<Vec<_>>(),
            "StartTime": secs(since) - 120.0,
            "EndTime": secs(SystemTime::now()) + 120.0,
            "Period": period,
            "Statistics": ["SampleCount", "Sum", "Minimum", "Maximum"],
        });
        let out = self.moto_json("GetMetricStatistics", &body);
        let mut points = out["Datapoints"].as_array().cloned().unwrap_or_default();
        points.sort_by(|a, b| {
            a["Timestamp"]
                .as_f64()
                .partial_cmp(&b["Timestamp"].as_f64())
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        points
    }

    pub fn list_metrics(&self, namespace: &str) -> Vec<Value> {
        self.moto_json("ListMetrics", &json!({"Namespace": namespace}))["Metrics"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Each metric of `namespace` as (name, its dimension names), once: moto lists a
    /// metric once per datum put.
    pub fn metric_dimensions(&self, namespace: &str) -> BTreeSet<(String, Vec<String>)> {
        self.list_metrics(namespace)
            .iter()
            .map(|m| {
                let dims = m["Dimensions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|d| d["Name"].as_str().map(str::to_owned))
                    .collect();
                (
                    m["MetricName"].as_str().unwrap_or_default().to_owned(),
                    dims,
                )
            })
            .collect()
    }

    fn moto_json(&self, op: &str, body: &Value) -> Value {
        let auth = "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/monitoring/aws4_request, \
                    SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=0000";
        let target = format!("GraniteServiceVersion20100801.{op}");
        let body = body.to_string();
        let headers = [
            ("X-Amz-Target", target.as_str()),
            ("Content-Type", "application/x-amz-json-1.0"),
            ("X-Amz-Date", "20260101T000000Z"),
            ("Authorization", auth),
        ];
        let r = http_tcp(
            &format!("127.0.0.1:{}", self.moto.port()),
            "POST",
            "/",
            &headers,
            body.as_bytes(),
        )
        .expect("moto answers");
        assert_eq!(r.status, 200, "{op}: {}", String::from_utf8_lossy(&r.body));
        serde_json::from_slice(&r.body).expect("JSON")
    }
}

impl Drop for CwPeer {
    fn drop(&mut self) {
        let _ = self.proxy.kill();
        let _ = self.proxy.wait();
    }
}

/// Waits until `f` holds, up to `limit`.
pub fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    f()
}
