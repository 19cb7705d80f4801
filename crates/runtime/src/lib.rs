//! The entity runtime: durable entities on a node's partitions.
//!
//! [`Runtime`] is the facade the HTTP API (and later gRPC) calls: signal, call, read, list.
//! Behind it, on each partition this node leads, a partition processor (a ractor actor) owns that
//! partition's entity actors: one per active entity id, activated on its first message,
//! passivated when idle, running one operation at a time. An entity actor runs the operations
//! waiting for it in order, each on the state the previous one left, then hands their combined
//! effects (state, idempotency keys, signals) to the partition's proposer, which batches commands
//! of many entities into one Raft entry. Callers are answered only after that entry commits.
//!
//! Signals between entities travel through the sender partition's durable outbox and the
//! receiver's inbox (sequence numbers make delivery exactly once and in order); scheduled signals
//! are durable timers that fire into the same path.

mod actor;
pub mod builtin;
mod chaos_bug;
pub mod entity;
mod envelope;
pub mod error;
mod forward;
mod partition;
mod processor;
mod proposer;
pub mod testing;

pub use error::Error;
pub use partition::PartitionMetrics;

use actor::{Reply, WorkKind};
use partition::PartitionHandle;
use tokio::sync::Notify;

use entity::EntityType;
use perdure_cluster::Partitions;
use perdure_types::config::EntitiesConfig;
use perdure_types::EntityId;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The entity types a node runs, by name.
#[derive(Clone, Default)]
pub struct Registry {
    types: BTreeMap<&'static str, Arc<dyn EntityType>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.types.keys()).finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The built-in types: counter, register, list, aggregator.
    pub fn builtin() -> Self {
        Self::new()
            .with(builtin::Counter)
            .with(builtin::Register)
            .with(builtin::List)
            .with(builtin::Aggregator)
    }

    /// The built-in types plus the test types ([`testing`]) when `test_types` is set.
    pub fn for_config(config: &EntitiesConfig) -> Self {
        let r = Self::builtin();
        if config.test_types {
            r.with(testing::Relay).with(testing::Probe)
        } else {
            r
        }
    }

    /// Adds an entity type (replacing one of the same name).
    pub fn with(mut self, t: impl EntityType) -> Self {
        self.types.insert(t.name(), Arc::new(t));
        self
    }

    /// The type named `name` (lower-cased).
    pub fn get(&self, name: &str) -> Result<&Arc<dyn EntityType>, Error> {
        self.types
            .get(name.to_ascii_lowercase().as_str())
            .ok_or_else(|| Error::UnknownEntityType {
                name: name.to_string(),
                known: self.names().join(", "),
            })
    }

    /// The registered names.
    pub fn names(&self) -> Vec<&'static str> {
        self.types.keys().copied().collect()
    }

    /// Checks that `entity`'s type exists, has `operation`, and accepts `input`: the checks done
    /// before anything is written.
    pub fn check(
        &self,
        entity: &EntityId,
        operation: &str,
        input: Option<&Value>,
    ) -> Result<&Arc<dyn EntityType>, Error> {
        let t = self.get(entity.name())?;
        if !t.operations().contains(&operation) {
            return Err(Error::UnknownOperation {
                entity_type: t.name().to_string(),
                operation: operation.to_string(),
                known: t.operations().join(", "),
            });
        }
        t.validate(operation, input).map_err(|e| Error::BadInput {
            entity_type: t.name().to_string(),
            operation: operation.to_string(),
            reason: e.to_string(),
        })?;
        Ok(t)
    }
}

/// One signal: run `operation` on `entity` with `input`, exactly once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignalRequest {
    /// The entity.
    pub entity: EntityId,
    /// The operation.
    pub operation: String,
    /// Its input.
    pub input: Option<Value>,
    /// An idempotency key: a retry with the same key for the same entity is acknowledged again
    /// but applied once (within the configured window).
    pub idempotency_key: Option<String>,
}

