//! The rustls client configuration for an `https://` endpoint: the CA that signed etcd's
//! certificate, and the client certificate and key etcd asks for (`--client-cert-auth`).

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::EtcdError;
use crate::config::EtcdSettings;

fn tls_error(key: &'static str, path: &Path, message: impl std::fmt::Display) -> EtcdError {
    EtcdError::Tls {
        key,
        path: path.to_owned(),
        message: message.to_string(),
    }
}

fn certificates(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, EtcdError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_error(key, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(key, path, e))?;
    if certs.is_empty() {
        return Err(tls_error(key, path, "no PEM certificate in the file"));
    }
    Ok(certs)
}

/// Builds the TLS configuration from the `[etcd]` files. The validation stage has made
/// sure `ca_file` is set for `https://` and that `cert_file` and `key_file` come together.
pub fn client_config(settings: &EtcdSettings) -> Result<rustls::ClientConfig, EtcdError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in certificates("ca_file", &settings.ca_file)? {
        roots
            .add(cert)
            .map_err(|e| tls_error("ca_file", &settings.ca_file, e))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("ca_file", &settings.ca_file, e))?
        .with_root_certificates(roots);
    if settings.cert_file.as_os_str().is_empty() {
        return Ok(builder.with_no_client_auth());
    }
    let chain = certificates("cert_file", &settings.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&settings.key_file)
        .map_err(|e| tls_error("key_file", &settings.key_file, e))?;
    builder
        .with_client_auth_cert(chain, key)
        .map_err(|e| tls_error("key_file", &settings.key_file, e))
}
