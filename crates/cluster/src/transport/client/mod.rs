//! The client side: one connection per peer, many requests in flight on it.

use super::error::TransportError;
use super::stats::ChannelStats;
use super::wire::{self, FrameReader, Message, Rd, ReadError, Wr, FRAME_LIMIT, MAX_PAYLOAD};
use super::TransportConfig;
use perdure_types::{codec, NodeId};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tracing::Instrument;

/// First wait after a failed connection attempt; it doubles with each further failure...
const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// ...up to this.
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Longest one connection attempt (connect + handshake) may take. An attempt is not bounded by
/// the request that started it: a heartbeat's 100 ms budget could otherwise cut every attempt
/// short on a loaded machine and leave a live peer unreachable for good.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The connections of this node to its peers, by node id. Cheap to clone (clones share the
/// connections); the connections close when the last clone is dropped.
///
/// A connection is opened on the first request to a peer and shared by every later one. When it
/// breaks, the requests waiting on it fail with [`TransportError::Unreachable`] and the next
/// request opens a new one. After a failed attempt (unreachable, or refused handshake) requests
/// fail at once, without trying, for a backoff that doubles from 50 ms to 2 s.
#[derive(Clone)]
pub struct Peers {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<TransportConfig>,
    slots: Mutex<HashMap<NodeId, Arc<Slot>>>,
}

impl fmt::Debug for Peers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes: Vec<NodeId> = lock(&self.inner.slots).keys().copied().collect();
        f.debug_struct("Peers")
            .field("node_id", &self.inner.config.node_id)
            .field("peers", &nodes)
            .finish()
    }
}

