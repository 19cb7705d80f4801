//! Workers connected to this node: a session per worker stream fetches work from the queue of
//! every node of the cluster (one loop per node), within the concurrency the worker declared,
//! and gives back what it still holds when it ends.

use super::{Dispatched, Outcome, SessionKey, Token, WorkKind, WorkerSpec};
use crate::Error;
use futures::future::BoxFuture;
use perdure_types::NodeId;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

/// How long one fetch waits for work at most (also how often a session with nothing to take
/// tells each node it is alive; under the queue's session TTL).
const FETCH_WAIT: Duration = Duration::from_secs(5);
/// How long a fetch waits while one kind of work is at the worker's limit.
const SATURATED_WAIT: Duration = Duration::from_millis(20);
/// The pause after a node could not be reached.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// How often the loops are matched to the cluster's members.
const MEMBERS_EVERY: Duration = Duration::from_secs(5);

/// How a session reaches the queues of the cluster's nodes (this one directly, the others
/// through requests): implemented over the router by the facade.
pub(crate) trait Queues: Send + Sync + 'static {
    /// The cluster's nodes now.
    fn nodes(&self) -> Vec<NodeId>;
    /// Work from `node`'s queue (see `WorkQueue::fetch`).
    fn fetch(
        &self,
        node: NodeId,
        session: SessionKey,
        max_orchestrators: u32,
        max_activities: u32,
        filter: Option<super::WorkFilter>,
        wait: Duration,
    ) -> BoxFuture<'static, Result<Vec<Dispatched>, Error>>;
    /// Completes `token` on `node`.
    fn complete(
        &self,
        node: NodeId,
        token: String,
        outcome: Outcome,
    ) -> BoxFuture<'static, Result<(), Error>>;
    /// Abandons `token` on `node`.
    fn abandon(&self, node: NodeId, token: String) -> BoxFuture<'static, Result<(), Error>>;
    /// Ends `session` on `node`: its leases there are given back at once.
    fn end_session(
        &self,
        node: NodeId,
        session: SessionKey,
    ) -> BoxFuture<'static, Result<(), Error>>;
}

/// What the dashboard shows of a connected worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerInfo {
    /// The session's number on this node.
    pub session: u64,
    /// Its address.
    pub peer: String,
    /// Milliseconds since the epoch it connected.
    pub connected_at: u64,
    /// Work items it holds now (orchestrator turns, activities).
    pub holding: (u32, u32),
    /// Work items it received since it connected.
    pub received: u64,
    /// Whether it filters the work it takes.
    pub filtered: bool,
}

/// One worker's session state.
struct State {
    key: SessionKey,
    spec: WorkerSpec,
    connected_at: u64,
    /// Tokens it holds, by kind.
    held: Mutex<HashMap<String, WorkKind>>,
    /// Capacity reserved by loops in a fetch, by kind.
    reserved: Mutex<(u32, u32)>,
    /// Capacity was freed.
    freed: Notify,
    received: AtomicU64,
}

impl State {
    fn holding(&self) -> (u32, u32) {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let o = held.values().filter(|k| **k != WorkKind::Activity).count() as u32;
        (o, held.len() as u32 - o)
    }

    /// Reserves room for a fetch from one of `nodes` nodes: at most an equal share of what the
    /// worker allows (at least one item while anything is free).
    fn reserve(&self, nodes: u32) -> (u32, u32) {
        let (ho, ha) = self.holding();
        let mut r = self.reserved.lock().unwrap_or_else(|e| e.into_inner());
        let share = |max: u32, held: u32, reserved: u32| {
            let free = max.saturating_sub(held + reserved);
            free.min((max / nodes.max(1)).max(1))
        };
        let o = share(self.spec.max_orchestrators, ho, r.0);
        let a = share(self.spec.max_activities, ha, r.1);
        r.0 += o;
        r.1 += a;
        (o, a)
    }

    fn unreserve(&self, (o, a): (u32, u32)) {
        let mut r = self.reserved.lock().unwrap_or_else(|e| e.into_inner());
        r.0 -= o;
        r.1 -= a;
        drop(r);
        self.freed.notify_waiters();
    }

