//! The HTTP(S) client for one etcd member's client URL: GET for `/metrics`, POST with a
//! JSON body for the v3 gateway, each exchange bounded in time and in size.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::EtcdError;
use crate::config::EtcdSettings;

/// Local calls answer in milliseconds; past this etcd is as good as down.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// etcd's `/metrics` is a few hundred kB; anything much larger is not etcd.
const BODY_LIMIT: usize = 4 * 1024 * 1024;

/// A client for one member. Cheap to clone; [`EtcdClient::for_url`] reuses the TLS set-up
/// for the other members of the cluster.
#[derive(Clone)]
pub struct EtcdClient {
    base: String,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    tls: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for EtcdClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdClient")
            .field("base", &self.base)
            .finish()
    }
}

fn build(tls: Arc<rustls::ClientConfig>) -> Client<HttpsConnector<HttpConnector>, Full<Bytes>> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config((*tls).clone())
        .https_or_http()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(connector)
}

impl EtcdClient {
    /// A client for `etcd.endpoint`, reading the TLS files when it is `https://`.
    pub fn new(settings: &EtcdSettings) -> Result<Self, EtcdError> {
        let tls = if settings.endpoint.starts_with("https://") {
            super::tls::client_config(settings)?
        } else {
            // Plain http:// never uses it; hyper-rustls wants one all the same.
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| EtcdError::Unreachable {
                url: settings.endpoint.clone(),
                message: format!("TLS set-up: {e}"),
            })?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()
        };
        let tls = Arc::new(tls);
        Ok(EtcdClient {
            base: settings.endpoint.trim_end_matches('/').to_owned(),
            client: build(Arc::clone(&tls)),
            tls,
        })
    }

    /// The same credentials for another member's client URL.
    pub fn for_url(&self, url: &str) -> EtcdClient {
        EtcdClient {
            base: url.trim_end_matches('/').to_owned(),
            client: build(Arc::clone(&self.tls)),
            tls: Arc::clone(&self.tls),
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET `path`; the body as text when the status is 200.
    pub async fn get_text(&self, path: &str) -> Result<String, EtcdError> {
        let request = hyper::Request::get(self.url(path)).body(Full::new(Bytes::new()));
        let (status, body) = self.exchange(path, request, CALL_TIMEOUT).await?;
        let text = String::from_utf8(body.to_vec()).map_err(|_| EtcdError::Garbage {
            url: self.url(path),
            message: "the body is not UTF-8 text".into(),
        })?;
        if status != 200 {
            return Err(EtcdError::Status {
                url: self.url(path),
                status,
                code: None,
                message: one_line(&text),
            });
        }
        Ok(text)
    }

    /// POST `body` as JSON to a v3 gateway path and parse the answer as `T`.
    pub async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
        limit: Duration,
    ) -> Result<T, EtcdError> {
        let request = hyper::Request::post(self.url(path))
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())));
        let (status, bytes) = self.exchange(path, request, limit).await?;
        if status != 200 {
            // The gateway's error body: {"error": "...", "message": "...", "code": 8}.
            let parsed: Option<serde_json::Value> = serde_json::from_slice(&bytes).ok();
            let code = parsed.as_ref().and_then(|v| v["code"].as_i64());
            let message = parsed
                .as_ref()
                .and_then(|v| v["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| one_line(&String::from_utf8_lossy(&bytes)));
            return Err(EtcdError::Status {
                url: self.url(path),
                status,
                code,
                message,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| EtcdError::Garbage {
            url: self.url(path),
            message: format!("not the JSON etcd sends: {e}"),
        })
    }

    async fn exchange(
        &self,
        path: &str,
        request: Result<hyper::Request<Full<Bytes>>, hyper::http::Error>,
        limit: Duration,
    ) -> Result<(u16, Bytes), EtcdError> {
        let url = self.url(path);
        let unreachable = |message: String| EtcdError::Unreachable {
            url: url.clone(),
            message,
        };
        let request = request.map_err(|e| unreachable(format!("bad URL: {e}")))?;
        let work = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| unreachable(innermost(&e)))?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), BODY_LIMIT)
                .collect()
                .await
                .map_err(|e| EtcdError::Garbage {
                    url: url.clone(),
                    message: format!("reading the body: {e}"),
                })?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(limit, work)
            .await
            .unwrap_or_else(|_| Err(unreachable(format!("no answer within {limit:?}"))))
    }
}

/// hyper's top-level message is "client error (Connect)"; the innermost cause says what
/// happened (refused, certificate unknown …).
fn innermost(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text = cause.to_string();
        source = cause.source();
    }
    text
}

/// At most one line of 200 characters: enough to recognise an answer in a log line.
fn one_line(text: &str) -> String {
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    line.chars().take(200).collect()
}
