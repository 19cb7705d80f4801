//! The entity workload's requests as they run on the node that leads the partition (never
//! forwarded from here).

use super::msg::{EntityMsg, Reply, Work, WorkKind};
use super::workload::EntityWorkload;
use crate::host::read_blocking;
use crate::host::Router;
use crate::Error;
use perdure_storage::state::PartitionState;
use perdure_types::{EntityId, PartitionId};
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
