//! Stream records applied to entities (the target side of stream ingestion; the consumers are
//! `perdure-ingest`'s).
//!
//! A consumer sends the records of one source partition bound for one partition, in position
//! order, as one batch. Here each record becomes work for its entity's actor, in order; the actor
//! skips records at or below its mark for that source (answered `Duplicate`), runs the others
//! like signals and commits its new state with the raised mark in ONE command (`Op::SourceMark`,
//! which the state machine refuses when it does not rise). So a record is applied once even
//! when a deposed consumer and its successor send the same records, and records to one entity
//! apply in stream order.

use super::local::Local;
use super::msg::{EntityMsg, Reply, Work, WorkKind};
use crate::Error;
use perdure_types::{EntityId, PartitionId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::oneshot;

/// One stream record as an entity operation.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestRecord {
    /// The entity.
    pub entity: EntityId,
    /// The operation.
    pub operation: String,
    /// Its input.
    pub input: Option<Value>,
    /// The record's position in its source partition.
    pub position: u64,
}

/// What became of one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordOutcome {
    /// Its operation ran and committed.
    Applied,
    /// The entity had applied it before (a replay after a crash or a leader change).
    Duplicate,
    /// Its operation failed (the state is unchanged); the record counts as applied.
    Failed(String),
}

impl Local {
    /// Applies `records` of source `source` (all of partition `p`, which this node leads, in
    /// position order) through their entities' actors; answers one outcome per record, in
    /// order, once every record's batch committed. Any error means some records' outcome is
    /// unknown: send them again (duplicates are recognized).
    pub(crate) async fn ingest(
        &self,
        p: PartitionId,
        source: &str,
        records: Vec<IngestRecord>,
    ) -> Result<Vec<RecordOutcome>, Error> {
        let source: Arc<str> = Arc::from(source);
        // one message per entity, its records in order: the entity's actor takes them all or,
        // if it stops, none runs elsewhere while an earlier one was dropped with it (an actor's
        // mailbox dies with it, and the next message would activate a fresh actor)
        let mut groups: Vec<(EntityId, Vec<Work>)> = Vec::new();
        let mut index: std::collections::HashMap<EntityId, usize> = Default::default();
        let mut waiting = Vec::with_capacity(records.len());
        for r in records {
            let (tx, rx) = oneshot::channel();
            let work = Work {
                kind: WorkKind::Ingest {
                    source: source.clone(),
                    position: r.position,
                },
                operation: r.operation,
                input: r.input,
                reply: Some(tx),
            };
            let i = *index.entry(r.entity.clone()).or_insert_with(|| {
                groups.push((r.entity, Vec::new()));
                groups.len() - 1
            });
            groups[i].1.push(work);
            waiting.push(rx);
        }
        for (entity, works) in groups {
            self.workload.route(p, entity, EntityMsg::Works(works))?;
        }
        let mut out = Vec::with_capacity(waiting.len());
        for rx in waiting {
            let reply = rx.await.map_err(|_| {
                Error::Unavailable("the entity was deactivated before answering; retry".into())
            })??;
            match reply {
                Reply::Ingest(o) => out.push(o),
                other => {
                    return Err(Error::Unavailable(format!(
                        "unexpected answer to a stream record: {other:?}"
                    )))
                }
            }
        }
        Ok(out)
    }
}
