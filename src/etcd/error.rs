//! Why a call to etcd failed, naming the URL or the file it was about.

use std::path::PathBuf;

/// gRPC's RESOURCE_EXHAUSTED: etcd's answer to a write while NOSPACE is raised (or that
/// would pass the quota). The gateway puts the gRPC code in the JSON body.
pub const GRPC_RESOURCE_EXHAUSTED: i64 = 8;
/// gRPC's OUT_OF_RANGE: "required revision has been compacted".
pub const GRPC_OUT_OF_RANGE: i64 = 11;

#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// Refused, timed out, TLS handshake failed: nothing usable came back.
    #[error("etcd {url}: {message}")]
    Unreachable { url: String, message: String },
    /// etcd answered with an error status (the gateway's JSON error, when there is one).
    #[error("etcd {url}: HTTP {status}: {message}")]
    Status {
        url: String,
        status: u16,
        /// The gRPC code from the gateway's error body.
        code: Option<i64>,
        message: String,
    },
    /// An answer that is not what etcd sends: not JSON, not Prometheus text, or missing
    /// the numbers diskguard reads.
    #[error("etcd {url}: unexpected answer: {message}")]
    Garbage { url: String, message: String },
    /// A CA, certificate or key file named in `[etcd]` cannot be used.
    #[error("config key etcd.{key}: {path}: {message}")]
    Tls {
        key: &'static str,
        path: PathBuf,
        message: String,
    },
}

impl EtcdError {
    /// etcd refused a write because its backend is over quota (the NOSPACE alarm).
    pub fn is_no_space(&self) -> bool {
        matches!(
            self,
            EtcdError::Status {
                code: Some(GRPC_RESOURCE_EXHAUSTED),
                ..
            }
        )
    }

    /// A compaction to a revision that is already compacted.
    pub fn is_compacted(&self) -> bool {
        matches!(
            self,
            EtcdError::Status {
                code: Some(GRPC_OUT_OF_RANGE),
                ..
            }
        )
    }

    /// Whether etcd answered at all (an error status or garbage is an answer).
    pub fn answered(&self) -> bool {
        !matches!(self, EtcdError::Unreachable { .. } | EtcdError::Tls { .. })
    }
}
