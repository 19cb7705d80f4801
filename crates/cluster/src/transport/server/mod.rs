//! The server side: accept peers, authenticate them, run the handler for each request. The
//! server's half of the handshake is in `handshake.rs`.

mod handshake;

pub(in crate::transport) use handshake::handshake;

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
mod tests;