/// Locks a mutex, ignoring poisoning (every critical section here leaves its data consistent).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Peers {
    /// No peers known yet: add them with [`Peers::set_address`].
    pub fn new(config: Arc<TransportConfig>) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                slots: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// This node's transport settings.
    pub fn config(&self) -> &Arc<TransportConfig> {
        &self.inner.config
    }

    /// Sets where `node` listens (`HOST:PORT`). A changed address closes the connection to the
    /// old one and forgets past failures.
    pub fn set_address(&self, node: NodeId, addr: String) {
        let slot = self.slot(node);
        let mut state = lock(&slot.state);
        if state.addr.as_deref() != Some(addr.as_str()) {
            tracing::debug!(node, %addr, "transport: peer address set");
            *state = SlotState {
                addr: Some(addr),
                ..SlotState::default()
            };
        }
    }

    /// Lets the next request to `node` try to connect at once, even while backing off after
    /// failures (the peer was just seen alive, e.g. it connected to this node).
    pub fn retry_now(&self, node: NodeId) {
        if let Some(slot) = lock(&self.inner.slots).get(&node) {
            let mut state = lock(&slot.state);
            if state.conn.is_none() && state.retry_at.is_some() {
                tracing::debug!(node, "transport: peer seen alive, retrying at once");
                state.retry_at = None;
            }
        }
    }

    /// Forgets `node`: closes its connection; requests to it fail until an address is set again.
    pub fn remove(&self, node: NodeId) {
        lock(&self.inner.slots).remove(&node);
    }

    /// Sends one request and waits for its answer, for at most `timeout` (or the configured
    /// `rpc_timeout`), connecting first if needed (within the same time).
    pub async fn request(
        &self,
        to: NodeId,
        kind: u16,
        body: Vec<u8>,
        timeout: Option<Duration>,
    ) -> Result<Vec<u8>, TransportError> {
        if body.len() > MAX_PAYLOAD {
            return Err(TransportError::TooLarge {
                node: to,
                size: body.len(),
                limit: MAX_PAYLOAD,
            });
        }
        let after = timeout.unwrap_or(self.inner.config.rpc_timeout);
        let deadline = tokio::time::Instant::now() + after;
        let slot = self.slot(to);
        let conn = self.connection(slot, deadline, after).await?;
        conn.call(kind, body, deadline, after).await
    }

    /// [`Peers::request`] with a typed request and answer, encoded with [`codec`].
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        to: NodeId,
        kind: u16,
        req: &Req,
        timeout: Option<Duration>,
    ) -> Result<Resp, TransportError> {
        let body = codec::encode(req).map_err(|error| TransportError::Codec { node: to, error })?;
        let answer = self.request(to, kind, body, timeout).await?;
        codec::decode(&answer).map_err(|error| TransportError::Codec { node: to, error })
    }

    fn slot(&self, node: NodeId) -> Arc<Slot> {
        lock(&self.inner.slots)
            .entry(node)
            .or_insert_with(|| {
                Arc::new(Slot {
                    node,
                    state: Mutex::new(SlotState::default()),
                    connecting: Arc::new(tokio::sync::Mutex::new(())),
                })
            })
            .clone()
    }

    /// The open connection to the slot's peer, opening one if there is none (one attempt at a
    /// time per peer: concurrent requests wait for it). The attempt runs as a task of its own,
    /// bounded by [`CONNECT_TIMEOUT`], not by this request's deadline: a request that gives up
    /// leaves it running, and the next request finds the connection made.
    async fn connection(
        &self,
        slot: Arc<Slot>,
        deadline: tokio::time::Instant,
        after: Duration,
    ) -> Result<Arc<Conn>, TransportError> {
        let node = slot.node;
        if let Some(conn) = slot.ready()? {
            return Ok(conn);
        }
        let attempt_lock = tokio::time::timeout_at(deadline, slot.connecting.clone().lock_owned())
            .await
            .map_err(|_| TransportError::Timeout { node, after })?;
        if let Some(conn) = slot.ready()? {
            return Ok(conn);
        }
        let Some(addr) = lock(&slot.state).addr.clone() else {
            return Err(TransportError::Unreachable {
                node,
                reason: "no address known".into(),
            });
        };
        let span = tracing::debug_span!("transport_peer", peer = node, peer_addr = %addr);
        let attempt = connect(self.inner.config.clone(), node, addr.clone()).instrument(span);
        let (tx, rx) = oneshot::channel();
        let stats = self.inner.config.stats.clone();
        tokio::spawn(async move {
            let _one_at_a_time = attempt_lock;
            let _ = tx.send(Self::attempt(&slot, addr, attempt, &stats).await);
        });
        answer_by(
            rx,
            deadline,
            node,
            after,
            "the connection attempt ended without an answer",
        )
        .await
    }

    /// One connection attempt to `addr`, recorded in the slot.
    async fn attempt(
        slot: &Slot,
        addr: String,
        attempt: impl std::future::Future<Output = Result<Arc<Conn>, Failure>>,
        stats: &ChannelStats,
    ) -> Result<Arc<Conn>, TransportError> {
        let node = slot.node;
        match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(Ok(conn)) => {
                slot.connected(&addr, conn.clone());
                Ok(conn)
            }
            Ok(Err(failure)) => {
                match &failure {
                    Failure::Refused(reason) => {
                        stats.handshake_refused();
                        tracing::warn!(peer = node, peer_addr = %addr, %reason, "transport: peer refused the handshake")
                    }
                    Failure::Unreachable(reason) => {
                        tracing::debug!(peer = node, peer_addr = %addr, %reason, "transport: cannot connect")
                    }
                }
                let error = failure.error(node, None);
                slot.failed(failure);
                Err(error)
            }
            Err(_) => {
                tracing::debug!(peer = node, peer_addr = %addr, after = ?CONNECT_TIMEOUT, "transport: connecting timed out");
                slot.failed(Failure::Unreachable(format!(
                    "connecting to {addr} took longer than {CONNECT_TIMEOUT:?}"
                )));
                Err(TransportError::Timeout {
                    node,
                    after: CONNECT_TIMEOUT,
                })
            }
        }
    }
}

/// Why a connection attempt failed.
#[derive(Debug, Clone)]
enum Failure {
    Unreachable(String),
    Refused(String),
}

impl Failure {
    fn error(&self, node: NodeId, wait: Option<Duration>) -> TransportError {
        let reason = |r: &str| match wait {
            Some(w) => format!("{r} (next attempt in {} ms)", w.as_millis().max(1)),
            None => r.to_string(),
        };
        match self {
            Failure::Unreachable(r) => TransportError::Unreachable {
                node,
                reason: reason(r),
            },
            Failure::Refused(r) => TransportError::Refused {
                node,
                reason: reason(r),
            },
        }
    }
}

/// Everything about one peer.
struct Slot {
    node: NodeId,
    state: Mutex<SlotState>,
    /// Held while connecting (by the attempt's task), so there is one attempt at a time.
    connecting: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Default)]
struct SlotState {
    addr: Option<String>,
    conn: Option<Arc<Conn>>,
    /// Failed attempts in a row.
    failures: u32,
    /// No attempt before this.
    retry_at: Option<Instant>,
    last_failure: Option<Failure>,
}

