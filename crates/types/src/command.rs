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
use crate::orchestration::{HistoryEvent, InstanceRecord, ReusePolicy, RuntimeStatus, TaskId};
use crate::target::{InstanceId, Target};
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
                Op::StartInstance { record, .. } => record_bytes(record) * 2,
                Op::CompleteTurn(turn) => turn.payload_bytes(),
                Op::CompleteActivity { event, .. } => event_bytes(event),
                Op::RewindInstance(r) => {
                    record_bytes(&r.record) + r.history.iter().map(event_bytes).sum::<usize>()
                }
                Op::LockEntity { holder, .. } => {
                    holder.instance.as_str().len()
                        + holder.execution_id.len()
                        + holder.critical_section_id.len()
                }
                Op::DequeueSeqs { seqs, .. } => seqs.len() * 8,
                Op::SourceMark { source, .. } | Op::ForgetSource { source } => source.len(),
                Op::SourceCheckpoint(c) => {
                    c.source.len()
                        + c.dead
                            .iter()
                            .map(|d| 64 + d.reason.len() + d.value.len())
                            .sum::<usize>()
                }
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
    /// Start an orchestration instance: write its `Pending` record and put its `ExecutionStarted`
    /// event in its inbox (or, with a scheduled start, in a timer). An existing instance whose
    /// status the policy does not replace refuses it: [`OpResult::Refused`] with that status,
    /// nothing changed (or [`OpResult::Duplicate`] when the policy ignores running ones). A
    /// replaced instance's history, inbox, work items and timers are dropped first.
    StartInstance {
        /// The new record (`Pending`).
        record: Box<InstanceRecord>,
        /// Its `ExecutionStarted` event.
        started: Box<HistoryEvent>,
        /// What an existing instance of the same id allows.
        policy: ReusePolicy,
    },
    /// One turn of an instance (see [`Turn`]). Fenced: it applies only on the execution and turn
    /// count it was computed for; otherwise its whole command applies nothing (every op answers
    /// [`OpResult::Skipped`], on every replica alike).
    CompleteTurn(Box<Turn>),
    /// An activity finished outside a turn: if its work item is still there, remove it and put
    /// the result event in the instance's inbox ([`OpResult::Enqueued`]); otherwise
    /// [`OpResult::Duplicate`] and nothing changes (a late or repeated completion).
    CompleteActivity {
        /// The instance.
        instance: InstanceId,
        /// Its execution the activity was scheduled in.
        execution_id: String,
        /// The activity's task id.
        task_id: TaskId,
        /// `TaskCompleted` or `TaskFailed`.
        event: Box<HistoryEvent>,
    },
    /// Remove a finished instance whole (record, history, inbox, work items, timers):
    /// [`OpResult::Done`]; [`OpResult::NotFound`] when there is none; [`OpResult::Refused`] with
    /// its status when it is not finished.
    PurgeInstance {
        /// The instance.
        instance: InstanceId,
    },
    /// Remove instances that finished before `before`, oldest first, at most `limit` of them
    /// (retention): answers [`OpResult::Count`] with how many.
    PurgeFinished {
        /// The cut-off time.
        before: Millis,
        /// Most instances removed by this op.
        limit: u32,
    },
    /// Rewind a failed instance (see [`Rewind`]). Fenced like a turn: it applies only on the
    /// failed execution and turn count it was computed from; otherwise its whole command
    /// applies nothing.
    RewindInstance(Box<Rewind>),
    /// Lock an entity for an orchestration's critical section (replacing any lock it had):
    /// from now on only the holder's operations run on it.
    LockEntity {
        /// The entity.
        entity: EntityId,
        /// Who holds it.
        holder: LockHolder,
    },
    /// Free an entity's lock (nothing when it has none).
    UnlockEntity {
        /// The entity.
        entity: EntityId,
    },
    /// Remove the given inbox messages of a target (any order; numbers it does not hold are
    /// ignored): a locked entity runs its holder's messages past the ones that wait for the
    /// unlock, so what it consumed is not always a prefix ([`Op::Dequeue`]).
    DequeueSeqs {
        /// The receiver.
        target: Target,
        /// The inbox sequence numbers to remove.
        seqs: Vec<u64>,
    },
    /// Stream ingestion: the entity has applied source `source`'s records up to `position`.
    /// Applies only if `position` is above the entity's mark for that source; otherwise it
    /// answers [`OpResult::Duplicate`] and the command's remaining ops are skipped (as a
    /// remembered id does): those records were applied before. Placed first in the command.
    SourceMark {
        /// The entity.
        entity: EntityId,
        /// The source partition (`subscription::source_key`).
        source: String,
        /// The highest position applied by this command.
        position: u64,
    },
    /// Stream ingestion, on the home partition of a source partition: every record up to
    /// `checkpoint.position` was applied. Applies only when that position is above the stored
    /// one (else [`OpResult::Duplicate`], nothing changed): a deposed consumer never moves it
    /// back.
    SourceCheckpoint(Box<SourceCheckpoint>),
    /// Forget everything kept for a source (its checkpoint and dead letters): the subscription
    /// was deleted or moved to another source. Answers [`OpResult::Count`] with the keys removed.
    ForgetSource {
        /// The source partition (`subscription::source_key`).
        source: String,
    },
}

