//! What a partition's Raft log carries, and what applying it answers.
//!
//! A log entry carries a [`Proposal`]: a list of [`Command`]s. A [`Command`] is a list of [`Op`]s applied atomically, in order, by every replica's state
//! machine: all or nothing, in one storage batch. The entity runtime computes an operation's
//! effects on the leader (new state, messages sent, idempotency ids remembered) and proposes them as
//! one command, so that state change, result and outgoing messages commit together. Ops whose
//! result depends on the state at apply time (sequence numbers, duplicate detection) are decided
//! by the state machine, deterministically, so every replica reaches the same answer.
//!
//! Payloads (`state`, `message`) are opaque bytes here: entity states belong to the entity
//! workload, messages are [`crate::message::Message`]s. Inboxes, outboxes, timers and idempotency
//! ids are addressed by [`Target`] (an entity or an orchestration instance).

use crate::delta::StateDelta;
use crate::ids::{EntityId, PartitionId};
use crate::target::Target;
use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

/// One atomic change to a partition's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Command {
    /// Applied in order, all in one batch.
    pub ops: Vec<Op>,
    /// Fencing by Raft term: when set, the command applies only if the log entry carrying it was
    /// appended in this term; otherwise every op answers [`OpResult::Skipped`]. A leader's
    /// runtime stamps its commands with the term it started in, so a command computed under one
    /// leadership can never take effect under a later one (for example after sitting in a queue
    /// while leadership was lost and won again), whatever state it was computed from.
    pub fence_term: Option<u64>,
}

impl Command {
    /// A command of one op, not fenced.
    pub fn single(op: Op) -> Self {
        Self::new(vec![op])
    }

    /// A command of `ops`, not fenced.
    pub fn new(ops: Vec<Op>) -> Self {
        Self {
            ops,
            fence_term: None,
        }
    }

    /// The same command, fenced to `term`.
    pub fn fenced(mut self, term: u64) -> Self {
        self.fence_term = Some(term);
        self
    }

    /// The bytes of its ops' payloads (states, messages, ids) plus a small fixed cost per op:
    /// what the command weighs in a log entry, within a few percent.
    pub fn payload_bytes(&self) -> usize {
        self.ops.iter().map(Op::payload_bytes).sum()
    }
}

impl Op {
    /// The bytes of this op's payload (state, message, id) plus a small fixed cost.
    pub fn payload_bytes(&self) -> usize {
        const FIXED: usize = 48;
        FIXED
            + match self {
                Op::SetState { state, .. } => state.len(),
                Op::Enqueue { message, .. }
                | Op::Send { message, .. }
                | Op::Receive { message, .. }
                | Op::ScheduleTimer { message, .. } => message.len(),
                Op::RememberId { id, .. } => id.len(),
                Op::PatchState { delta, .. } => delta.middle.len(),
                _ => 0,
            }
    }
}

/// One change inside a [`Command`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Replace an entity's state (creating the entity).
    SetState {
        /// The entity.
        entity: EntityId,
        /// Its new state.
        state: Vec<u8>,
    },
    /// Delete an entity's state.
    DeleteState {
        /// The entity.
        entity: EntityId,
    },
    /// Append a message to a target's durable inbox; answers [`OpResult::Enqueued`] with the
    /// inbox sequence number assigned at apply time (per partition, increasing, never reused).
    Enqueue {
        /// The receiver.
        target: Target,
        /// The message.
        message: Vec<u8>,
    },
    /// Remove inbox messages of a target up to and including `upto`.
    Dequeue {
        /// The receiver.
        target: Target,
        /// Highest inbox sequence number to remove.
        upto: u64,
    },
    /// Put a message in the outbox for another partition; answers [`OpResult::Sent`] with the
    /// outbox sequence number for that destination (gap-free from 1).
    Send {
        /// The destination partition (the target's).
        dest: PartitionId,
        /// The receiver, stored beside the message so delivery need not decode it.
        target: Target,
        /// The message, delivered as a [`Op::Receive`] on the destination.
        message: Vec<u8>,
    },
    /// The destination has durably received outbox messages up to `upto`: drop them.
    AckOutbox {
        /// The destination partition.
        dest: PartitionId,
        /// Highest sequence number received.
        upto: u64,
    },
    /// A message from another partition's outbox, enqueued for `target` (answering
    /// [`OpResult::Enqueued`]) only if `seq` is exactly one above the highest sequence number
    /// received from `source`: a lower one answers [`OpResult::Duplicate`], a higher one
    /// [`OpResult::Gap`]. So every message is received once and in order.
    Receive {
        /// The sending partition.
        source: PartitionId,
        /// Its outbox sequence number.
        seq: u64,
        /// The receiver.
        target: Target,
        /// The message.
        message: Vec<u8>,
    },
    /// Remember a client idempotency id for a target until `expires_at`. Answers
    /// [`OpResult::Duplicate`] if it is already remembered, in which case the command's remaining
    /// ops are skipped: the whole command was applied before.
    RememberId {
        /// The target the id belongs to.
        target: Target,
        /// The id.
        id: String,
        /// When it may be forgotten.
        expires_at: Millis,
    },
    /// Forget idempotency ids that expired before `now` (at most `limit` of them).
    ExpireIds {
        /// The time.
        now: Millis,
        /// Most ids removed by this op.
        limit: u32,
    },
    /// Schedule a message for a target at `due`; answers [`OpResult::Scheduled`] with its id.
    ScheduleTimer {
        /// When it is due.
        due: Millis,
        /// The receiver.
        target: Target,
        /// The message.
        message: Vec<u8>,
    },
    /// Remove a fired or cancelled timer.
    RemoveTimer {
        /// Its due time.
        due: Millis,
        /// Its id.
        id: u64,
    },
    /// Replace an entity's state by a [`StateDelta`] on its stored state (written instead of
    /// [`Op::SetState`] when much smaller: a list appended to). Fenced: if the stored state is
    /// not the one the delta was computed from (length and CRC-32), the whole command applies
    /// nothing and every op answers [`OpResult::Skipped`], on every replica alike.
    PatchState {
        /// The entity.
        entity: EntityId,
        /// The change.
        delta: StateDelta,
    },
}

/// The answer to one [`Op`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpResult {
    /// Applied.
    Done,
    /// Enqueued with this inbox sequence number.
    Enqueued(u64),
    /// Placed in the outbox with this sequence number.
    Sent(u64),
    /// Scheduled with this timer id.
    Scheduled(u64),
    /// Already applied before; nothing changed.
    Duplicate,
    /// A [`Op::Receive`] skipped ahead: the sender must resend from `expected`. Nothing changed.
    Gap {
        /// The next sequence number the receiver accepts.
        expected: u64,
    },
    /// Skipped: an earlier [`Op::RememberId`] of the same command found a duplicate.
    Skipped,
}

/// What one Raft log entry carries: independent commands, each atomic on its own (a
/// duplicate detected by one command's [`Op::RememberId`] skips only that command's ops). The
/// runtime batches the operations of many entities of a partition into one proposal, so one log
/// entry and one fsync cover many operations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Proposal {
    /// The commands, applied in order.
    pub commands: Vec<Command>,
}

impl From<Command> for Proposal {
    fn from(c: Command) -> Self {
        Self { commands: vec![c] }
    }
}

/// What applying one log entry answers to the proposer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ProposalResult {
    /// The log index the proposal was applied at.
    pub index: u64,
    /// Per command, one result per op (empty for blank and membership entries).
    pub results: Vec<Vec<OpResult>>,
}
