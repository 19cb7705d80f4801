//! The entity workload's requests as they run on the node that leads the partition (never
//! forwarded from here).

use super::api::SignalOutcome;
use super::msg::{EntityMsg, Reply, Work, WorkKind};
use super::workload::EntityWorkload;
use crate::host::read_blocking;
use crate::host::Router;
use crate::Error;
use perdure_storage::state::PartitionState;
use perdure_types::command::{Op, OpResult};
use perdure_types::message::Message;
use perdure_types::{EntityId, PartitionId, Target};
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::oneshot;

/// Runs entity requests on this node.
pub(crate) struct Local {
    pub router: Arc<Router>,
    pub workload: Arc<EntityWorkload>,
}

impl Local {
    /// Runs `operation` on `entity` of partition `p`, which this node leads.
    pub async fn run(
        &self,
        p: PartitionId,
        entity: EntityId,
        kind: WorkKind,
        operation: &str,
        input: Option<Value>,
    ) -> Result<Reply, Error> {
        if matches!(kind, WorkKind::Signal { .. }) && self.workload.remote_type(entity.name()) {
            let WorkKind::Signal { idempotency_key } = kind else {
                unreachable!("matched above")
            };
            return self
                .signal_remote(p, entity, idempotency_key, operation, input)
                .await;
        }
        let (tx, rx) = oneshot::channel();
        let work = Work {
            kind,
            operation: operation.to_string(),
            input,
            reply: Some(tx),
        };
        self.workload.route(p, entity, EntityMsg::Work(work))?;
        rx.await.map_err(|_| {
            Error::Unavailable("the entity was deactivated before answering; retry".into())
        })?
    }

    /// A client's signal to an entity a remote worker runs: made durable in the entity's inbox
    /// (with its idempotency key, in one command: a key seen before applies nothing) and
    /// acknowledged then, without waiting for a worker; the entity's actor hands it to one.
    async fn signal_remote(
        &self,
        p: PartitionId,
        entity: EntityId,
        key: Option<String>,
        operation: &str,
        input: Option<Value>,
    ) -> Result<Reply, Error> {
        let leader = self.router.local_leader(p).await?;
        let target = Target::Entity(entity.clone());
        let cfg = self.workload.config();
        let mut ops = Vec::with_capacity(2);
        if let Some(id) = key {
            let remembered = leader.read(|s| s.ids().count()).await?;
            if remembered >= cfg.max_idempotency_keys {
                return Err(Error::TooManyIdempotencyKeys {
                    partition: p,
                    max: cfg.max_idempotency_keys,
                    window_ms: cfg.idempotency_window_ms,
                });
            }
            ops.push(Op::RememberId {
                target: target.clone(),
                id,
                expires_at: crate::host::now_ms() + cfg.idempotency_window_ms,
            });
        }
        ops.push(Op::Enqueue {
            target,
            message: Message::entity_operation(operation.to_string(), input.as_ref()).encode(),
        });
        let results = leader.propose(ops).await?;
        if results.contains(&OpResult::Duplicate) {
            return Ok(Reply::Signal(SignalOutcome::Duplicate));
        }
        self.workload.route(p, entity, EntityMsg::ProcessInbox)?;
        Ok(Reply::Signal(SignalOutcome::Accepted))
    }

    /// The committed state of `entity` of partition `p`, read here after one linearizable read
    /// barrier.
    pub async fn get(&self, p: PartitionId, entity: &EntityId) -> Result<Option<Value>, Error> {
        let state = if crate::chaos_bug::stale_reads() {
            self.router.partitions().local_state(p)? // the injected bug (chaos_bug.rs): no barrier
        } else {
            self.router.partitions().read(p).await?
        };
        read_entity(state, entity).await
    }

    /// Up to `limit` entities of type `name` of partition `p` after `after`, read here after one
    /// linearizable read barrier.
    pub async fn entities(
        &self,
        p: PartitionId,
        name: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Value)>, Error> {
        let state = self.router.partitions().read(p).await?;
        let (name, after) = (name.to_string(), after.map(str::to_string));
        let got = read_blocking(move || {
            state
                .entities()
                .list(&name, after.as_deref(), limit)
                .map_err(|e| Error::Unavailable(e.to_string()))
        })
        .await?;
        Ok(got
            .into_iter()
            .map(|(k, bytes)| (k, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
            .collect())
    }
}

impl Local {
    /// The critical sections holding entities of partition `p` (up to `limit`), read here
    /// after one linearizable read barrier.
    pub async fn locks(
        &self,
        p: PartitionId,
        limit: usize,
    ) -> Result<Vec<(String, perdure_types::command::LockHolder)>, Error> {
        let state = self.router.partitions().read(p).await?;
        read_blocking(move || {
            state
                .locks()
                .list(limit)
                .map_err(|e| Error::Unavailable(e.to_string()))
        })
        .await
    }
}

/// `entity`'s state in `state`, parsed, read on a blocking thread.
pub(crate) async fn read_entity(
    state: PartitionState,
    entity: &EntityId,
) -> Result<Option<Value>, Error> {
    let entity = entity.clone();
    read_blocking(move || state_of(&state, &entity)).await
}

/// `entity`'s state in `state`, parsed.
fn state_of(state: &PartitionState, entity: &EntityId) -> Result<Option<Value>, Error> {
    match state
        .entities()
        .get(entity)
        .map_err(|e| Error::Unavailable(e.to_string()))?
    {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Unavailable(format!("{entity}: stored state is not JSON: {e}"))),
    }
}