/// How a signal was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignalOutcome {
    /// Durably accepted (and, on this path, already applied).
    Accepted,
    /// Its idempotency key was seen before: nothing was applied this time.
    Duplicate,
}

pub use perdure_types::api::{EntityPage, EntitySummary};

/// How long a request waits for its partition to have a leader (known here, or this node's
/// runtime started) before it fails with `Unavailable`.
pub const LEADER_WAIT: std::time::Duration = std::time::Duration::from_millis(1500);

/// The entity runtime of one node.
pub struct Runtime {
    partitions: Arc<Partitions>,
    registry: Registry,
    handles: Arc<Vec<PartitionHandle>>,
    local: Arc<forward::Local>,
    /// Requests this node forwarded to another node's leader.
    forwarded: std::sync::atomic::AtomicU64,
    stop: Vec<Arc<Notify>>,
    loops: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

/// Continuation tokens are `PARTITION:HEX(KEY)`: visible ASCII whatever the key holds.
fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// Most entities one list page holds.
pub const MAX_PAGE: usize = 1000;

impl Runtime {
    /// Starts the runtime over a node's partitions: a proposer per partition and a leader loop
    /// that runs the partition's actors and services whenever this node leads it.
    pub async fn start(
        partitions: Arc<Partitions>,
        registry: Registry,
        config: EntitiesConfig,
    ) -> Result<Self, Error> {
        chaos_bug::stale_reads(); // read the chaos-test switch once, at start-up (logs when on)
        let n = partitions.count();
        let handles: Arc<Vec<PartitionHandle>> = Arc::new(
            (0..n)
                .map(|p| PartitionHandle {
                    proposer: proposer::Proposer::start(partitions.clone(), p),
                    metrics: Default::default(),
                    processor: std::sync::RwLock::new(None),
                })
                .collect(),
        );
        let local = Arc::new(forward::Local {
            partitions: partitions.clone(),
            handles: handles.clone(),
        });
        partitions.add_service(forward::ForwardService(Arc::downgrade(&local)))?;
        let mut stop = Vec::new();
        let mut loops = Vec::new();
        for p in 0..n {
            let s = Arc::new(Notify::new());
            stop.push(s.clone());
            loops.push(tokio::spawn(partition::leader_loop(
                p,
                partitions.clone(),
                registry.clone(),
                config.clone(),
                local.clone(),
                s,
            )));
        }
        Ok(Self {
            partitions,
            registry,
            handles,
            local,
            forwarded: Default::default(),
            stop,
            loops: std::sync::Mutex::new(loops),
        })
    }

    /// The entity types.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The partitions underneath.
    pub fn partitions(&self) -> &Arc<Partitions> {
        &self.partitions
    }

    /// Counters of partition `p`'s runtime.
    pub fn metrics(&self, p: u32) -> Option<&PartitionMetrics> {
        self.handles.get(p as usize).map(|h| h.metrics.as_ref())
    }

    /// Partitions whose leader is this node but whose entity runtime is not running yet (it
    /// starts a moment after leadership is won). Empty when every led partition can serve.
    pub fn starting(&self) -> Vec<u32> {
        (0..self.partitions.count())
            .filter(|&p| {
                self.partitions.is_leader(p) && self.handles[p as usize].processor().is_none()
            })
            .collect()
    }

    /// Entity actors active on this node now.
    pub fn active_actors(&self) -> u64 {
        self.handles.iter().map(|h| h.metrics.active()).sum()
    }