/// A checkpoint of one source partition with what was counted and dead-lettered since the last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceCheckpoint {
    /// The source partition (`subscription::source_key`).
    pub source: String,
    /// Every record at or below it was applied.
    pub position: u64,
    /// Records applied since the previous checkpoint (failed ones included).
    pub applied: u64,
    /// Of those, records whose operation failed.
    pub failed: u64,
    /// Records that did not map, since the previous checkpoint (kept, the oldest dropped past
    /// `subscription::MAX_DEAD_LETTERS` per source partition).
    pub dead: Vec<crate::subscription::DeadLetter>,
    /// The source's incarnation.
    pub incarnation: String,
    /// When it was taken.
    pub at_ms: Millis,
}

/// A rewind of a failed execution: its history is replaced by `history` (the same history
/// without the failures: failed tasks' results and the failed end), its record by `record`
/// (running again), and the failed activities become work items again. The sub-orchestrations
/// to run again travel beside it in the same command as start requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rewind {
    /// The instance.
    pub instance: InstanceId,
    /// The failed execution (fence).
    pub execution_id: String,
    /// Its turn count (fence).
    pub turns: u64,
    /// The record after the rewind (its counters are the apply's).
    pub record: InstanceRecord,
    /// The new history, whole.
    pub history: Vec<HistoryEvent>,
    /// Activities to run again.
    pub work_items: Vec<WorkItem>,
}

/// Who holds an entity's lock: one critical section of one execution of an orchestration.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LockHolder {
    /// The orchestration instance.
    pub instance: InstanceId,
    /// Its execution that opened the critical section.
    pub execution_id: String,
    /// The critical section's id.
    pub critical_section_id: String,
}

impl LockHolder {
    /// Its encoded bytes (the codec's value format).
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(self).expect("a lock holder always encodes")
    }

    /// Decodes bytes written by [`LockHolder::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, crate::codec::Error> {
        crate::codec::decode(bytes)
    }
}

/// A work item of an instance: an activity to run (at least once; its result is recorded once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkItem {
    /// The task id.
    pub task_id: TaskId,
    /// The activity's name.
    pub name: String,
    /// Its input (JSON text).
    pub input: Option<String>,
}

/// A continue-as-new: the execution ends and the next begins, with the events it carries over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restart {
    /// The next execution's `ExecutionStarted`.
    pub started: HistoryEvent,
    /// Events that arrived and were not consumed, for the next execution's inbox.
    pub carryover: Vec<HistoryEvent>,
}

