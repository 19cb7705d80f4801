//! Entity requests forwarded to the partition's leader on another node: their wire form and the
//! peer service that runs them here (locally, never forwarding again).

use super::api::SignalOutcome;
use super::local::Local;
use super::msg::{Reply, WorkKind};
use crate::host::within;
use crate::Error;
use perdure_cluster::transport::{Kind, Rpc};
use perdure_types::{EntityId, Failure, PartitionId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

/// A forwarded entity request. JSON values travel as text (not self-describing in bincode).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum EntityRequest {
    Signal {
        entity: EntityId,
        operation: String,
        input: Option<String>,
        key: Option<String>,
    },
    Call {
        entity: EntityId,
        operation: String,
        input: Option<String>,
    },
    Get {
        entity: EntityId,
    },
    Entities {
        partition: PartitionId,
        name: String,
        after: Option<String>,
        limit: u32,
    },
    Locks {
        partition: PartitionId,
        limit: u32,
    },
    /// Stream records for `partition` (entity, operation, input as JSON text, position).
    Ingest {
        partition: PartitionId,
        source: String,
        records: Vec<(EntityId, String, Option<String>, u64)>,
    },
}

impl Rpc for EntityRequest {
    const KIND: Kind = Kind::Forward;
    type Reply = Result<EntityReply, Failure>;
}

/// Its answer (failures travel beside it, as `Err(Failure)`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum EntityReply {
    Signal(SignalOutcome),
    Call(String),
    Get(Option<String>),
    Entities(Vec<(String, String)>),
    Locks(Vec<(String, perdure_types::command::LockHolder)>),
    Ingest(Vec<super::ingest::RecordOutcome>),
}

pub(crate) fn to_json(v: Option<&Value>) -> Option<String> {
    v.map(Value::to_string)
}

pub(crate) fn parse(s: &str) -> Result<Value, Error> {
    serde_json::from_str(s)
        .map_err(|e| Error::Unavailable(format!("undecodable forwarded JSON: {e}")))
}

/// A reply of the wrong kind (a peer running another version, or a bug): never taken as success.
pub(crate) fn unexpected(reply: EntityReply) -> Error {
    Error::Unavailable(format!(
        "unexpected answer to a forwarded request: {reply:?}"
    ))
}

/// Serves forwarded entity requests from peers (added before the node serves its peers).
pub(crate) fn register(local: &Arc<Local>) -> Result<(), Error> {
    let partitions = local.router.partitions().clone();
    crate::host::serve_weak(&partitions, local, |l, req: EntityRequest| async move {
        serve(&l, req).await
    })
}

/// Runs a forwarded operation here, once this node's leadership of its partition runs.
async fn run_here(
    local: &Local,
    entity: EntityId,
    kind: WorkKind,
    operation: &str,
    input: Option<String>,
) -> Result<Reply, Error> {
    let input = input.as_deref().map(parse).transpose()?;
    let p = local.router.partitions().partition_of(&entity);
    // bounded here too: the forwarding node stops waiting at its rpc timeout, and a request
    // served for it must not wait on for ever behind a lost quorum
    within(local.workload.request_timeout(), p, true, async {
        local.router.local_leader(p).await?;
        local.run(p, entity, kind, operation, input).await
    })
    .await
}

async fn serve(local: &Local, req: EntityRequest) -> Result<EntityReply, Error> {
    let partitions = local.router.partitions().clone();
    Ok(match req {
        EntityRequest::Signal {
            entity,
            operation,
            input,
            key,
        } => {
            let kind = WorkKind::Signal {
                idempotency_key: key,
            };
            let reply = run_here(local, entity, kind, &operation, input).await?;
            EntityReply::Signal(reply.signal_outcome())
        }
        EntityRequest::Call {
            entity,
            operation,
            input,
        } => {
            let reply = run_here(local, entity, WorkKind::Call, &operation, input).await?;
            EntityReply::Call(reply.call_value().to_string())
        }
        EntityRequest::Get { entity } => {
            let p = partitions.partition_of(&entity);
            let state = within(
                local.workload.request_timeout(),
                p,
                false,
                local.get(p, &entity),
            );
            EntityReply::Get(state.await?.map(|v| v.to_string()))
        }
        EntityRequest::Entities {
            partition,
            name,
            after,
            limit,
        } => EntityReply::Entities(
            within(
                local.workload.request_timeout(),
                partition,
                false,
                local.entities(partition, &name, after.as_deref(), limit as usize),
            )
            .await?
            .into_iter()
            .map(|(k, v)| (k, v.to_string()))
            .collect(),
        ),
        EntityRequest::Ingest {
            partition,
            source,
            records,
        } => {
            let records = records
                .into_iter()
                .map(|(entity, operation, input, position)| {
                    Ok(super::ingest::IngestRecord {
                        entity,
                        operation,
                        input: input.as_deref().map(parse).transpose()?,
                        position,
                    })
                })
                .collect::<Result<Vec<_>, Error>>()?;
            let run = async {
                local.router.local_leader(partition).await?;
                local.ingest(partition, &source, records).await
            };
            EntityReply::Ingest(
                within(local.workload.request_timeout(), partition, true, run).await?,
            )
        }
        EntityRequest::Locks { partition, limit } => EntityReply::Locks(
            within(
                local.workload.request_timeout(),
                partition,
                false,
                local.locks(partition, limit as usize),
            )
            .await?,
        ),
    })
}
