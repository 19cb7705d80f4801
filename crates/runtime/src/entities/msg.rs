//! The messages between the entity workload's parts: work for an entity, what its caller gets
//! back, and what the processor and entity actors tell each other.

use super::api::SignalOutcome;
use crate::Error;
use perdure_types::command::OpResult;
use perdure_types::{EntityId, InstanceId};
use ractor::ActorId;
use serde_json::Value;
use tokio::sync::oneshot;

/// What a caller gets back.
#[derive(Debug)]
pub(crate) enum Reply {
    Signal(SignalOutcome),
    Call(Value),
    /// A stream record's outcome.
    Ingest(super::ingest::RecordOutcome),
}

impl Reply {
    /// What a signal's caller is told (a signal is answered as accepted whatever it returned).
    pub(crate) fn signal_outcome(self) -> SignalOutcome {
        match self {
            Reply::Signal(o) => o,
            Reply::Call(_) | Reply::Ingest(_) => SignalOutcome::Accepted,
        }
    }

    /// What a call's caller gets.
    pub(crate) fn call_value(self) -> Value {
        match self {
            Reply::Call(v) => v,
            Reply::Signal(_) | Reply::Ingest(_) => Value::Null,
        }
    }
}

pub(crate) type ReplyTx = oneshot::Sender<Result<Reply, Error>>;

/// One operation to run.
#[derive(Debug)]
pub(crate) struct Work {
    /// Where it came from, which decides how it is answered and deduplicated.
    pub kind: WorkKind,
    /// The operation's name.
    pub operation: String,
    /// Its input.
    pub input: Option<Value>,
    /// Who waits for the answer (none for inbox messages).
    pub reply: Option<ReplyTx>,
}

#[derive(Debug)]
pub(crate) enum WorkKind {
    /// From a client; applied once per idempotency key.
    Signal { idempotency_key: Option<String> },
    /// From a client; answered with the result.
    Call,
    /// A stream record (ingestion): applied once per source position, in order; answered with
    /// its outcome once committed.
    Ingest {
        /// The source partition (`subscription::source_key`).
        source: std::sync::Arc<str>,
        /// The record's position there.
        position: u64,
    },
    /// From the entity's durable inbox (another entity's signal, a timer, an orchestration's
    /// signal or call).
    Inbox {
        seq: u64,
        /// For an orchestration's call: who is answered (instance, execution, request id),
        /// through the outbox in the batch's command.
        reply_to: Option<(InstanceId, String, String)>,
        /// For an orchestration's signal or call: the execution that sent it (runs on the
        /// entity while that execution holds its lock).
        sender: Option<(InstanceId, String)>,
    },
    /// From the inbox: a critical section asks for the entity's lock.
    Lock { seq: u64, request: LockRequest },
    /// From the inbox: a critical section releases the entity (or, not there yet, its request).
    Unlock {
        seq: u64,
        critical_section_id: String,
        holder: InstanceId,
        /// The entities the release goes on to, in order.
        forward: Vec<String>,
    },
}

impl WorkKind {
    /// Its inbox sequence number, if it came from the inbox.
    pub(crate) fn inbox_seq(&self) -> Option<u64> {
        match self {
            WorkKind::Inbox { seq, .. }
            | WorkKind::Lock { seq, .. }
            | WorkKind::Unlock { seq, .. } => Some(*seq),
            WorkKind::Signal { .. } | WorkKind::Call | WorkKind::Ingest { .. } => None,
        }
    }
}

/// A lock request (`Message::EntityLock`) as the entity actor runs it.
#[derive(Debug)]
pub(crate) struct LockRequest {
    pub critical_section_id: String,
    /// The section's entities (canonical), sorted.
    pub lock_set: Vec<String>,
    /// This entity's place in `lock_set`.
    pub position: u32,
    /// Who asks: instance and execution.
    pub holder: (InstanceId, String),
}

/// Messages of an entity actor.
#[derive(Debug)]
pub(crate) enum EntityMsg {
    /// Run an operation.
    Work(Work),
    /// Run operations in this order, as one unit: one actor takes them all into its queue, so
    /// if it stops, none of them is run by its successor while an earlier one was dropped
    /// (stream records to one entity: never one past an unanswered one).
    Works(Vec<Work>),
    /// The inbox has new messages: run them.
    ProcessInbox,
    /// The batch in flight committed (or failed).
    Committed(Result<Vec<OpResult>, Error>),
}

/// Messages of a partition processor.
#[derive(Debug)]
pub(crate) enum ProcessorMsg {
    /// Route a message to an entity's actor.
    Deliver(EntityId, EntityMsg),
    /// An entity actor went idle: nothing pending, nothing in flight.
    Idle {
        /// The entity.
        entity: EntityId,
        /// Which actor of it (an earlier one may have stopped after a failed batch).
        actor: ActorId,
        /// How many messages it has handled (the passivation handshake compares it with how
        /// many the processor forwarded).
        received: u64,
    },
    /// Time to stop the actors idle longer than `entities.passivate_after_ms`.
    Tick,
}