impl Slot {
    /// The open connection, `None` if an attempt may be made, or the last failure while backing
    /// off.
    fn ready(&self) -> Result<Option<Arc<Conn>>, TransportError> {
        let mut state = lock(&self.state);
        if let Some(conn) = &state.conn {
            if conn.is_open() {
                return Ok(Some(conn.clone()));
            }
            state.conn = None;
        }
        if let (Some(at), Some(failure)) = (state.retry_at, &state.last_failure) {
            let now = Instant::now();
            if now < at {
                return Err(failure.error(self.node, Some(at - now)));
            }
        }
        Ok(None)
    }

    fn connected(&self, addr: &str, conn: Arc<Conn>) {
        let mut state = lock(&self.state);
        if state.addr.as_deref() == Some(addr) {
            if state.failures > 0 {
                tracing::info!(peer = self.node, peer_addr = %addr, after_failures = state.failures, "transport: peer reachable again");
            }
            state.conn = Some(conn);
            state.failures = 0;
            state.retry_at = None;
            state.last_failure = None;
        }
    }

    fn failed(&self, failure: Failure) {
        let mut state = lock(&self.state);
        if state.failures == 0 {
            // once per outage; openraft's own per-RPC errors are off by default (see the CLI)
            let (Failure::Unreachable(reason) | Failure::Refused(reason)) = &failure;
            tracing::warn!(peer = self.node, %reason, "transport: peer unreachable (retrying with backoff)");
        }
        state.failures = state.failures.saturating_add(1);
        let backoff = BACKOFF_MIN
            .saturating_mul(1 << state.failures.min(16).saturating_sub(1))
            .min(BACKOFF_MAX);
        state.retry_at = Some(Instant::now() + backoff);
        state.last_failure = Some(failure);
    }
}

type Answer = Result<Vec<u8>, TransportError>;

/// One open connection.
struct Conn {
    node: NodeId,
    /// To the writer task.
    tx: mpsc::UnboundedSender<Message>,
    shared: Arc<Shared>,
    next_id: AtomicU64,
    reader: AbortHandle,
}

impl Drop for Conn {
    fn drop(&mut self) {
        // The writer ends when `tx` goes, closing the socket's write side; the reader goes now.
        self.reader.abort();
        self.shared.close("closed by this node".into());
    }
}

/// What the requests and the reader task share.
struct Shared {
    node: NodeId,
    pending: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    waiting: HashMap<u64, oneshot::Sender<Answer>>,
    /// Why the connection closed, once it has.
    closed: Option<String>,
}

impl Shared {
    fn is_open(&self) -> bool {
        lock(&self.pending).closed.is_none()
    }

    fn has_pending(&self) -> bool {
        !lock(&self.pending).waiting.is_empty()
    }

    /// Fails every waiting request; later ones are refused.
    fn close(&self, reason: String) {
        let waiting = {
            let mut pending = lock(&self.pending);
            if pending.closed.is_some() {
                return;
            }
            pending.closed = Some(reason.clone());
            std::mem::take(&mut pending.waiting)
        };
        for (_, tx) in waiting {
            let _ = tx.send(Err(TransportError::Unreachable {
                node: self.node,
                reason: format!("connection lost: {reason}"),
            }));
        }
    }

    fn complete(&self, id: u64, answer: Answer) {
        // Absent: the caller timed out or gave up.
        if let Some(tx) = lock(&self.pending).waiting.remove(&id) {
            let _ = tx.send(answer);
        }
    }
}

/// Removes a request's entry when its caller stops waiting (answer, timeout, or dropped).
struct Registered<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        lock(&self.shared.pending).waiting.remove(&self.id);
    }
}

impl Conn {
    fn is_open(&self) -> bool {
        self.shared.is_open() && !self.tx.is_closed()
    }

    async fn call(
        &self,
        kind: u16,
        body: Vec<u8>,
        deadline: tokio::time::Instant,
        after: Duration,
    ) -> Answer {
        let node = self.node;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let _registered = {
            let mut pending = lock(&self.shared.pending);
            if let Some(reason) = &pending.closed {
                return Err(TransportError::Unreachable {
                    node,
                    reason: format!("connection lost: {reason}"),
                });
            }
            pending.waiting.insert(id, tx);
            Registered {
                shared: &self.shared,
                id,
            }
        };
        if self.tx.send(Message::Request { id, kind, body }).is_err() {
            return Err(TransportError::Unreachable {
                node,
                reason: "connection lost: its writer stopped".into(),
            });
        }
        answer_by(rx, deadline, node, after, "connection lost").await
    }
}