/// One turn of an orchestration instance, committed whole: history events appended, inbox
/// events consumed, the status record rewritten, work items added and removed, timers created
/// and cancelled. Messages to other partitions travel beside it in the same command as
/// [`Op::Send`]s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    /// The instance.
    pub instance: InstanceId,
    /// The execution the turn was computed for (fence).
    pub execution_id: String,
    /// Turns committed before this one in that execution (fence: the record's `turns`).
    pub turns: u64,
    /// The record after the turn. Its history counters, `turns` and `execution_id` are kept by
    /// the apply (they are the partition's facts); everything else is taken as written. When the
    /// instance has no record yet (a sub-orchestration arriving through the outbox), this
    /// creates it (`turns` must then be 0).
    pub record: InstanceRecord,
    /// History events appended, in order.
    pub events: Vec<HistoryEvent>,
    /// Inbox messages consumed, up to and including this sequence number.
    pub consumed_upto: Option<u64>,
    /// Activities to run.
    pub work_items: Vec<WorkItem>,
    /// Activities whose results this turn records (their work items are removed; each must
    /// still be there, or the turn applies nothing).
    pub done_items: Vec<TaskId>,
    /// Durable timers: task id, due time, the message the timer delivers to the instance.
    pub timers: Vec<(TaskId, Millis, Vec<u8>)>,
    /// Timers (by task id) no longer awaited: removed.
    pub cancel_timers: Vec<TaskId>,
    /// Continue-as-new: the history, work items and timers of this execution are dropped and
    /// the next execution's events are put in the inbox.
    pub restart: Option<Restart>,
}

impl Turn {
    /// What the turn weighs in a log entry, within a few percent.
    pub fn payload_bytes(&self) -> usize {
        record_bytes(&self.record)
            + self.events.iter().map(event_bytes).sum::<usize>()
            + self
                .work_items
                .iter()
                .map(|w| 32 + w.name.len() + w.input.as_ref().map_or(0, String::len))
                .sum::<usize>()
            + self.timers.iter().map(|t| 24 + t.2.len()).sum::<usize>()
            + self.restart.as_ref().map_or(0, |r| {
                event_bytes(&r.started) + r.carryover.iter().map(event_bytes).sum::<usize>()
            })
    }
}

fn opt_len(s: &Option<String>) -> usize {
    s.as_ref().map_or(0, String::len)
}

/// What a record weighs, about.
fn record_bytes(r: &InstanceRecord) -> usize {
    128 + r.instance_id.as_str().len()
        + r.name.len()
        + opt_len(&r.input)
        + opt_len(&r.output)
        + opt_len(&r.custom_status)
        + r.failure.as_ref().map_or(0, |f| f.message.len() + 64)
}

/// What an event weighs, about (its payloads plus a fixed cost).
pub fn event_bytes(e: &HistoryEvent) -> usize {
    use crate::orchestration::EventKind as K;
    32 + match &e.kind {
        K::ExecutionStarted { name, input, .. } => name.len() + opt_len(input) + 64,
        K::ExecutionCompleted {
            result, failure, ..
        } => opt_len(result) + failure.as_ref().map_or(0, |f| f.message.len() + 64),
        K::TaskScheduled { name, input } => name.len() + opt_len(input),
        K::TaskCompleted { result, .. } | K::SubOrchestrationCompleted { result, .. } => {
            opt_len(result)
        }
        K::TaskFailed { failure, .. } | K::SubOrchestrationFailed { failure, .. } => {
            failure.message.len() + 64
        }
        K::SubOrchestrationCreated { name, input, .. } => name.len() + opt_len(input) + 64,
        K::EventSent { name, input, .. } | K::EventRaised { name, input } => {
            name.len() + opt_len(input)
        }
        K::ContinueAsNew { input } => opt_len(input),
        K::EntityOperationSignaled { input, .. } | K::EntityOperationCalled { input, .. } => {
            opt_len(input) + 96
        }
        K::EntityOperationCompleted { output, .. } => opt_len(output) + 40,
        K::EntityOperationFailed { failure, .. } => failure.message.len() + 104,
        K::EntityLockRequested { lock_set, .. } => {
            lock_set.iter().map(String::len).sum::<usize>() + 40
        }
        _ => 16,
    }
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
    /// Refused by the status of the instance it is about (nothing changed).
    Refused(RuntimeStatus),
    /// The instance it is about does not exist (nothing changed).
    NotFound,
    /// Applied to this many items.
    Count(u64),
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
