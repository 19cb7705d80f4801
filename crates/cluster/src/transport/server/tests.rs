use super::*;
use crate::transport::handler_fn;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::AsyncReadExt;

fn config() -> Arc<TransportConfig> {
    Arc::new(TransportConfig {
        cluster_id: "c".into(),
        node_id: 2,
        partitions: 4,
        secret: "the-secret-of-the-cluster".into(),
        tls: None,
        rpc_timeout: Duration::from_secs(5),
        stats: Default::default(),
    })
}

/// A server whose handler echoes and counts.
async fn server() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let handler = Arc::new(handler_fn(move |_, _, body| {
        c.fetch_add(1, Ordering::SeqCst);
        async move { Ok(body) }
    }));
    tokio::spawn(serve(listener, config(), handler, std::future::pending()));
    (addr, calls)
}

/// A hand-driven client: unsealed frames until [`Raw::prove`], then frames of the session.
struct Raw {
    stream: TcpStream,
    reader: FrameReader,
    seal: Option<FrameMac>,
}

/// The transcript of node 1's handshake with node 2 (the test server).
fn transcript<'a>(nonce_c: &'a [u8; 32], nonce_s: &'a [u8; 32]) -> Transcript<'a> {
    Transcript {
        version: PROTOCOL_VERSION,
        cluster_id: "c",
        partitions: 4,
        client: 1,
        server: 2,
        nonce_c,
        nonce_s,
    }
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Raw {
        Raw {
            stream: TcpStream::connect(addr).await.unwrap(),
            reader: FrameReader::new(),
            seal: None,
        }
    }

    async fn send(&mut self, m: &Message) {
        wire::write_one(&mut self.stream, m, self.seal.as_mut())
            .await
            .unwrap();
    }

    /// Sends the client's proof (under `secret`) and, from here, seals and opens frames as
    /// the session of that proof would.
    async fn prove(&mut self, secret: &str, nonce_c: &[u8; 32], nonce_s: &[u8; 32]) {
        let t = transcript(nonce_c, nonce_s);
        self.send(&Message::Proof {
            proof: t.client_proof(secret),
        })
        .await;
        let session = t.session(secret, Role::Client);
        self.seal = Some(session.send);
        self.reader.authenticate(session.recv);
    }

    async fn recv(&mut self) -> Option<Message> {
        tokio::time::timeout(
            Duration::from_secs(3),
            self.reader.next(&mut self.stream, FRAME_LIMIT),
        )
        .await
        .expect("the server answers or hangs up")
        .ok()
        .flatten()
    }

    async fn expect_closed(&mut self) {
        let mut b = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(3), self.stream.read(&mut b))
            .await
            .expect("the server hangs up");
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    }

    /// Hello, then the server's challenge: `(nonce_c, nonce_s)`.
    async fn hello(&mut self) -> ([u8; 32], [u8; 32]) {
        let nonce_c = auth::nonce();
        self.send(&Message::Hello {
            version: PROTOCOL_VERSION,
            cluster_id: "c".into(),
            node_id: 1,
            partitions: 4,
            nonce: nonce_c,
        })
        .await;
        match self.recv().await {
            Some(Message::Challenge {
                node_id: 2,
                nonce,
                proof,
            }) => {
                assert!(transcript(&nonce_c, &nonce).verify_server_proof(&config().secret, &proof));
                (nonce_c, nonce)
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn a_request_before_the_handshake_is_disconnected() {
    let (addr, calls) = server().await;
    let mut raw = Raw::connect(addr).await;
    raw.send(&Message::Request {
        id: 1,
        kind: 1,
        body: vec![1],
    })
    .await;
    raw.expect_closed().await;

    // Hello, then a request instead of the proof.
    let mut raw = Raw::connect(addr).await;
    raw.hello().await;
    raw.send(&Message::Request {
        id: 1,
        kind: 1,
        body: vec![1],
    })
    .await;
    raw.expect_closed().await;
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_wrong_proof_is_refused_as_a_wrong_secret() {
    let (addr, calls) = server().await;
    let mut raw = Raw::connect(addr).await;
    let (nonce_c, nonce_s) = raw.hello().await;
    raw.send(&Message::Proof {
        proof: transcript(&nonce_c, &nonce_s).client_proof("not-the-secret"),
    })
    .await;
    match raw.recv().await {
        Some(Message::Refused { reason }) => {
            assert!(reason.starts_with("wrong cluster secret"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    raw.expect_closed().await;

    // Replaying the server's own proof as the client's does not work either.
    let mut raw = Raw::connect(addr).await;
    let (nonce_c, nonce_s) = raw.hello().await;
    raw.send(&Message::Proof {
        proof: transcript(&nonce_c, &nonce_s).server_proof(&config().secret),
    })
    .await;
    assert!(matches!(raw.recv().await, Some(Message::Refused { .. })));

    // Nor does a proof made for another client id than the one this client claimed.
    let mut raw = Raw::connect(addr).await;
    let (nonce_c, nonce_s) = raw.hello().await;
    let as_node_3 = Transcript {
        client: 3,
        ..transcript(&nonce_c, &nonce_s)
    };
    raw.send(&Message::Proof {
        proof: as_node_3.client_proof(&config().secret),
    })
    .await;
    assert!(matches!(raw.recv().await, Some(Message::Refused { .. })));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_peer_claiming_the_servers_own_id_is_refused() {
    let (addr, _) = server().await;
    let mut raw = Raw::connect(addr).await;
    raw.send(&Message::Hello {
        version: PROTOCOL_VERSION,
        cluster_id: "c".into(),
        node_id: 2,
        partitions: 4,
        nonce: auth::nonce(),
    })
    .await;
    match raw.recv().await {
        Some(Message::Refused { reason }) => assert!(reason.contains("this node (2)")),
        other => panic!("{other:?}"),
    }
    raw.expect_closed().await;
}

#[tokio::test]
async fn a_handshake_message_after_the_handshake_is_disconnected() {
    let (addr, calls) = server().await;
    let mut raw = Raw::connect(addr).await;
    let (nonce_c, nonce_s) = raw.hello().await;
    raw.prove(&config().secret, &nonce_c, &nonce_s).await;
    assert!(matches!(raw.recv().await, Some(Message::Welcome)));
    raw.send(&Message::Request {
        id: 9,
        kind: 1,
        body: vec![4, 2],
    })
    .await;
    match raw.recv().await {
        Some(Message::Response { id: 9, body }) => assert_eq!(body, [4, 2]),
        other => panic!("{other:?}"),
    }
    raw.send(&Message::Ping).await;
    assert!(matches!(raw.recv().await, Some(Message::Pong)));
    raw.send(&Message::Welcome).await;
    raw.expect_closed().await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_frame_without_the_sessions_mac_closes_the_connection() {
    let (addr, calls) = server().await;
    let mut raw = Raw::connect(addr).await;
    let (nonce_c, nonce_s) = raw.hello().await;
    raw.prove(&config().secret, &nonce_c, &nonce_s).await;
    assert!(matches!(raw.recv().await, Some(Message::Welcome)));
    // The request of a client that proved the secret, but sent without the session's MAC
    // (as a relay injecting its own frame would).
    let unsealed = Message::Request {
        id: 1,
        kind: 1,
        body: vec![1],
    };
    wire::write_one(&mut raw.stream, &unsealed, None)
        .await
        .unwrap();
    raw.expect_closed().await;
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn connections_over_the_handshake_cap_are_closed_at_once_and_peers_get_in_later() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = config();
    let handler = Arc::new(handler_fn(|_, _, body| async move { Ok(body) }));
    tokio::spawn(serve(
        listener,
        config.clone(),
        handler,
        std::future::pending(),
    ));
    // connections that never send a byte: the cap's worth, and some more
    let extra = 8;
    let mut silent = Vec::new();
    for _ in 0..MAX_PENDING_HANDSHAKES + extra {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    // the extra ones are closed by the server long before the handshake timeout; the others
    // stay open (waiting for their Hello)
    let closed = futures::future::join_all(silent.iter_mut().map(|s| async move {
        let mut b = [0u8; 1];
        matches!(
            tokio::time::timeout(HANDSHAKE_TIMEOUT / 4, s.read(&mut b)).await,
            Ok(Ok(0) | Err(_))
        )
    }))
    .await;
    assert_eq!(closed.iter().filter(|c| **c).count(), extra);
    assert_eq!(config.stats.handshakes_shed(), extra as u64);
    // once the half-open connections are gone, a real peer completes its handshake
    drop(silent);
    let mut welcomed = false;
    for _ in 0..50 {
        let mut raw = Raw::connect(addr).await;
        let nonce_c = auth::nonce();
        raw.send(&Message::Hello {
            version: PROTOCOL_VERSION,
            cluster_id: "c".into(),
            node_id: 1,
            partitions: 4,
            nonce: nonce_c,
        })
        .await;
        // shed (the server has not seen all the closes yet): try again
        let Some(Message::Challenge { nonce, .. }) = raw.recv().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        raw.prove(&config.secret, &nonce_c, &nonce).await;
        welcomed = matches!(raw.recv().await, Some(Message::Welcome));
        break;
    }
    assert!(
        welcomed,
        "a peer handshakes once the half-open connections are gone"
    );
}
