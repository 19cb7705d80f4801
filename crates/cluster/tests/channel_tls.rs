//! The node channel over TLS (`[cluster.tls]`): mutual authentication by certificates of the
//! cluster's CA, the node identity taken from the certificate. Real transport endpoints on
//! 127.0.0.1 with certificates made here by rcgen (as `perdure cert` makes them).

use perdure_cluster::transport::{
    handler_fn, node_name, serve, ChannelTls, Handler, Peers, TransportConfig, TransportError,
};
use perdure_types::config::TlsConfig;
use perdure_types::NodeId;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ECHO: u16 = 1;

/// A CA: its certificate and key.
struct Ca {
    cert: Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        Ca {
            cert: p.self_signed(&key).unwrap(),
            key,
        }
    }

    /// Writes this CA and a certificate for node `id` issued by it under `dir`; their paths.
    fn issue(&self, dir: &Path, id: NodeId) -> TlsConfig {
        let mut p = CertificateParams::new(vec![node_name(id)]).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, format!("perdure node {id}"));
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        let n = std::fs::read_dir(dir).unwrap().count();
        let config = TlsConfig {
            ca: dir.join(format!("{n}-ca.pem")),
            cert: dir.join(format!("{n}-node-{id}.pem")),
            key: dir.join(format!("{n}-node-{id}.key")),
        };
        std::fs::write(&config.ca, self.cert.pem()).unwrap();
        std::fs::write(&config.cert, cert.pem()).unwrap();
        std::fs::write(&config.key, key.serialize_pem()).unwrap();
        config
    }
}

/// Node `id` of the test cluster, over TLS with certificate files `tls`, which must be a
/// certificate for node `cert_of` (another node's, to play an impostor).
fn config(id: NodeId, tls: &TlsConfig, cert_of: NodeId) -> TransportConfig {
    TransportConfig {
        cluster_id: "tls-test".into(),
        node_id: id,
        partitions: 8,
        secret: String::new(),
        tls: Some(ChannelTls::load(tls, cert_of).unwrap()),
        rpc_timeout: Duration::from_secs(2),
        stats: Default::default(),
    }
}

/// A server whose handler echoes and counts its calls.
async fn server(config: TransportConfig) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let handler: Arc<dyn Handler> = Arc::new(handler_fn(move |_, _, body: Vec<u8>| {
        c.fetch_add(1, Ordering::SeqCst);
        async move { Ok(body) }
    }));
    tokio::spawn(serve(
        listener,
        Arc::new(config),
        handler,
        std::future::pending(),
    ));
    (addr, calls)
}

/// A relay in front of `target` that keeps a copy of every byte it passes.
async fn tap(target: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let outbound = TcpStream::connect(target).await.unwrap();
            let (crd, cwr) = inbound.into_split();
            let (srd, swr) = outbound.into_split();
            tokio::spawn(copy(crd, swr, s.clone()));
            tokio::spawn(copy(srd, cwr, s.clone()));
        }
    });
    (addr, seen)
}