    /// Forgets `token` (completed or abandoned): true when this session held it.
    fn release(&self, token: &str) -> bool {
        let had = self
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(token)
            .is_some();
        if had {
            self.freed.notify_waiters();
        }
        had
    }
}

/// The workers connected to this node.
pub(crate) struct Workers {
    me: NodeId,
    queues: Arc<dyn Queues>,
    sessions: Mutex<HashMap<u64, Arc<State>>>,
    next: AtomicU64,
    stats: Arc<super::RemoteStats>,
}

impl Workers {
    pub fn new(me: NodeId, queues: Arc<dyn Queues>, stats: Arc<super::RemoteStats>) -> Self {
        Self {
            me,
            queues,
            sessions: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            stats,
        }
    }

    /// Opens a session for a worker: its work arrives on the session's receiver until the
    /// session is dropped (then whatever it still holds is given back).
    pub fn connect(self: &Arc<Self>, spec: WorkerSpec) -> WorkerSession {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let state = Arc::new(State {
            key: SessionKey { node: self.me, id },
            spec,
            connected_at: crate::host::now_ms(),
            held: Mutex::new(HashMap::new()),
            reserved: Mutex::new((0, 0)),
            freed: Notify::new(),
            received: AtomicU64::new(0),
        });
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, state.clone());
        self.stats.workers.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(64);
        let supervisor = tokio::spawn(supervise(self.clone(), state.clone(), tx));
        tracing::info!(session = id, peer = %state.spec.peer, "a worker connected");
        WorkerSession {
            rx,
            workers: self.clone(),
            state,
            supervisor,
        }
    }

    /// The workers connected now.
    pub fn list(&self) -> Vec<WorkerInfo> {
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<WorkerInfo> = sessions
            .values()
            .map(|s| WorkerInfo {
                session: s.key.id,
                peer: s.spec.peer.clone(),
                connected_at: s.connected_at,
                holding: s.holding(),
                received: s.received.load(Ordering::Relaxed),
                filtered: s.spec.filter.is_some(),
            })
            .collect();
        v.sort_by_key(|w| w.session);
        v
    }

    fn release(&self, token: &str) {
        let sessions: Vec<Arc<State>> = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for s in sessions {
            if s.release(token) {
                return;
            }
        }
    }

    /// Completes the work under `token`, wherever it was issued.
    pub async fn complete(&self, token: &str, outcome: Outcome) -> Result<(), Error> {
        let t = Token::parse(token)
            .ok_or_else(|| Error::BadRequest(format!("malformed completion token {token:?}")))?;
        let r = self
            .queues
            .complete(t.node, token.to_string(), outcome)
            .await;
        if !matches!(&r, Err(e) if e.kind() == perdure_types::ErrorKind::InvalidArgument) {
            self.release(token);
        }
        r
    }

    /// Gives the work under `token` back, wherever it was issued.
    pub async fn abandon(&self, token: &str) -> Result<(), Error> {
        let t = Token::parse(token)
            .ok_or_else(|| Error::BadRequest(format!("malformed completion token {token:?}")))?;
        self.release(token);
        self.queues.abandon(t.node, token.to_string()).await
    }
}

/// A worker's session: its work arrives on [`WorkerSession::next`]. Dropping it gives back
/// every work item it holds and not completed (they are dispatched again at once).
pub struct WorkerSession {
    rx: mpsc::Receiver<Dispatched>,
    workers: Arc<Workers>,
    state: Arc<State>,
    supervisor: JoinHandle<()>,
}

impl std::fmt::Debug for WorkerSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerSession")
            .field("session", &self.state.key)
            .finish_non_exhaustive()
    }
}

impl WorkerSession {
    /// The next work item (`None` once the session ended: the node stops).
    pub async fn next(&mut self) -> Option<Dispatched> {
        self.rx.recv().await
    }

    /// The session's number on this node.
    pub fn id(&self) -> u64 {
        self.state.key.id
    }
}