    /// Requests this node has forwarded to other nodes' leaders (a client that routes by itself
    /// keeps this near zero).
    pub fn forwarded(&self) -> u64 {
        self.forwarded.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn forward(
        &self,
        leader: perdure_types::NodeId,
        req: forward::ForwardRequest,
    ) -> Result<forward::ForwardReply, Error> {
        self.forwarded
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        forward::forward(&self.partitions, leader, req).await
    }

    /// The node to forward partition `p`'s requests to, when this node does not serve it.
    /// While the partition has no leader known here, or this node won leadership and its entity
    /// runtime is starting, waits (up to [`LEADER_WAIT`]) instead of failing at once: a leader
    /// change usually completes within that.
    async fn remote_leader(&self, p: u32) -> Result<Option<perdure_types::NodeId>, Error> {
        let since = std::time::Instant::now();
        loop {
            if self.local.serves(p) {
                return Ok(None);
            }
            match self.partitions.leader(p) {
                Some(l) if l != self.partitions.node_id() => return Ok(Some(l)),
                _ if since.elapsed() < LEADER_WAIT => {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await
                }
                _ => {
                    return Err(Error::Unavailable(format!(
                        "partition {p} has no leader reachable from this node; retry"
                    )))
                }
            }
        }
    }

    /// Signals an entity; returns once the signal is durable (and applied).
    pub async fn signal(&self, req: SignalRequest) -> Result<SignalOutcome, Error> {
        self.registry
            .check(&req.entity, &req.operation, req.input.as_ref())?;
        let span = tracing::debug_span!("signal", entity = %req.entity, op = %req.operation);
        tracing::Instrument::instrument(self.signal_checked(req), span).await
    }

    async fn signal_checked(&self, req: SignalRequest) -> Result<SignalOutcome, Error> {
        let p = self.partitions.partition_of(&req.entity);
        if let Some(leader) = self.remote_leader(p).await? {
            let fwd = forward::signal_request(
                req.entity,
                &req.operation,
                req.input.as_ref(),
                req.idempotency_key,
            );
            return match self.forward(leader, fwd).await? {
                forward::ForwardReply::Signal(o) => Ok(o),
                other => Err(forward::unexpected(other)),
            };
        }
        let kind = WorkKind::Signal {
            idempotency_key: req.idempotency_key,
        };
        match self
            .local
            .run(req.entity, kind, &req.operation, req.input)
            .await?
        {
            Reply::Signal(o) => Ok(o),
            Reply::Call(_) => Ok(SignalOutcome::Accepted),
        }
    }

    /// Signals many entities; one result per request, in order.
    pub async fn signal_batch(
        &self,
        reqs: Vec<SignalRequest>,
    ) -> Vec<Result<SignalOutcome, Error>> {
        futures::future::join_all(reqs.into_iter().map(|r| self.signal(r))).await
    }

    /// Runs an operation and returns its result once committed.
    pub async fn call(
        &self,
        entity: EntityId,
        operation: &str,
        input: Option<Value>,
    ) -> Result<Value, Error> {
        self.registry.check(&entity, operation, input.as_ref())?;
        let span = tracing::debug_span!("call", entity = %entity, op = %operation);
        tracing::Instrument::instrument(self.call_checked(entity, operation, input), span).await
    }

    async fn call_checked(
        &self,
        entity: EntityId,
        operation: &str,
        input: Option<Value>,
    ) -> Result<Value, Error> {
        let p = self.partitions.partition_of(&entity);
        if let Some(leader) = self.remote_leader(p).await? {
            let fwd = forward::call_request(entity, operation, input.as_ref());
            return match self.forward(leader, fwd).await? {
                forward::ForwardReply::Call(v) => forward::parse(&v),
                other => Err(forward::unexpected(other)),
            };
        }
        match self
            .local
            .run(entity, WorkKind::Call, operation, input)
            .await?
        {
            Reply::Call(v) => Ok(v),
            Reply::Signal(_) => Ok(Value::Null),
        }
    }

    /// The committed state of an entity (linearizable), `None` if it does not exist.
    pub async fn get(&self, entity: &EntityId) -> Result<Option<Value>, Error> {
        self.registry.get(entity.name())?;
        let p = self.partitions.partition_of(entity);
        if chaos_bug::stale_reads() {
            return self.local.get(entity).await; // the injected bug: no forwarding, no barrier
        }
        match self.partitions.read(p).await {
            Err(perdure_cluster::Error::NotLeader {
                leader: Some(l), ..
            }) if l != self.partitions.node_id() => {
                let fwd = forward::ForwardRequest::Get {
                    entity: entity.clone(),
                };
                match self.forward(l, fwd).await? {
                    forward::ForwardReply::Get(v) => v.as_deref().map(forward::parse).transpose(),
                    other => Err(forward::unexpected(other)),
                }
            }
            Err(e) => Err(e.into()),
            Ok(_) => self.local.get(entity).await,
        }
    }

    /// One partition's entities of type `t`, locally or from the partition's leader.
    async fn partition_entities(
        &self,
        p: u32,
        t: &str,
        after: Option<&str>,
        want: usize,
    ) -> Result<Vec<(String, Value)>, Error> {
        match self.local.entities(p, t, after, want).await {
            Err(Error::Unavailable(_)) => match self.partitions.leader(p) {
                Some(l) if l != self.partitions.node_id() => {
                    let fwd = forward::ForwardRequest::Entities {
                        partition: p,
                        name: t.to_string(),
                        after: after.map(str::to_string),
                        limit: want as u32,
                    };
                    match self.forward(l, fwd).await? {
                        forward::ForwardReply::Entities(v) => v
                            .into_iter()
                            .map(|(k, s)| Ok((k, forward::parse(&s)?)))
                            .collect(),
                        other => Err(forward::unexpected(other)),
                    }
                }
                _ => Err(Error::Unavailable(format!(
                    "partition {p} has no reachable leader"
                ))),
            },
            other => other,
        }
    }

    /// A page of entities of type `name`, at most `limit` (capped at [`MAX_PAGE`]), after
    /// `continuation` (from the previous page).
    pub async fn list(
        &self,
        name: &str,
        continuation: Option<&str>,
        limit: usize,
    ) -> Result<EntityPage, Error> {
        let t = self.registry.get(name)?.name();
        let limit = limit.clamp(1, MAX_PAGE);
        let (mut p, mut after) = match continuation {
            None | Some("") => (0u32, None),
            Some(c) => {
                let bad = || Error::BadInput {
                    entity_type: t.to_string(),
                    operation: "list".into(),
                    reason: format!("invalid continuation token {c:?}"),
                };
                let (p, key) = c.split_once(':').ok_or_else(bad)?;
                (
                    p.parse().map_err(|_| bad())?,
                    Some(unhex(key).ok_or_else(bad)?),
                )
            }
        };
        let mut entities = Vec::new();
        while p < self.partitions.count() {
            let want = limit - entities.len();
            let got = self
                .partition_entities(p, t, after.as_deref(), want)
                .await?;
            let full = got.len() == want;
            for (key, state) in got {
                entities.push(EntitySummary { key, state });
            }
            if full {
                let last = entities.last().map(|e| e.key.clone()).unwrap_or_default();
                return Ok(EntityPage {
                    entities,
                    continuation: Some(format!("{p}:{}", hex(&last))),
                });
            }
            p += 1;
            after = None;
        }
        Ok(EntityPage {
            entities,
            continuation: None,
        })
    }

    /// Stops every partition's actors and services; requests in flight get
    /// [`Error::Unavailable`].
    pub async fn shutdown(&self) {
        for s in &self.stop {
            s.notify_one();
        }
        let loops: Vec<_> =
            std::mem::take(&mut *self.loops.lock().unwrap_or_else(|p| p.into_inner()));
        for l in loops {
            let _ = l.await;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn continuation_keys_are_ascii_and_round_trip() {
        for key in ["a", "é/ü x", "k@1", ""] {
            let h = super::hex(key);
            assert!(h.bytes().all(|b| b.is_ascii_hexdigit()), "{h}");
            assert_eq!(super::unhex(&h).as_deref(), Some(key));
        }
        assert_eq!(super::unhex("zz"), None);
        assert_eq!(super::unhex("abc"), None);
    }
}
