//! A mock HTTP server, a small HTTP client, TLS certificates made with openssl.

pub mod certs;
pub mod http_client;
pub mod mockhttp;
