//! Optional TLS on the HTTP port (`[http.tls]`): the certificate chain and key read once at
//! start (an unreadable or malformed file is refused naming it), HTTP/1.1 over rustls (ring),
//! TLS 1.2 and 1.3.

use perdure_types::config::HttpTlsConfig;
use std::sync::Arc;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// The TLS setup could not be read.
#[derive(Debug, thiserror::Error)]
#[error("http.tls.{key} {}: {reason}", path.display())]
pub struct TlsError {
    /// The config key (`cert_file` or `key_file`).
    pub key: &'static str,
    /// The file.
    pub path: std::path::PathBuf,
    /// What is wrong.
    pub reason: String,
}

/// The acceptor for `config`'s certificate and key.
pub fn acceptor(config: &HttpTlsConfig) -> Result<TlsAcceptor, TlsError> {
    let cert_err = |reason: String| TlsError {
        key: "cert_file",
        path: config.cert_file.clone(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&config.cert_file)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_err("no certificate in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&config.key_file).map_err(|e| TlsError {
        key: "key_file",
        path: config.key_file.clone(),
        reason: e.to_string(),
    })?;
    // ring, named explicitly (rustls would refuse to guess if another crate of the workspace
    // enabled aws-lc-rs too); ring offers no post-quantum key exchange, hence the deprecation
    #[allow(deprecated)]
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| cert_err(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError {
            key: "key_file",
            path: config.key_file.clone(),
            reason: format!("does not fit the certificate: {e}"),
        })?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}