/// Copies `rd` to `wr`, keeping a copy in `seen`.
async fn copy(
    mut rd: tokio::net::tcp::OwnedReadHalf,
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    seen: Arc<Mutex<Vec<u8>>>,
) {
    let mut buf = vec![0u8; 16 << 10];
    while let Ok(n @ 1..) = rd.read(&mut buf).await {
        seen.lock().unwrap().extend_from_slice(&buf[..n]);
        if wr.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = wr.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_with_certificates_of_the_cluster_ca_talk_and_nothing_is_in_clear_text() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("perdure test CA");
    let (c1, c2) = (ca.issue(dir.path(), 1), ca.issue(dir.path(), 2));
    let (addr, calls) = server(config(2, &c2, 2)).await;
    let (relay, seen) = tap(addr).await;
    let peers = Peers::new(Arc::new(config(1, &c1, 1)));
    peers.set_address(2, relay.to_string());
    for i in 0..10u8 {
        let body = format!("add 5 to counter/{i}").into_bytes();
        assert_eq!(
            peers.request(2, ECHO, body.clone(), None).await.unwrap(),
            body
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 10);
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() > 1000, "{} bytes relayed", seen.len());
    assert!(
        !seen.windows(5).any(|w| w == b"add 5"),
        "a request crossed the path in clear text"
    );
    assert!(!seen.windows(8).any(|w| w == b"tls-test"), "the cluster id");
}

/// Expects the request from `client` to node `to` at `addr` to fail (the TLS handshake is
/// refused by one side or the other: which one tells depends on who checks first).
async fn expect_refused(client: TransportConfig, to: NodeId, addr: SocketAddr, what: &str) {
    let peers = Peers::new(Arc::new(client));
    peers.set_address(to, addr.to_string());
    match peers.request(to, ECHO, b"add 5".to_vec(), None).await {
        Err(TransportError::Refused { .. } | TransportError::Unreachable { .. }) => {}
        other => panic!("{what}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_a_certificate_of_another_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("perdure test CA");
    let other = Ca::new("perdure test CA");
    let (addr, calls) = server(config(2, &ca.issue(dir.path(), 2), 2)).await;
    // a client of another CA (with the same name), trusting that CA
    expect_refused(
        config(1, &other.issue(dir.path(), 1), 1),
        2,
        addr,
        "a client of another CA",
    )
    .await;
    // a server of another CA, to a client of the cluster's CA
    let (other_addr, other_calls) = server(config(2, &other.issue(dir.path(), 2), 2)).await;
    expect_refused(
        config(1, &ca.issue(dir.path(), 1), 1),
        2,
        other_addr,
        "a server of another CA",
    )
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(other_calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_of_node_2_used_by_node_3_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("perdure test CA");
    let c2 = ca.issue(dir.path(), 2);
    let (addr, calls) = server(config(1, &ca.issue(dir.path(), 1), 1)).await;

    // Node 3 connects with node 2's certificate (and key): node 1 refuses it.
    let peers = Peers::new(Arc::new(config(3, &c2, 2)));
    peers.set_address(1, addr.to_string());
    match peers.request(1, ECHO, b"add 5".to_vec(), None).await {
        Err(TransportError::Refused { node: 1, reason }) => {
            assert!(reason.contains("not for node-3.perdure"), "{reason}")
        }
        other => panic!("node 3 with node 2's certificate was let in: {other:?}"),
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    // Node 3 serves with node 2's certificate: a node connecting to node 3 refuses it.
    let (addr3, calls3) = server(config(3, &c2, 2)).await;
    let peers = Peers::new(Arc::new(config(1, &ca.issue(dir.path(), 1), 1)));
    peers.set_address(3, addr3.to_string());
    match peers.request(3, ECHO, b"add 5".to_vec(), None).await {
        Err(TransportError::Refused { node: 3, reason }) => {
            assert!(reason.contains("TLS"), "{reason}")
        }
        other => panic!("node 1 took node 2's certificate for node 3: {other:?}"),
    }
    assert_eq!(calls3.load(Ordering::SeqCst), 0);
}

#[test]
fn a_node_refuses_to_start_with_a_certificate_of_another_node() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("perdure test CA");
    let e = ChannelTls::load(&ca.issue(dir.path(), 2), 3).unwrap_err();
    let e = e.to_string();
    assert!(
        e.contains("cluster.tls.cert") && e.contains("node-3.perdure"),
        "{e}"
    );
    let mut missing = ca.issue(dir.path(), 3);
    missing.key = dir.path().join("nowhere.key");
    let e = ChannelTls::load(&missing, 3).unwrap_err().to_string();
    assert!(
        e.contains("cluster.tls.key") && e.contains("nowhere.key"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_tls_and_a_node_with_it_do_not_talk() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("perdure test CA");
    let plain = |id| TransportConfig {
        secret: "a-cluster-secret-of-some-length".into(),
        tls: None,
        ..config(id, &ca.issue(dir.path(), id), id)
    };
    let (tls_addr, tls_calls) = server(config(2, &ca.issue(dir.path(), 2), 2)).await;
    expect_refused(plain(1), 2, tls_addr, "a client without TLS").await;
    let (plain_addr, plain_calls) = server(plain(2)).await;
    expect_refused(
        config(1, &ca.issue(dir.path(), 1), 1),
        2,
        plain_addr,
        "a server without TLS",
    )
    .await;
    assert_eq!(tls_calls.load(Ordering::SeqCst), 0);
    assert_eq!(plain_calls.load(Ordering::SeqCst), 0);
}

/// The cost of TLS on the channel, printed beside `transport.rs`'s
/// `echo_latency_and_throughput` (the same requests; no timing is asserted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_over_tls_latency_and_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("perdure test CA");
    let (addr, _) = server(config(2, &ca.issue(dir.path(), 2), 2)).await;
    let peers = Peers::new(Arc::new(config(1, &ca.issue(dir.path(), 1), 1)));
    peers.set_address(2, addr.to_string());
    peers.request(2, ECHO, vec![0], None).await.unwrap();
    let n = 2000;
    let start = std::time::Instant::now();
    for i in 0..n as u64 {
        let body = i.to_le_bytes().to_vec();
        assert_eq!(
            peers.request(2, ECHO, body.clone(), None).await.unwrap(),
            body
        );
    }
    let sequential = start.elapsed();
    let rounds = 10;
    let start = std::time::Instant::now();
    for _ in 0..rounds {
        let mut requests = tokio::task::JoinSet::new();
        for i in 0..1000u64 {
            let peers = peers.clone();
            requests.spawn(async move {
                let body = i.to_le_bytes().to_vec();
                assert_eq!(
                    peers.request(2, ECHO, body.clone(), None).await.unwrap(),
                    body
                );
            });
        }
        while let Some(done) = requests.join_next().await {
            done.unwrap();
        }
    }
    let concurrent = start.elapsed();
    println!(
        "echo over TLS: sequential round trip {:?} mean ({n} requests); \
         1000 concurrent: {:.0} requests/s ({rounds} rounds in {concurrent:?})",
        sequential / n,
        (rounds * 1000) as f64 / concurrent.as_secs_f64(),
    );
}
