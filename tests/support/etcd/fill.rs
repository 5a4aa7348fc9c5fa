//! Driving an etcd's data through its plain-HTTP client URL (`host:port`): fill it with
//! large values until NOSPACE or a share of the quota, delete them, write, read the
//! revision and the alarms.

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::etcd::member::request;

/// 512 KiB values fill a 16 MiB quota in about thirty puts, well under etcd's 1.5 MiB
/// request limit.
pub const VALUE_BYTES: usize = 512 * 1024;

pub fn b64(s: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn json_of(addr: &str, path: &str, body: &Value) -> (u16, Value) {
    let r = request(addr, "POST", path, &body.to_string());
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

/// Puts `key` = `value`; the status and the answer.
pub fn put(addr: &str, key: &str, value: &[u8]) -> (u16, Value) {
    json_of(
        addr,
        "/v3/kv/put",
        &json!({"key": b64(key.as_bytes()), "value": b64(value)}),
    )
}

/// Fills etcd until NOSPACE with its db at or past the quota; the keys written and the
/// time it took. etcd refuses a put when `db size + the put's cost` would pass the quota,
/// so the first refusal can leave the db up to one value short of it. Each stage
/// disarms and goes on with values an eighth as large; at 256 bytes a refusal means the
/// db (a whole number of 4 KiB pages) is at the quota.
pub fn fill_until_nospace(addr: &str) -> (usize, Duration) {
    let start = Instant::now();
    let mut written = 0;
    for (stage, size) in [VALUE_BYTES, 64 * 1024, 8 * 1024, 256]
        .into_iter()
        .enumerate()
    {
        if stage > 0 {
            disarm_all(addr);
        }
        let value = vec![b'x'; size];
        let refused = (0..4000).any(|_| {
            let (status, answer) = put(addr, &format!("fill/{written:05}"), &value);
            if status == 200 {
                written += 1;
                return false;
            }
            assert_eq!(
                answer["code"], 8,
                "etcd refused a put, but not for space: {answer}"
            );
            true
        });
        assert!(
            refused,
            "etcd at {addr} took 4000 puts of {size} bytes without NOSPACE"
        );
    }
    (written, start.elapsed())
}

/// Deactivates every raised alarm.
pub fn disarm_all(addr: &str) {
    if let Value::Array(list) = alarms(addr) {
        for a in list {
            let body =
                json!({"action": "DEACTIVATE", "memberID": a["memberID"], "alarm": a["alarm"]});
            let (status, answer) = json_of(addr, "/v3/maintenance/alarm", &body);
            assert_eq!(status, 200, "disarm: {answer}");
        }
    }
}

/// Puts large values until the db is at least `percent` of `quota` (and below NOSPACE).
pub fn fill_to_percent(addr: &str, quota: u64, percent: f64) -> usize {
    let value = vec![b'y'; VALUE_BYTES];
    for i in 0..1000 {
        if db_bytes(addr) as f64 >= quota as f64 * percent / 100.0 {
            return i;
        }
        // A young cluster on a busy machine may answer a put with a leader change or a
        // timeout: retried, as any etcd client does.
        let mut last = Value::Null;
        let ok = (0..5).any(|_| {
            let (status, answer) = put(addr, &format!("fill/{i:04}"), &value);
            last = answer;
            status == 200 || {
                std::thread::sleep(Duration::from_millis(200));
                false
            }
        });
        assert!(ok, "put {i}: {last}");
    }
    panic!("etcd at {addr} never reached {percent}% of {quota}");
}

/// Deletes every key under `fill/` (deletes are allowed under NOSPACE).
pub fn delete_fill(addr: &str) -> u64 {
    let (status, answer) = json_of(
        addr,
        "/v3/kv/deleterange",
        &json!({"key": b64(b"fill/"), "range_end": b64(b"fill0")}),
    );
    assert_eq!(status, 200, "deleterange: {answer}");
    answer["deleted"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0)
}

/// Compacts to the current revision and waits until it is applied (`physical`), then
/// writes one small key so that a commit frees the pages the compaction released: the
/// member's in-use size then says how fragmented its db is.
pub fn compact_settled(addr: &str) {
    let rev = revision(addr);
    let (status, answer) = json_of(
        addr,
        "/v3/kv/compaction",
        &json!({"revision": rev.to_string(), "physical": true}),
    );
    assert_eq!(status, 200, "compaction: {answer}");
    for _ in 0..2 {
        let (status, answer) = put(addr, "settle", b"x");
        assert_eq!(status, 200, "put: {answer}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The cluster's current revision.
pub fn revision(addr: &str) -> u64 {
    let (status, answer) = json_of(addr, "/v3/kv/range", &json!({"key": b64(b"x"), "limit": 1}));
    assert_eq!(status, 200, "range: {answer}");
    answer["header"]["revision"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .expect("revision")
}

/// The raised alarms, as etcd lists them.
pub fn alarms(addr: &str) -> Value {
    let (status, answer) = json_of(addr, "/v3/maintenance/alarm", &json!({"action": "GET"}));
    assert_eq!(status, 200, "alarm list: {answer}");
    answer["alarms"].clone()
}

/// This member's db size from its status.
pub fn db_bytes(addr: &str) -> u64 {
    let (_, answer) = json_of(addr, "/v3/maintenance/status", &json!({}));
    answer["dbSize"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0)
}
