//! HTTPS on the HTTP port (`[http.tls]`), in process: a client trusting the node's certificate
//! is served over TLS; plain HTTP on that port is not; an unusable key file is refused at start
//! naming the key. (`fixtures/tls-*.pem`: a self-signed certificate for 127.0.0.1 and
//! localhost, valid until 2126, made with `openssl req -x509 -newkey ec ...`.)

mod common;

use common::{test_config, Node};
use perdure_types::config::HttpTlsConfig;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn tls_config() -> HttpTlsConfig {
    HttpTlsConfig {
        cert_file: fixture("tls-cert.pem"),
        key_file: fixture("tls-key.pem"),
    }
}

/// `GET path` over TLS, trusting the fixture certificate; the raw response.
async fn https_get(addr: &str, path: &str) -> String {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(fixture("tls-cert.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_serves_https_with_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = test_config(dir.path());
    c.http.tls = Some(tls_config());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let node = tokio::spawn(perdure_node::run(c, listener, async move {
        let _ = rx.await;
    }));
    let mut answer = String::new();
    for _ in 0..300 {
        answer = https_get(&addr, "/readyz").await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"ready\""), "{answer}");
    // plain HTTP on the TLS port is not served
    let plain = reqwest::Client::new()
        .get(format!("http://{addr}/healthz"))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    let _ = tx.send(());
    node.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_key_is_refused_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = test_config(dir.path());
    c.http.tls = Some(HttpTlsConfig {
        cert_file: fixture("tls-cert.pem"),
        key_file: dir.path().join("missing.pem"),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let e = perdure_node::run(c, listener, std::future::pending())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("http.tls.key_file") && e.contains("missing.pem"),
        "{e}"
    );
    // and the data directory was released: the same node starts again
    let _ = Node::start_with(test_config(dir.path())).await.stop().await;
}