/// What `rx` answers by `deadline`: a timeout after `after`, or `lost` if its sender is gone.
async fn answer_by<T>(
    rx: oneshot::Receiver<Result<T, TransportError>>,
    deadline: tokio::time::Instant,
    node: NodeId,
    after: Duration,
    lost: &str,
) -> Result<T, TransportError> {
    match tokio::time::timeout_at(deadline, rx).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(_)) => Err(TransportError::Unreachable {
            node,
            reason: lost.into(),
        }),
        Err(_) => Err(TransportError::Timeout { node, after }),
    }
}

/// Connects to `addr`, runs the client's half of the handshake, and starts the connection's
/// reader and writer tasks.
async fn connect(
    config: Arc<TransportConfig>,
    node: NodeId,
    addr: String,
) -> Result<Arc<Conn>, Failure> {
    let stream = TcpStream::connect(&addr)
        .await
        .map_err(|e| Failure::Unreachable(format!("cannot connect to {addr}: {e}")))?;
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr): (Rd, Wr) = match &config.tls {
        None => {
            let (rd, wr) = stream.into_split();
            (Box::new(rd), Box::new(wr))
        }
        // The server's certificate must be one for node `node`.
        Some(tls) => tls
            .connect(stream, node)
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::InvalidData => Failure::Refused(format!(
                    "TLS with {addr} (node {node}): {e} (a peer without [cluster.tls], or with a \
                     certificate of another CA or for another node?)"
                )),
                _ => Failure::Unreachable(format!("TLS with {addr}: {e}")),
            })?,
    };
    let mut reader = FrameReader::new();
    let seal = handshake::run(&mut reader, &mut rd, &mut wr, &config, node, &addr).await?;
    tracing::debug!("transport: connected");

    let shared = Arc::new(Shared {
        node,
        pending: Mutex::new(Pending::default()),
    });
    let (tx, rx) = mpsc::unbounded_channel();
    let span = tracing::Span::current();
    let writer_shared = shared.clone();
    tokio::spawn(
        async move {
            if let Err(e) = wire::write_loop(rx, wr, seal).await {
                writer_shared.close(format!("write failed: {e}"));
            }
        }
        .instrument(span.clone()),
    );
    let reader = tokio::spawn(
        read_loop(
            reader,
            rd,
            shared.clone(),
            tx.downgrade(),
            config.rpc_timeout,
            config.stats.clone(),
        )
        .instrument(span),
    )
    .abort_handle();
    Ok(Arc::new(Conn {
        node,
        tx,
        shared,
        next_id: AtomicU64::new(1),
        reader,
    }))
}

/// Dispatches answers to their callers until the connection ends, then fails the rest.
///
/// While requests are outstanding and the peer has sent nothing for a period (`rpc_timeout`),
/// it sends a `Ping`; after three silent periods (two with a ping unanswered) the connection is
/// taken as dead (a peer host that vanished without closing its sockets) and closed, so the next
/// request reconnects.
async fn read_loop(
    mut reader: FrameReader,
    mut rd: Rd,
    shared: Arc<Shared>,
    tx: mpsc::WeakUnboundedSender<Message>,
    rpc_timeout: Duration,
    stats: ChannelStats,
) {
    let node = shared.node;
    let period = rpc_timeout.max(Duration::from_millis(50));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut idle_at = Instant::now();
    let reason = loop {
        tokio::select! {
            read = reader.next(&mut rd, FRAME_LIMIT) => match read {
                Ok(Some(Message::Response { id, body })) => shared.complete(id, Ok(body)),
                Ok(Some(Message::Failure { id, error })) => {
                    shared.complete(id, Err(TransportError::Remote { node, error }))
                }
                Ok(Some(Message::Pong)) => {}
                Ok(Some(other)) => break format!("unexpected {} from the peer", other.name()),
                Ok(None) => break "the peer closed the connection".to_string(),
                Err(ReadError::Unauthentic(e)) => {
                    stats.frame_refused();
                    tracing::warn!(peer = node, error = %e, "transport: frame refused, connection closed");
                    break e.to_string();
                }
                Err(e) => break e.to_string(),
            },
            _ = tick.tick() => {
                if !shared.has_pending() {
                    idle_at = Instant::now();
                    continue;
                }
                let silent = reader.last_read().max(idle_at).elapsed();
                if silent >= 3 * period {
                    break format!("no data from the peer for {silent:?} with requests outstanding");
                }
                if silent >= period {
                    if let Some(tx) = tx.upgrade() {
                        let _ = tx.send(Message::Ping);
                    }
                }
            }
        }
    };
    tracing::debug!(%reason, "transport: disconnected");
    shared.close(reason);
}

mod handshake;
#[cfg(test)]
mod tests;