impl Drop for WorkerSession {
    fn drop(&mut self) {
        self.supervisor.abort();
        self.rx.close();
        let mut held: Vec<String> = self
            .state
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(t, _)| t)
            .collect();
        // items delivered to the channel and never read are held too
        while let Ok(d) = self.rx.try_recv() {
            if !held.contains(&d.token) {
                held.push(d.token);
            }
        }
        self.workers
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.state.key.id);
        self.workers.stats.workers.fetch_sub(1, Ordering::Relaxed);
        tracing::info!(session = self.state.key.id, peer = %self.state.spec.peer, giving_back = held.len(), "a worker disconnected");
        // every node is told the session ended: what it leased to the session (what this side
        // holds, and what a fetch still on its way took) is queued again at once
        let queues = self.workers.queues.clone();
        let key = self.state.key;
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                for node in queues.nodes() {
                    if let Err(e) = queues.end_session(node, key).await {
                        // that node's leases of the session end with its TTL instead
                        tracing::debug!(node, error = %e, "could not tell a node a worker's session ended");
                    }
                }
            });
        }
    }
}

/// Keeps one fetch loop per node of the cluster (the loops live in a `JoinSet`: aborting the
/// supervisor drops it, which aborts them all).
async fn supervise(workers: Arc<Workers>, state: Arc<State>, tx: mpsc::Sender<Dispatched>) {
    let mut set = tokio::task::JoinSet::new();
    let mut loops: HashMap<NodeId, tokio::task::AbortHandle> = HashMap::new();
    loop {
        while set.try_join_next().is_some() {}
        let nodes: HashSet<NodeId> = workers.queues.nodes().into_iter().collect();
        loops.retain(|n, h| {
            let keep = nodes.contains(n) && !h.is_finished();
            if !keep {
                h.abort();
            }
            keep
        });
        for n in &nodes {
            if !loops.contains_key(n) {
                let h = set.spawn(fetch_loop(
                    workers.clone(),
                    state.clone(),
                    *n,
                    nodes.len() as u32,
                    tx.clone(),
                ));
                loops.insert(*n, h);
            }
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(MEMBERS_EVERY).await;
    }
}

/// Fetches work from `node` for the session while it has room, and hands it on.
async fn fetch_loop(
    workers: Arc<Workers>,
    state: Arc<State>,
    node: NodeId,
    nodes: u32,
    tx: mpsc::Sender<Dispatched>,
) {
    let mut last_call = Instant::now() - FETCH_WAIT;
    loop {
        let freed = state.freed.notified();
        tokio::pin!(freed);
        freed.as_mut().enable();
        let room = state.reserve(nodes);
        if room == (0, 0) {
            // full: tell the node the session is alive now and then, else wait for room
            if last_call.elapsed() >= FETCH_WAIT {
                last_call = Instant::now();
                let _ = workers
                    .queues
                    .fetch(node, state.key, 0, 0, None, Duration::ZERO)
                    .await;
            }
            let _ = tokio::time::timeout(FETCH_WAIT, freed).await;
            continue;
        }
        last_call = Instant::now();
        // a kind at its limit: poll briefly, so room freed meanwhile is used at once (a long
        // poll for the other kind alone would hold it back for up to FETCH_WAIT)
        let wait = if room.0 == 0 || room.1 == 0 {
            SATURATED_WAIT
        } else {
            FETCH_WAIT
        };
        let got = workers
            .queues
            .fetch(
                node,
                state.key,
                room.0,
                room.1,
                state.spec.filter.clone(),
                wait,
            )
            .await;
        let items = match got {
            Ok(items) => items,
            Err(e) => {
                state.unreserve(room);
                tracing::debug!(node, error = %e, "a worker's fetch failed; trying again");
                tokio::time::sleep(RETRY_AFTER).await;
                continue;
            }
        };
        {
            let mut held = state.held.lock().unwrap_or_else(|e| e.into_inner());
            for d in &items {
                held.insert(d.token.clone(), d.work.kind());
            }
        }
        state.unreserve(room);
        for d in items {
            state.received.fetch_add(1, Ordering::Relaxed);
            if let Err(mpsc::error::SendError(d)) = tx.send(d).await {
                // the session ended while this was in flight: give it back
                state.release(&d.token);
                let _ = workers.queues.abandon(node, d.token).await;
            }
        }
    }
}
