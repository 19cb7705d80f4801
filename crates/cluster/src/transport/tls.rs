//! TLS on the node channel (`[cluster.tls]`): mutual authentication by certificates of the
//! cluster's CA, and a peer is the node its certificate names.
//!
//! Every node has a certificate for the DNS name `node-{id}.perdure` ([`node_name`]) issued by
//! the cluster's CA (`perdure cert` makes a CA and node certificates for a local cluster). The
//! CA is the only trust anchor; TLS 1.3 only, rustls with the ring provider (installed per
//! config, never as the process default).
//!
//! - The client verifies the server's certificate for the name of the node it means to reach,
//!   so a node answering at another node's address (with its own certificate) is refused.
//! - The server requires a client certificate of the CA, and checks it is valid for the node id
//!   the client claims in its `Hello`: a certificate of node 2 used by node 3 is refused.
//!
//! Inside TLS the messages are those of the secret mode, without proofs or frame MACs (TLS
//! authenticates and encrypts every record): the cluster id, partition count and protocol
//! version are still checked by the `Hello`.

use super::wire::{Rd, Wr};
use perdure_types::config::TlsConfig;
use perdure_types::NodeId;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The DNS name a node's certificate is issued for: `node-{id}.perdure`.
pub fn node_name(id: NodeId) -> String {
    format!("node-{id}.perdure")
}

/// The node channel's TLS could not be set up; names the config key and file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("`{key}` {}: {reason}", path.display())]
    File {
        /// The config key (`cluster.tls.ca`, `.cert`, `.key`).
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the certificates or key.
    #[error("`cluster.tls`: {0}")]
    Rustls(String),
}

/// A node's TLS for the node channel: its acceptor (server side) and connector (client side).
#[derive(Clone)]
pub struct ChannelTls {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
}

impl std::fmt::Debug for ChannelTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChannelTls")
    }
}

fn file_error(key: &'static str, path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File {
        key,
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(key, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(key, path, e))?;
    if certs.is_empty() {
        return Err(file_error(key, path, "no certificate in the file"));
    }
    Ok(certs)
}

impl ChannelTls {
    /// Reads the CA, certificate and key of `config` for node `me`, and checks the certificate is
    /// one for [`node_name`]`(me)`.
    pub fn load(config: &TlsConfig, me: NodeId) -> Result<Self, TlsError> {
        let ca = certs("cluster.tls.ca", &config.ca)?;
        let chain = certs("cluster.tls.cert", &config.cert)?;
        let key = PrivateKeyDer::from_pem_file(&config.key)
            .map_err(|e| file_error("cluster.tls.key", &config.key, e))?;
        check_names(&chain[0], me)
            .map_err(|reason| file_error("cluster.tls.cert", &config.cert, reason))?;
        let rustls = |e: rustls::Error| TlsError::Rustls(e.to_string());
        let mut roots = rustls::RootCertStore::empty();
        for c in ca {
            roots
                .add(c)
                .map_err(|e| file_error("cluster.tls.ca", &config.ca, e))?;
        }
        let roots = Arc::new(roots);
        // ring rather than aws-lc-rs keeps the build lean (no C/CMake toolchain for aws-lc);
        // rustls 0.23.48 deprecates it for lacking post-quantum key exchange, which the
        // cluster-internal channel does without (its peers are authenticated by certificate).
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(rustls)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(rustls)?;
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(rustls)?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(rustls)?;
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
        })
    }

    /// The server side of TLS on an accepted connection: the stream's halves and the client's
    /// certificate (verified to chain to the CA; whose node it is, is checked by the caller).
    pub(crate) async fn accept(
        &self,
        stream: TcpStream,
    ) -> io::Result<(Rd, Wr, CertificateDer<'static>)> {
        let tls = self.acceptor.accept(stream).await?;
        let cert = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no client certificate"))?;
        let (rd, wr) = tokio::io::split(tls);
        Ok((Box::new(rd), Box::new(wr), cert))
    }

    /// The client side of TLS to node `node`: its certificate must be valid for
    /// [`node_name`]`(node)`.
    pub(crate) async fn connect(&self, stream: TcpStream, node: NodeId) -> io::Result<(Rd, Wr)> {
        let name = ServerName::try_from(node_name(node))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let tls = self.connector.connect(name, stream).await?;
        let (rd, wr) = tokio::io::split(tls);
        Ok((Box::new(rd), Box::new(wr)))
    }
}

/// Checks that `cert` is a certificate for node `node`'s name; `Err` says why not.
pub(crate) fn check_names(cert: &CertificateDer<'_>, node: NodeId) -> Result<(), String> {
    let ee = webpki::EndEntityCert::try_from(cert)
        .map_err(|e| format!("not a usable certificate: {e}"))?;
    let name = ServerName::try_from(node_name(node)).map_err(|e| e.to_string())?;
    ee.verify_is_valid_for_subject_name(&name).map_err(|_| {
        format!(
            "the certificate is not for {} (node {node})",
            node_name(node)
        )
    })
}
