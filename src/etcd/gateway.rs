//! The v3 JSON gateway (etcd 3.4 serves it under `/v3/`): the calls diskguard makes, with
//! typed answers. The gateway prints 64-bit numbers as strings and leaves out fields that
//! are zero or empty, so every field here has a default.

use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;

use super::client::CALL_TIMEOUT;
use super::{EtcdClient, EtcdError};

/// Defragmenting rewrites the whole db file; 8 GiB (etcd's suggested maximum quota) on a
/// slow disk takes minutes.
pub const DEFRAGMENT_TIMEOUT: Duration = Duration::from_secs(600);

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A u64 the gateway prints as a string (or, from other encoders, as a number).
fn u64_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Num {
        Text(String),
        Int(u64),
    }
    match Num::deserialize(d)? {
        Num::Int(v) => Ok(v),
        Num::Text(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Header {
    #[serde(default, deserialize_with = "u64_text")]
    member_id: u64,
    #[serde(default, deserialize_with = "u64_text")]
    revision: u64,
}

/// One raised alarm.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Alarm {
    #[serde(rename = "memberID", default, deserialize_with = "u64_text")]
    pub member_id: u64,
    /// `NOSPACE`, `CORRUPT`; absent (NONE) is left out by the gateway.
    #[serde(default)]
    pub alarm: String,
}

/// `/v3/maintenance/status` of one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    pub member_id: u64,
    pub revision: u64,
    pub db_bytes: u64,
    pub in_use_bytes: Option<u64>,
    /// 0 when the member knows no leader: it cannot serve writes.
    pub leader: u64,
    /// What the member itself reports wrong (raised alarms …).
    pub errors: Vec<String>,
}

/// A cluster member as `/v3/cluster/member/list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Member {
    #[serde(rename = "ID", deserialize_with = "u64_text")]
    pub id: u64,
    /// Empty for a member that was added but has not started.
    #[serde(default)]
    pub name: String,
    #[serde(rename = "clientURLs", default)]
    pub client_urls: Vec<String>,
}

/// The calls diskguard makes, on top of [`EtcdClient`].
pub trait Gateway {
    fn alarms(&self) -> impl Future<Output = Result<Vec<Alarm>, EtcdError>> + Send;
    fn status(&self) -> impl Future<Output = Result<MemberStatus, EtcdError>> + Send;
    fn members(&self) -> impl Future<Output = Result<Vec<Member>, EtcdError>> + Send;
    fn compact(&self, revision: u64) -> impl Future<Output = Result<(), EtcdError>> + Send;
    fn defragment(&self) -> impl Future<Output = Result<(), EtcdError>> + Send;
    fn disarm(&self, alarm: &Alarm) -> impl Future<Output = Result<(), EtcdError>> + Send;
    fn lease_grant(&self, ttl_seconds: u64) -> impl Future<Output = Result<u64, EtcdError>> + Send;
    fn lease_keepalive(&self, lease: u64) -> impl Future<Output = Result<(), EtcdError>> + Send;
    fn lease_revoke(&self, lease: u64) -> impl Future<Output = Result<(), EtcdError>> + Send;
    /// Puts `key` = `value` under `lease` only if the key does not exist; `Ok(None)` when it
    /// was created, `Ok(Some(holder))` with the current value when it already existed.
    fn put_if_absent(
        &self,
        key: &str,
        value: &str,
        lease: u64,
    ) -> impl Future<Output = Result<Option<String>, EtcdError>> + Send;
    /// The value of `key`, if it exists (a read: allowed under NOSPACE).
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<String>, EtcdError>> + Send;
}

#[derive(Deserialize)]
struct AlarmAnswer {
    #[serde(default)]
    alarms: Vec<Alarm>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatusAnswer {
    #[serde(default)]
    header: Header,
    #[serde(default, deserialize_with = "u64_text")]
    db_size: u64,
    #[serde(default)]
    db_size_in_use: Option<String>,
    #[serde(default, deserialize_with = "u64_text")]
    leader: u64,
    #[serde(default)]
    errors: Vec<String>,
}

#[derive(Deserialize)]
struct MembersAnswer {
    #[serde(default)]
    members: Vec<Member>,
}

#[derive(Deserialize)]
#[serde(rename_all = "UPPERCASE")]
struct LeaseAnswer {
    #[serde(deserialize_with = "u64_text")]
    id: u64,
}

#[derive(Deserialize)]
struct Ignored {}

#[derive(Deserialize)]
struct KeyValue {
    #[serde(default)]
    value: String,
}

#[derive(Deserialize)]
struct RangeAnswer {
    #[serde(default)]
    kvs: Vec<KeyValue>,
}

#[derive(Deserialize)]
struct TxnAnswer {
    #[serde(default)]
    succeeded: bool,
    #[serde(default)]
    responses: Vec<serde_json::Value>,
}

fn decode(url: &str, text: &str) -> Result<String, EtcdError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| EtcdError::Garbage {
            url: url.to_owned(),
            message: format!("a value that is not base64: {e}"),
        })?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

impl Gateway for EtcdClient {
    async fn alarms(&self) -> Result<Vec<Alarm>, EtcdError> {
        let a: AlarmAnswer = self
            .post(
                "/v3/maintenance/alarm",
                &json!({"action": "GET"}),
                CALL_TIMEOUT,
            )
            .await?;
        Ok(a.alarms)
    }

