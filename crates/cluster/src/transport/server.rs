//! The server side: accept peers, authenticate them, run the handler for each request.

use super::auth;
use super::error::{RemoteError, RemoteErrorCode};
use super::wire::{
    self, FrameReader, Message, FRAME_LIMIT, HANDSHAKE_FRAME_LIMIT, MAX_PAYLOAD, PROTOCOL_VERSION,
};
use super::{Handler, TransportConfig};
use futures::FutureExt;
use perdure_types::NodeId;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
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
/// Accept errors (such as running out of file descriptors) are logged and retried; this returns
/// an error only if the listener's address cannot be read.
pub async fn serve(
    listener: TcpListener,
    config: Arc<TransportConfig>,
    handler: Arc<dyn Handler>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let local = listener.local_addr()?;
    tracing::debug!(%local, node = config.node_id, "transport: serving peers");
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) => {
                    let span = tracing::debug_span!(
                        "transport_conn",
                        peer_addr = %addr,
                        peer = tracing::field::Empty,
                    );
                    connections.spawn(
                        connection(stream, addr, config.clone(), handler.clone()).instrument(span),
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
enum Handshake {
    /// We refused the peer (and told it why).
    Refused(String),
    /// The peer broke the protocol or went away.
    Broken(String),
}

async fn connection(
    stream: TcpStream,
    addr: SocketAddr,
    config: Arc<TransportConfig>,
    handler: Arc<dyn Handler>,
) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let mut reader = FrameReader::new();
    let handshake = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        handshake(&mut reader, &mut rd, &mut wr, &config),
    )
    .await;
    let from = match handshake {
        Ok(Ok(from)) => from,
        Ok(Err(Handshake::Refused(reason))) => {
            tracing::warn!(%addr, %reason, "transport: refused a peer");
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
    let (tx, rx) = mpsc::unbounded_channel();
    let reason = tokio::select! {
        written = wire::write_loop(rx, wr) => match written {
            Ok(()) => "closed".to_string(),
            Err(e) => format!("write failed: {e}"),
        },
        reason = requests(reader, rd, tx, from, handler) => reason,
    };
    tracing::debug!(%reason, "transport: peer disconnected");
}

/// The server's half of the handshake; returns the peer's node id.
async fn handshake(
    reader: &mut FrameReader,
    rd: &mut OwnedReadHalf,
    wr: &mut OwnedWriteHalf,
    config: &TransportConfig,
) -> Result<NodeId, Handshake> {
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
    let refusal = if version != PROTOCOL_VERSION {
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
    };
    if let Some(reason) = refusal {
        let _ = wire::write_one(
            wr,
            &Message::Refused {
                reason: reason.clone(),
            },
        )
        .await;
        return Err(Handshake::Refused(reason));
    }
    let nonce_s = auth::nonce();
    let challenge = Message::Challenge {
        node_id: me,
        nonce: nonce_s,
        proof: auth::server_proof(&config.secret, &nonce_c, &nonce_s),
    };
    wire::write_one(wr, &challenge)
        .await
        .map_err(|e| broken(&e))?;
    let proof = match reader
        .next(rd, HANDSHAKE_FRAME_LIMIT)
        .await
        .map_err(|e| broken(&e))?
    {
        Some(Message::Proof { proof }) => proof,
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
    if !auth::verify_client_proof(&config.secret, &nonce_s, &nonce_c, &proof) {
        let reason = "wrong cluster secret".to_string();
        let _ = wire::write_one(
            wr,
            &Message::Refused {
                reason: reason.clone(),
            },
        )
        .await;
        return Err(Handshake::Refused(format!("node {peer}: {reason}")));
    }
    wire::write_one(wr, &Message::Welcome)
        .await
        .map_err(|e| broken(&e))?;
    Ok(peer)
}

/// Reads requests and spawns a task for each; returns why the connection ended.
async fn requests(
    mut reader: FrameReader,
    mut rd: OwnedReadHalf,
    tx: mpsc::UnboundedSender<Message>,
    from: NodeId,
    handler: Arc<dyn Handler>,
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
