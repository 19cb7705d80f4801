//! The server side: accept peers, authenticate them, run the handler for each request.

use super::auth::{self, Role, Transcript};
use super::error::{RemoteError, RemoteErrorCode};
use super::pending::{PendingHandshakes, Slot, MAX_PENDING_HANDSHAKES};
use super::session::FrameMac;
use super::stats::ChannelStats;
use super::tls;
use super::wire::{
    self, FrameReader, Message, Rd, ReadError, Wr, FRAME_LIMIT, HANDSHAKE_FRAME_LIMIT, MAX_PAYLOAD,
    NONCE_LEN, PROTOCOL_VERSION,
};
use super::{Handler, TransportConfig};
use futures::FutureExt;
use perdure_types::NodeId;
use rustls::pki_types::CertificateDer;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;

/// A peer must complete the handshake within this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most requests of one connection running at once; past it the connection is not read until
/// one finishes (the peer's writes then wait in TCP).
const MAX_IN_FLIGHT: usize = 4096;

/// Accepts peers on `listener` and serves their requests with `handler` until `shutdown`
/// completes; then stops accepting and closes every connection (handlers already running finish
/// on their own, their answers are dropped).
///
/// At most [`MAX_PENDING_HANDSHAKES`] connections are in their handshake at once; one accepted
/// over that is closed at once (see `pending.rs`). Accept errors (such as running out of file
/// descriptors) are logged and retried; this returns an error only if the listener's address
/// cannot be read.
pub async fn serve(
    listener: TcpListener,
    config: Arc<TransportConfig>,
    handler: Arc<dyn Handler>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let local = listener.local_addr()?;
    tracing::debug!(%local, node = config.node_id, "transport: serving peers");
    let mut connections = JoinSet::new();
    let pending = PendingHandshakes::new(MAX_PENDING_HANDSHAKES);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) => {
                    let Some(slot) = pending.admit() else {
                        config.stats.handshake_shed();
                        tracing::debug!(%addr, "transport: too many connections in their handshake; closed");
                        drop(stream);
                        continue;
                    };
                    let span = tracing::debug_span!(
                        "transport_conn",
                        peer_addr = %addr,
                        peer = tracing::field::Empty,
                    );
                    connections.spawn(
                        connection(stream, addr, slot, config.clone(), handler.clone())
                            .instrument(span),
                    );
                }
                Err(e) => {
                    tracing::warn!(%local, error = %e, "transport: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let open = connections.len();
    connections.shutdown().await;
    tracing::debug!(%local, closed = open, "transport: stopped serving peers");
    Ok(())
}

/// Why a handshake did not complete.
pub(super) enum Handshake {
    /// We refused the peer (and told it why).
    Refused(String),
    /// The peer broke the protocol or went away.
    Broken(String),
}

/// One accepted connection: its handshake (holding `slot` until it ends), then its requests.
async fn connection(
    stream: TcpStream,
    addr: SocketAddr,
    slot: Slot,
    config: Arc<TransportConfig>,
    handler: Arc<dyn Handler>,
) {
    let _ = stream.set_nodelay(true);
    let mut reader = FrameReader::new();
    let handshake =
        tokio::time::timeout(HANDSHAKE_TIMEOUT, open(stream, &mut reader, &config)).await;
    drop(slot);
    let (rd, wr, from, seal) = match handshake {
        Ok(Ok(accepted)) => accepted,
        Ok(Err(Handshake::Refused(reason))) => {
            config.stats.handshake_refused();
            tracing::warn!(%addr, %reason, "transport: handshake refused");
            return;
        }
        Ok(Err(Handshake::Broken(reason))) => {
            tracing::debug!(%addr, %reason, "transport: handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%addr, "transport: handshake timed out");
            return;
        }
    };
    tracing::debug!("transport: peer connected");
    handler.peer_connected(from);
    let (tx, rx) = mpsc::unbounded_channel();
    let reason = tokio::select! {
        written = wire::write_loop(rx, wr, seal) => match written {
            Ok(()) => "closed".to_string(),
            Err(e) => format!("write failed: {e}"),
        },
        reason = requests(reader, rd, tx, from, handler, &config.stats) => reason,
    };
    tracing::debug!(%reason, "transport: peer disconnected");
}

/// TLS (if configured), then the handshake, on an accepted connection: its halves, the peer's
/// node id and the MAC of the frames to send it.
async fn open(
    stream: TcpStream,
    reader: &mut FrameReader,
    config: &TransportConfig,
) -> Result<(Rd, Wr, NodeId, Option<FrameMac>), Handshake> {
    let (mut rd, mut wr, cert): (Rd, Wr, _) = match &config.tls {
        None => {
            let (rd, wr) = stream.into_split();
            (Box::new(rd), Box::new(wr), None)
        }
        Some(tls) => {
            let (rd, wr, cert) = tls.accept(stream).await.map_err(|e| match e.kind() {
                io::ErrorKind::InvalidData => Handshake::Refused(format!(
                    "TLS: {e} (a peer without [cluster.tls], or with a certificate of another CA?)"
                )),
                _ => Handshake::Broken(format!("TLS: {e}")),
            })?;
            (rd, wr, Some(cert))
        }
    };
    let (from, seal) = handshake(reader, &mut rd, &mut wr, config, cert.as_ref()).await?;
    Ok((rd, wr, from, seal))
}

/// The server's half of the handshake; returns the peer's node id (proven: it is part of what
/// the peer's proof covers, or, under TLS, the name its certificate `cert` is valid for) and
/// the MAC of the frames to send it (none under TLS). From here `reader` accepts only frames
/// of the session (the `Welcome` sent here is the first frame sealed with it).
pub(super) async fn handshake<R, W>(
    reader: &mut FrameReader,
    rd: &mut R,
    wr: &mut W,
    config: &TransportConfig,
    cert: Option<&CertificateDer<'_>>,
) -> Result<(NodeId, Option<FrameMac>), Handshake>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let broken = |e: &dyn std::fmt::Display| Handshake::Broken(e.to_string());
    let me = config.node_id;
    let hello = reader
        .next(rd, HANDSHAKE_FRAME_LIMIT)
        .await
        .map_err(|e| broken(&e))?;
    let (version, cluster_id, peer, partitions, nonce_c) = match hello {
        Some(Message::Hello {
            version,
            cluster_id,
            node_id,
            partitions,
            nonce,
        }) => (version, cluster_id, node_id, partitions, nonce),
        Some(other) => {
            return Err(Handshake::Broken(format!(
                "expected Hello, got {}",
                other.name()
            )))
        }
        None => return Err(Handshake::Broken("closed before Hello".into())),
    };
    tracing::Span::current().record("peer", peer);
    let refused = refusal(config, version, &cluster_id, peer, partitions).or_else(|| {
        let cert = cert?;
        tls::check_names(cert, peer)
            .err()
            .map(|e| format!("a peer claiming node {peer}: {e}"))
    });
    if let Some(reason) = refused {
        refuse(wr, &reason).await;
        return Err(Handshake::Refused(reason));
    }
    let nonce_s = auth::nonce();
    let transcript = Transcript {
        version,
        cluster_id: &config.cluster_id,
        partitions,
        client: peer,
        server: me,
        nonce_c: &nonce_c,
        nonce_s: &nonce_s,
    };
    // Under TLS, TLS proved who the peer is (and the proofs would need a secret): none.
    let tls = config.tls.is_some();
    let challenge = Message::Challenge {
        node_id: me,
        nonce: nonce_s,
        proof: match tls {
            false => transcript.server_proof(&config.secret),
            true => [0; NONCE_LEN],
        },
    };
    wire::write_one(wr, &challenge, None)
        .await
        .map_err(|e| broken(&e))?;
    let proof = match reader
        .next(rd, HANDSHAKE_FRAME_LIMIT)
        .await
        .map_err(|e| broken(&e))?
    {
        Some(Message::Proof { proof }) => proof,
        Some(Message::Refused { reason }) => {
            return Err(Handshake::Refused(format!(
                "node {peer} refused this node: {reason}"
            )))
        }
        Some(other) => {
            return Err(Handshake::Broken(format!(
                "expected Proof, got {}",
                other.name()
            )))
        }
        None => {
            return Err(Handshake::Broken(
                "closed before Proof (the peer may have refused this node's proof)".into(),
            ))
        }
    };
    if tls {
        wire::write_one(wr, &Message::Welcome, None)
            .await
            .map_err(|e| broken(&e))?;
        return Ok((peer, None));
    }
    if !transcript.verify_client_proof(&config.secret, &proof) {
        let reason = "wrong cluster secret (or a relay changed the handshake)";
        refuse(wr, reason).await;
        return Err(Handshake::Refused(format!("node {peer}: {reason}")));
    }
    let mut session = transcript.session(&config.secret, Role::Server);
    wire::write_one(wr, &Message::Welcome, Some(&mut session.send))
        .await
        .map_err(|e| broken(&e))?;
    reader.authenticate(session.recv);
    Ok((peer, Some(session.send)))
}

/// Why a peer's Hello is refused, if it is: it claims this node's own id, or another protocol
/// version, cluster or partition count.
fn refusal(
    config: &TransportConfig,
    version: u32,
    cluster_id: &str,
    peer: NodeId,
    partitions: u32,
) -> Option<String> {
    let me = config.node_id;
    if peer == me {
        Some(format!("a peer claims to be this node ({me})"))
    } else if version != PROTOCOL_VERSION {
        Some(format!(
            "protocol version {version} (node {peer}) != {PROTOCOL_VERSION} (node {me})"
        ))
    } else if cluster_id != config.cluster_id {
        Some(format!(
            "cluster id {cluster_id:?} (node {peer}) != {:?} (node {me})",
            config.cluster_id
        ))
    } else if partitions != config.partitions {
        Some(format!(
            "partition count {partitions} (node {peer}) != {} (node {me})",
            config.partitions
        ))
    } else {
        None
    }
}

/// Tells the peer why it is refused (best effort: it may be gone already).
async fn refuse<W: AsyncWrite + Unpin>(wr: &mut W, reason: &str) {
    let _ = wire::write_one(
        wr,
        &Message::Refused {
            reason: reason.to_string(),
        },
        None,
    )
    .await;
}

/// Reads requests and spawns a task for each; returns why the connection ended.
async fn requests(
    mut reader: FrameReader,
    mut rd: Rd,
    tx: mpsc::UnboundedSender<Message>,
    from: NodeId,
    handler: Arc<dyn Handler>,
    stats: &ChannelStats,
) -> String {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    loop {
        match reader.next(&mut rd, FRAME_LIMIT).await {
            Ok(Some(Message::Request { id, kind, body })) => {
                let permit = in_flight
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed");
                let tx = tx.clone();
                let handler = handler.clone();
                tokio::spawn(
                    async move {
                        let answer = match run(&*handler, from, kind, body).await {
                            Ok(body) if body.len() > MAX_PAYLOAD => Message::Failure {
                                id,
                                error: RemoteError::new(
                                    RemoteErrorCode::TooLarge,
                                    format!(
                                        "answer to request kind {kind} of {} bytes exceeds the limit of {MAX_PAYLOAD}",
                                        body.len()
                                    ),
                                ),
                            },
                            Ok(body) => Message::Response { id, body },
                            Err(error) => Message::Failure { id, error },
                        };
                        // The connection may be gone: the answer is then dropped.
                        let _ = tx.send(answer);
                        drop(permit);
                    }
                    .in_current_span(),
                );
            }
            Ok(Some(Message::Ping)) => {
                let _ = tx.send(Message::Pong);
            }
            Ok(Some(other)) => return format!("unexpected {} from the peer", other.name()),
            Ok(None) => return "closed by the peer".into(),
            Err(ReadError::Unauthentic(e)) => {
                stats.frame_refused();
                tracing::warn!(peer = from, error = %e, "transport: frame refused, connection closed");
                return e.to_string();
            }
            Err(e) => return e.to_string(),
        }
    }
}

/// Runs the handler, turning a panic into an error answer.
async fn run(
    handler: &dyn Handler,
    from: NodeId,
    kind: u16,
    body: Vec<u8>,
) -> Result<Vec<u8>, RemoteError> {
    let panicked = |payload: Box<dyn std::any::Any + Send>| {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        tracing::error!(kind, panic = %what, "transport: handler panicked");
        RemoteError::new(
            RemoteErrorCode::Panicked,
            format!("the handler of request kind {kind} panicked: {what}"),
        )
    };
    let future = std::panic::catch_unwind(AssertUnwindSafe(|| handler.handle(from, kind, body)))
        .map_err(panicked)?;
    AssertUnwindSafe(future)
        .catch_unwind()
        .await
        .unwrap_or_else(|p| Err(panicked(p)))
}

#[cfg(test)]
mod tests {
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
                    assert!(
                        transcript(&nonce_c, &nonce).verify_server_proof(&config().secret, &proof)
                    );
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
}