    async fn status(&self) -> Result<MemberStatus, EtcdError> {
        let s: StatusAnswer = self
            .post("/v3/maintenance/status", &json!({}), CALL_TIMEOUT)
            .await?;
        Ok(MemberStatus {
            member_id: s.header.member_id,
            revision: s.header.revision,
            db_bytes: s.db_size,
            in_use_bytes: s.db_size_in_use.and_then(|v| v.parse().ok()),
            leader: s.leader,
            errors: s.errors,
        })
    }

    async fn members(&self) -> Result<Vec<Member>, EtcdError> {
        let m: MembersAnswer = self
            .post("/v3/cluster/member/list", &json!({}), CALL_TIMEOUT)
            .await?;
        Ok(m.members)
    }

    async fn compact(&self, revision: u64) -> Result<(), EtcdError> {
        // physical: the call returns once the old revisions are gone from the backend, so
        // the in-use size read next shows what a defragment would give back.
        let body = json!({"revision": revision.to_string(), "physical": true});
        match self
            .post::<Ignored>("/v3/kv/compaction", &body, DEFRAGMENT_TIMEOUT)
            .await
        {
            Err(e) if e.is_compacted() => Ok(()),
            other => other.map(|_| ()),
        }
    }

    async fn defragment(&self) -> Result<(), EtcdError> {
        self.post::<Ignored>("/v3/maintenance/defragment", &json!({}), DEFRAGMENT_TIMEOUT)
            .await
            .map(|_| ())
    }

    async fn disarm(&self, alarm: &Alarm) -> Result<(), EtcdError> {
        let body = json!({
            "action": "DEACTIVATE",
            "memberID": alarm.member_id.to_string(),
            "alarm": alarm.alarm,
        });
        self.post::<Ignored>("/v3/maintenance/alarm", &body, CALL_TIMEOUT)
            .await
            .map(|_| ())
    }

    async fn lease_grant(&self, ttl_seconds: u64) -> Result<u64, EtcdError> {
        let l: LeaseAnswer = self
            .post(
                "/v3/lease/grant",
                &json!({"TTL": ttl_seconds.to_string()}),
                CALL_TIMEOUT,
            )
            .await?;
        Ok(l.id)
    }

    async fn lease_keepalive(&self, lease: u64) -> Result<(), EtcdError> {
        // A streaming call; the gateway answers one request body with one result.
        self.post::<serde_json::Value>(
            "/v3/lease/keepalive",
            &json!({"ID": lease.to_string()}),
            CALL_TIMEOUT,
        )
        .await
        .map(|_| ())
    }

    async fn lease_revoke(&self, lease: u64) -> Result<(), EtcdError> {
        self.post::<Ignored>(
            "/v3/lease/revoke",
            &json!({"ID": lease.to_string()}),
            CALL_TIMEOUT,
        )
        .await
        .map(|_| ())
    }

    async fn put_if_absent(
        &self,
        key: &str,
        value: &str,
        lease: u64,
    ) -> Result<Option<String>, EtcdError> {
        let k = b64(key);
        let body = json!({
            "compare": [{"key": k, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
            "success": [{"request_put": {"key": k, "value": b64(value), "lease": lease.to_string()}}],
            "failure": [{"request_range": {"key": k}}],
        });
        let t: TxnAnswer = self.post("/v3/kv/txn", &body, CALL_TIMEOUT).await?;
        if t.succeeded {
            return Ok(None);
        }
        let holder = t
            .responses
            .first()
            .and_then(|r| r["response_range"]["kvs"][0]["value"].as_str())
            .map(|v| decode(self.endpoint(), v))
            .transpose()?
            .unwrap_or_default();
        Ok(Some(holder))
    }

    async fn get(&self, key: &str) -> Result<Option<String>, EtcdError> {
        let r: RangeAnswer = self
            .post("/v3/kv/range", &json!({"key": b64(key)}), CALL_TIMEOUT)
            .await?;
        r.kvs
            .first()
            .map(|kv| decode(self.endpoint(), &kv.value))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_reads_the_gateway_s_string_numbers() {
        let text = r#"{"header":{"cluster_id":"15118495548433857066","member_id":"13668033151171901709","revision":"24","raft_term":"2"},"version":"3.4.23","dbSize":"17371136","leader":"13668033151171901709","raftIndex":"31","errors":["memberID:13668033151171901709 alarm:NOSPACE "],"dbSizeInUse":"13701120"}"#;
        let s: StatusAnswer = serde_json::from_str(text).expect("parses");
        assert_eq!(s.header.member_id, 13_668_033_151_171_901_709);
        assert_eq!(s.header.revision, 24);
        assert_eq!(s.db_size, 17_371_136);
        assert_eq!(s.db_size_in_use.as_deref(), Some("13701120"));
        assert_eq!(s.errors.len(), 1);
    }

    #[test]
    fn no_alarms_is_an_empty_object() {
        let a: AlarmAnswer = serde_json::from_str("{}").expect("parses");
        assert!(a.alarms.is_empty());
        let a: AlarmAnswer = serde_json::from_str(
            r#"{"alarms":[{"memberID":"13668033151171901709","alarm":"NOSPACE"}]}"#,
        )
        .expect("parses");
        assert_eq!(a.alarms[0].alarm, "NOSPACE");
        assert_eq!(a.alarms[0].member_id, 13_668_033_151_171_901_709);
    }

    #[test]
    fn members_without_names_have_not_started() {
        let m: MembersAnswer = serde_json::from_str(
            r#"{"members":[{"ID":"1","name":"a","clientURLs":["http://127.0.0.1:1"]},{"ID":"2","peerURLs":["http://x"]}]}"#,
        )
        .expect("parses");
        assert_eq!(m.members[1].name, "");
        assert!(m.members[1].client_urls.is_empty());
    }
}
