//! The entity actor: one per active entity id on the partition's leader.
//!
//! It runs the operations waiting for it one at a time, in arrival order, each on the state the
//! previous one left, then proposes their combined effects as ONE command (atomic: state,
//! idempotency keys, outgoing signals, inbox removals) and answers every caller of the batch only
//! after that command commits. While a batch is in flight, new operations wait; the next batch
//! starts from the committed state. So operations never overlap and a crash or lost leadership
//! can only drop a whole uncommitted batch, whose callers were never answered.
//!
//! Critical sections: an orchestration may lock the entity (`Message::EntityLock`, passed from
//! entity to entity in sorted order; the lock is a row of the partition's `locks` table, written
//! in the batch's command and read at activation). While it is locked, only its holder's
//! messages run; the others wait in `held`, in arrival order, and run first once the holder
//! releases it (`Message::EntityUnlock`). Held inbox messages stay in the durable inbox (a batch
//! removes the ones it ran by number, `Op::DequeueSeqs`, when they are not a prefix); a client's
//! signal is made durable in the inbox (`Op::Enqueue`) and acknowledged; a client's call waits
//! in memory, within its request's deadline.

use super::api::SignalOutcome;
use super::entity::{Context, EntityType};
use super::msg::{EntityMsg, LockRequest, ProcessorMsg, Reply, ReplyTx, Work, WorkKind};
use super::shared::Shared;

mod locks;
use locks::admits;
mod ingest;
mod remote;
use crate::Error;
use perdure_types::command::{LockHolder, Op, OpResult};
use perdure_types::delta::StateDelta;
use perdure_types::message::{parse_input, Message};
use perdure_types::orchestration::{EventKind, HistoryEvent};
use perdure_types::{EntityId, InstanceId, Target};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde_json::Value;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

pub(crate) struct EntityActor;

/// Startup arguments.
pub(crate) struct EntityArgs {
    pub entity: EntityId,
    pub etype: Arc<dyn EntityType>,
    /// A remote worker runs its operations (`etype` is a stand-in).
    pub remote: bool,
    pub shared: Arc<Shared>,
    pub processor: ActorRef<ProcessorMsg>,
}

/// What a batch gathers while its operations run.
#[derive(Default)]
struct Batch {
    /// `RememberId` for each new idempotency key.
    keys_ops: Vec<Op>,
    /// Outgoing signals (outbox and timers).
    effect_ops: Vec<Op>,
    /// The keys taken into this batch.
    keys: HashSet<String>,
    /// Idempotency keys the partition remembers (as read before the batch, plus those in other
    /// batches in flight): new keys are refused past `entities.max_idempotency_keys`.
    keys_known: u64,
    /// Who is answered what once the batch commits.
    replies: Vec<(ReplyTx, Result<Reply, Error>)>,
    /// The state after the batch, if an operation changed it.
    new_state: Option<Option<Value>>,
    /// The lock after the batch, if a lock request or release changed it.
    new_lock: Option<Option<LockHolder>>,
    /// The inbox messages run (or dropped), by number.
    run_seqs: Vec<u64>,
    /// Whether signals were put in the outbox / timers scheduled.
    sent: bool,
    scheduled: bool,
    /// Whether client signals were put in the entity's own inbox (to wait for the unlock).
    enqueued: bool,
    /// Operations taken from the queue.
    taken: usize,
    /// The stored size of `new_state` (JSON bytes; 0 when unchanged or deleted).
    state_bytes: usize,
    /// What the outgoing signals and remembered ids weigh in the command.
    other_bytes: usize,
    /// Stream ingestion: the highest position of each source this batch applies (written as
    /// `SourceMark`s first in its command).
    marks: HashMap<Arc<str>, u64>,
}

impl Batch {
    /// What the batch's command weighs so far, within a few percent.
    fn bytes(&self) -> usize {
        self.state_bytes + self.other_bytes
    }
}

/// The length of `v` as JSON, without building the bytes.
fn json_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// The idempotency keys of the next batch that the partition remembers, and how many keys it
/// remembers in all.
#[derive(Default)]
struct Remembered {
    seen: HashSet<String>,
    count: u64,
}

/// What an operation's idempotency key means for it.
enum Key {
    /// No key, or a new one within the bound: it runs (its key remembered with the batch).
    NoneOrNew,
    /// Seen before: nothing of it runs; it is acknowledged as a duplicate.
    Seen,
    /// New, but the partition remembers its maximum of keys: refused.
    OverBound,
}

struct InFlight {
    replies: Vec<(ReplyTx, Result<Reply, Error>)>,
    /// New idempotency keys the batch remembers (counted in `Shared::keys_in_flight`).
    new_keys: u64,
    /// The state after the batch, if the batch changed it.
    new_state: Option<Option<Value>>,
    /// The same as stored.
    new_stored: Option<Option<Vec<u8>>>,
    /// The lock after the batch, if the batch changed it.
    new_lock: Option<Option<LockHolder>>,
    /// Whether the batch put messages in the outbox or timers.
    sent: bool,
    scheduled: bool,
    /// Whether the batch put messages in the entity's own inbox.
    enqueued: bool,
    /// The ingestion marks the batch raises.
    new_marks: HashMap<Arc<str>, u64>,
}

pub(crate) struct EntityState {
    entity: EntityId,
    /// The same entity as the addressee of its inbox and idempotency ids.
    target: Target,
    etype: Arc<dyn EntityType>,
    /// A remote worker runs its operations: client signals are made durable in the inbox and
    /// acknowledged, and the batch's operations go to a worker together.
    remote: bool,
    shared: Arc<Shared>,
    processor: ActorRef<ProcessorMsg>,
    /// The committed state.
    state: Option<Value>,
    /// The committed state as stored (the base of the next batch's state delta).
    stored: Option<Vec<u8>>,
    pending: VecDeque<Work>,
    /// The critical section holding the entity, as committed.
    lock: Option<LockHolder>,
    /// Messages waiting for the lock's release, in arrival order.
    held: VecDeque<Work>,
    /// The inbox has messages this actor put there: read it.
    reread_inbox: bool,
    in_flight: Option<InFlight>,
    /// Highest inbox sequence number taken into a batch.
    inbox_taken: u64,
    /// Messages received from the processor (for the passivation handshake).
    received: u64,
    /// Stream ingestion: per source partition, the highest position this entity applied, as
    /// committed (read on activation with the state).
    marks: HashMap<Arc<str>, u64>,
}

impl Actor for EntityActor {
    type Msg = EntityMsg;
    type State = EntityState;
    type Arguments = EntityArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let entity = args.entity.clone();
        let (stored, lock, marks) = args
            .shared
            .leader
            .read(move |s| {
                Ok((
                    s.entities().get(&entity)?,
                    s.locks().get(&entity)?,
                    s.ingest().marks(&entity)?,
                ))
            })
            .await?;
        let state = match &stored {
            Some(bytes) => Some(serde_json::from_slice(bytes)?),
            None => None,
        };
        tracing::trace!(entity = %args.entity, "activated");
        Ok(EntityState {
            target: Target::Entity(args.entity.clone()),
            entity: args.entity,
            etype: args.etype,
            remote: args.remote,
            shared: args.shared,
            processor: args.processor,
            state,
            stored,
            pending: VecDeque::new(),
            lock,
            held: VecDeque::new(),
            reread_inbox: false,
            in_flight: None,
            inbox_taken: 0,
            received: 0,
            marks: marks.into_iter().map(|(k, v)| (Arc::from(k), v)).collect(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            EntityMsg::Work(w) => {
                st.received += 1;
                st.pending.push_back(w);
            }
            EntityMsg::Works(ws) => {
                st.received += 1;
                st.pending.extend(ws);
            }
            EntityMsg::ProcessInbox => {
                st.received += 1;
                st.take_inbox().await?;
            }
            EntityMsg::Committed(result) => {
                st.committed(result, &myself)?;
                if std::mem::take(&mut st.reread_inbox) {
                    st.take_inbox().await?;
                }
            }
        }
        let remembered = st.remembered_keys().await;
        st.start_batch(&myself, &remembered).await?;
        if st.pending.is_empty() && st.held.is_empty() && st.in_flight.is_none() {
            // the passivation handshake: the processor may stop this actor once it knows
            // that everything it forwarded was handled
            let _ = st.processor.cast(ProcessorMsg::Idle {
                entity: st.entity.clone(),
                actor: myself.get_id(),
                received: st.received,
            });
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Anyone still waiting learns the outcome is unknown: retry (idempotency keys make it safe).
        let gone = || {
            Error::Unavailable(
                "the entity was deactivated (leadership change or shutdown); retry".into(),
            )
        };
        if let Some(f) = st.in_flight.take() {
            st.shared
                .keys_in_flight
                .fetch_sub(f.new_keys, Ordering::Relaxed);
            for (tx, _) in f.replies {
                let _ = tx.send(Err(gone()));
            }
        }
        for w in st.pending.drain(..).chain(st.held.drain(..)) {
            if let Some(tx) = w.reply {
                let _ = tx.send(Err(gone()));
            }
        }
        tracing::trace!(entity = %st.entity, "deactivated");
        Ok(())
    }
}

/// What an inbox message asks of the entity.
fn inbox_work(seq: u64, m: Message) -> Result<Work, String> {
    let work = |kind, operation, input: Option<String>| {
        Ok(Work {
            kind,
            operation,
            input: parse_input(input.as_deref()).map_err(|e| e.to_string())?,
            reply: None,
        })
    };
    match m {
        Message::EntityOperation { operation, input } => work(
            WorkKind::Inbox {
                seq,
                reply_to: None,
                sender: None,
            },
            operation,
            input,
        ),
        Message::EntityRequest {
            operation,
            input,
            request_id,
            reply_to,
            sender,
        } => work(
            WorkKind::Inbox {
                seq,
                reply_to: reply_to.map(|(i, exec)| (i, exec, request_id)),
                sender,
            },
            operation,
            input,
        ),
        Message::EntityLock {
            critical_section_id,
            lock_set,
            position,
            holder,
        } => work(
            WorkKind::Lock {
                seq,
                request: LockRequest {
                    critical_section_id,
                    lock_set,
                    position,
                    holder,
                },
            },
            String::new(),
            None,
        ),
        Message::EntityUnlock {
            critical_section_id,
            holder,
            forward,
        } => work(
            WorkKind::Unlock {
                seq,
                critical_section_id,
                holder,
                forward,
            },
            String::new(),
            None,
        ),
        Message::InstanceEvent { .. } => {
            Err("an orchestration event in an entity's inbox".to_string())
        }
    }
}

impl EntityState {
    /// Queues the inbox messages not yet taken.
    async fn take_inbox(&mut self) -> Result<(), Error> {
        let target = self.target.clone();
        let inbox = self
            .shared
            .leader
            .read(move |s| s.inbox().messages(&target))
            .await?;
        for (seq, bytes) in inbox {
            if seq <= self.inbox_taken {
                continue;
            }
            self.inbox_taken = seq;
            let work = Message::decode(&bytes)
                .map_err(|e| e.to_string())
                .and_then(|m| inbox_work(seq, m))
                .unwrap_or_else(|e| {
                    // Unreadable: drop it with the batch (logged), never block the inbox.
                    tracing::error!(entity = %self.entity, seq, error = %e, "unreadable inbox message dropped");
                    Work {
                        kind: WorkKind::Inbox {
                            seq,
                            reply_to: None,
                            sender: None,
                        },
                        operation: String::new(),
                        input: None,
                        reply: None,
                    }
                });
            self.pending.push_back(work);
        }
        Ok(())
    }

    /// Runs the next batch if none is in flight: its operations one after the other on the
    /// in-memory state, then their combined effects proposed as one command.
    /// The idempotency keys of the next batch's signals that the partition remembers: read in
    /// one go on a blocking thread before the batch is put together. None read when no batch can
    /// start; on a failed read none counts as remembered (the apply's own duplicate check still
    /// applies nothing twice).
    async fn remembered_keys(&self) -> Remembered {
        if self.in_flight.is_some() {
            return Remembered::default();
        }
        let max = self.shared.config.max_batch_ops as usize;
        let keys: Vec<String> = self
            .pending
            .iter()
            .take(max)
            .filter_map(|w| match &w.kind {
                WorkKind::Signal {
                    idempotency_key: Some(k),
                } => Some(k.clone()),
                _ => None,
            })
            .collect();
        if keys.is_empty() {
            return Remembered::default();
        }
        let target = self.target.clone();
        self.shared
            .leader
            .read(move |s| {
                let ids = s.ids();
                let mut seen = HashSet::new();
                for k in keys {
                    if ids.remembers(&target, &k)? {
                        seen.insert(k);
                    }
                }
                Ok(Remembered {
                    seen,
                    count: ids.count()?,
                })
            })
            .await
            .unwrap_or_default()
    }

    async fn start_batch(
        &mut self,
        myself: &ActorRef<EntityMsg>,
        remembered: &Remembered,
    ) -> Result<(), Error> {
        if self.in_flight.is_some() {
            return Ok(());
        }
        // calls waiting for an unlock whose callers gave up (their deadline passed): the
        // outcome they were told is unknown, and nothing of them runs
        self.held
            .retain(|w| w.reply.as_ref().is_none_or(|tx| !tx.is_closed()));
        if self.pending.is_empty() {
            return Ok(());
        }
        // a remote entity's operations taken and not run yet: a worker runs them together
        let mut run: Vec<Work> = Vec::new();
        let max = self.shared.config.max_batch_ops as usize;
        let max_bytes = self.shared.config.max_batch_bytes as usize;
        let now = crate::host::now_ms();
        let expires_at = now + self.shared.config.idempotency_window_ms;
        let mut b = Batch {
            keys_known: remembered.count + self.shared.keys_in_flight.load(Ordering::Relaxed),
            ..Batch::default()
        };
        // bounded by count and by bytes: a batch of big operations commits as several commands;
        // `looked` counts the messages set aside for an unlock too (the idempotency keys were
        // read for the first `max` waiting)
        let mut looked = 0;
        while looked < max && (b.taken == 0 || b.bytes() < max_bytes) {
            let Some(w) = self.pending.pop_front() else {
                break;
            };
            looked += 1;
            let locked_out = self.lock_now(&b).is_some_and(|h| !admits(h, &w.kind));
            if locked_out && !matches!(w.kind, WorkKind::Signal { .. }) {
                // another critical section holds the entity: wait for its release
                self.held.push_back(w);
                continue;
            }
            b.taken += 1;
            match self.check_key(&mut b, &w, &remembered.seen, expires_at) {
                Key::NoneOrNew => {}
                Key::Seen => {
                    if let Some(tx) = w.reply {
                        b.replies
                            .push((tx, Ok(Reply::Signal(SignalOutcome::Duplicate))));
                    }
                    continue;
                }
                Key::OverBound => {
                    if let Some(tx) = w.reply {
                        b.replies.push((
                            tx,
                            Err(Error::TooManyIdempotencyKeys {
                                partition: self.shared.leader.partition(),
                                max: self.shared.config.max_idempotency_keys,
                                window_ms: self.shared.config.idempotency_window_ms,
                            }),
                        ));
                    }
                    continue;
                }
            }
            if locked_out {
                // a client's signal: made durable in the inbox (its key remembered with it) and
                // acknowledged; it runs after the release
                self.enqueue_for_later(&mut b, &w);
                if let Some(tx) = w.reply {
                    b.replies
                        .push((tx, Ok(Reply::Signal(SignalOutcome::Accepted))));
                }
                continue;
            }
            if self.remote {
                match w.kind {
                    WorkKind::Signal { .. } => {
                        // acknowledged once durable in the inbox; a worker runs it from there
                        self.enqueue_for_later(&mut b, &w);
                        if let Some(tx) = w.reply {
                            b.replies
                                .push((tx, Ok(Reply::Signal(SignalOutcome::Accepted))));
                        }
                        continue;
                    }
                    WorkKind::Lock { .. } | WorkKind::Unlock { .. } => {
                        // what ran before the lock changes runs first
                        self.run_remote(&mut b, std::mem::take(&mut run), now)
                            .await?;
                    }
                    WorkKind::Inbox { seq, .. } => {
                        b.run_seqs.push(seq);
                        run.push(w);
                        continue;
                    }
                    WorkKind::Call => {
                        run.push(w);
                        continue;
                    }
                    WorkKind::Ingest { .. } => {
                        // refused when the subscription is made; a type that moved to workers
                        ingest::refuse_remote(&mut b, w);
                        continue;
                    }
                }
            }
            if matches!(w.kind, WorkKind::Ingest { .. }) {
                self.ingest(&mut b, w, now);
                continue;
            }
            match w.kind {
                WorkKind::Lock { seq, request } => {
                    b.run_seqs.push(seq);
                    self.acquire(&mut b, request, now);
                    continue;
                }
                WorkKind::Unlock {
                    seq,
                    critical_section_id,
                    holder,
                    forward,
                } => {
                    b.run_seqs.push(seq);
                    self.release(&mut b, &critical_section_id, &holder, forward);
                    continue;
                }
                WorkKind::Inbox { seq, .. } => b.run_seqs.push(seq),
                WorkKind::Signal { .. } | WorkKind::Call | WorkKind::Ingest { .. } => {}
            }
            let outcome = self.execute(&mut b, &w, now);
            if let WorkKind::Inbox {
                reply_to: Some((instance, execution, request_id)),
                ..
            } = &w.kind
            {
                self.answer_orchestration(&mut b, instance, execution, request_id, &outcome, now);
            }
            if let (Some(reply), Some(tx)) = (self.reply_of(&w, outcome), w.reply) {
                b.replies.push((tx, reply));
            }
        }
        self.run_remote(&mut b, run, now).await?;
        if b.taken == 0 {
            // everything waits for an unlock: nothing to write or answer
            return Ok(());
        }
        let (ops, new_stored) = self.batch_ops(&mut b);
        let taken = b.taken;
        let new_keys = b.keys.len() as u64;
        self.shared
            .keys_in_flight
            .fetch_add(new_keys, Ordering::Relaxed);
        self.in_flight = Some(InFlight {
            new_keys,
            replies: b.replies,
            new_state: b.new_state,
            new_stored,
            new_lock: b.new_lock,
            sent: b.sent,
            scheduled: b.scheduled,
            enqueued: b.enqueued,
            new_marks: b.marks,
        });
        self.commit(myself, ops, taken);
        Ok(())
    }

    /// Puts a message for another target in the outbox, in the batch's command.
    fn send(&self, b: &mut Batch, target: Target, message: Message) {
        let op = Op::Send {
            dest: target.partition(self.shared.leader.partitions().count()),
            target,
            message: message.encode(),
        };
        b.other_bytes += op.payload_bytes();
        b.sent = true;
        b.effect_ops.push(op);
    }

    /// Whether `w` is a signal whose idempotency key was seen (earlier in this batch, or
    /// remembered): then nothing of it runs; or one with a new key over the partition's bound:
    /// then it is refused. Otherwise its key is remembered with the batch.
    fn check_key(
        &self,
        b: &mut Batch,
        w: &Work,
        remembered: &HashSet<String>,
        expires_at: u64,
    ) -> Key {
        let WorkKind::Signal {
            idempotency_key: Some(k),
        } = &w.kind
        else {
            return Key::NoneOrNew;
        };
        if b.keys.contains(k) || remembered.contains(k) {
            return Key::Seen;
        }
        if b.keys_known + b.keys.len() as u64 >= self.shared.config.max_idempotency_keys {
            return Key::OverBound;
        }
        {
            b.keys.insert(k.clone());
            let op = Op::RememberId {
                target: self.target.clone(),
                id: k.clone(),
                expires_at,
            };
            b.other_bytes += op.payload_bytes();
            b.keys_ops.push(op);
        }
        Key::NoneOrNew
    }

    /// Runs one operation on the state the batch has reached so far, keeping its effects in the
    /// batch; an error leaves the batch as it was.
    fn execute(&self, b: &mut Batch, w: &Work, now: u64) -> Result<Option<Value>, String> {
        if w.operation.is_empty() {
            return Err("unreadable message".to_string());
        }
        if !self.etype.operations().contains(&w.operation.as_str()) {
            return Err(format!(
                "entity type {:?} has no operation {:?}",
                self.etype.name(),
                w.operation
            ));
        }
        let current = match &b.new_state {
            Some(s) => s.as_ref(),
            None => self.state.as_ref(),
        };
        let mut ctx = Context::new(&self.entity, &w.operation, w.input.as_ref(), current, now);
        let result = self.etype.execute(&mut ctx).map_err(|e| e.to_string())?;
        let (state, signals) = ctx.into_effects();
        let state_bytes = match &state {
            Some(Some(v)) => {
                let n = json_len(v);
                let cap = self.shared.config.max_state_bytes;
                if n as u64 > cap {
                    return Err(format!(
                        "the entity's state would be {n} bytes, over its limit of {cap} \
                         (entities.max_state_bytes); the operation was not applied"
                    ));
                }
                Some(n)
            }
            Some(None) => Some(0),
            None => None,
        };
        let ops = self.signal_ops(signals)?;
        for op in &ops {
            b.sent |= matches!(op, Op::Send { .. });
            b.scheduled |= matches!(op, Op::ScheduleTimer { .. });
            b.other_bytes += op.payload_bytes();
        }
        b.effect_ops.extend(ops);
        if let Some(s) = state {
            b.new_state = Some(s);
        }
        if let Some(n) = state_bytes {
            b.state_bytes = n;
        }
        Ok(result)
    }

    /// What the caller of `w` is answered once the batch commits (inbox messages have none).
    fn reply_of(
        &self,
        w: &Work,
        outcome: Result<Option<Value>, String>,
    ) -> Option<Result<Reply, Error>> {
        match (&w.kind, outcome) {
            (WorkKind::Signal { .. }, Ok(_)) => Some(Ok(Reply::Signal(SignalOutcome::Accepted))),
            (WorkKind::Signal { .. }, Err(e)) => {
                tracing::debug!(entity = %self.entity, op = %w.operation, error = %e, "signalled operation failed");
                Some(Ok(Reply::Signal(SignalOutcome::Accepted)))
            }
            (WorkKind::Call, Ok(r)) => Some(Ok(Reply::Call(r.unwrap_or(Value::Null)))),
            (WorkKind::Call, Err(e)) => Some(Err(Error::Operation(e))),
            (WorkKind::Inbox { seq, .. }, r) => {
                if let Err(e) = r {
                    tracing::debug!(entity = %self.entity, seq, error = %e, "inbox operation failed");
                }
                None
            }
            (WorkKind::Lock { .. } | WorkKind::Unlock { .. } | WorkKind::Ingest { .. }, _) => None,
        }
    }

    /// The batch's one command: remembered ids, the final state, outgoing signals, inbox
    /// removals; and the new state as stored, if the batch changes it.
    ///
    /// The state is written as a delta on the committed state when that is much smaller (a
    /// list appended to). Safe because the delta's base is what the partition holds when the
    /// command applies: this actor is the entity's only writer on this leader, has one batch in
    /// flight at a time and adopts a batch's state only once it committed; a command of an
    /// earlier actor or leadership that commits after this one read its state makes the delta
    /// not fit, and the command applies nothing (fenced by length and CRC-32, answered
    /// `Skipped`: this actor then stops and the next message reactivates it from committed
    /// state).
    fn batch_ops(&self, b: &mut Batch) -> (Vec<Op>, Option<Option<Vec<u8>>>) {
        // ingestion marks first: one that does not rise makes the whole command a duplicate
        let mut ops = self.mark_ops(b);
        ops.append(&mut b.keys_ops);
        let new_stored = match &b.new_state {
            Some(Some(v)) => {
                let mut new = serde_json::to_vec(v).expect("a JSON value always serializes");
                // the buffer grew by doubling: up to twice the state's size, held by the actor
                // and (as a whole state) by the log entry until it is purged
                new.shrink_to_fit();
                let delta = self
                    .stored
                    .as_deref()
                    .and_then(|old| StateDelta::between(old, &new));
                ops.push(match delta {
                    Some(delta) => Op::PatchState {
                        entity: self.entity.clone(),
                        delta,
                    },
                    None => Op::SetState {
                        entity: self.entity.clone(),
                        state: new.clone(),
                    },
                });
                Some(Some(new))
            }
            Some(None) => {
                ops.push(Op::DeleteState {
                    entity: self.entity.clone(),
                });
                Some(None)
            }
            None => None,
        };
        match &b.new_lock {
            Some(l) if *l != self.lock => ops.push(match l {
                Some(holder) => Op::LockEntity {
                    entity: self.entity.clone(),
                    holder: holder.clone(),
                },
                None => Op::UnlockEntity {
                    entity: self.entity.clone(),
                },
            }),
            _ => {}
        }
        ops.append(&mut b.effect_ops);
        ops.extend(self.dequeue_ops(std::mem::take(&mut b.run_seqs)));
        (ops, new_stored)
    }

    /// Removes the inbox messages `run`: a prefix removal (`Dequeue`) for those below every
    /// inbox message still waiting here (held for an unlock, or not reached by the batch), by
    /// number (`DequeueSeqs`) for the ones that passed a waiting message.
    fn dequeue_ops(&self, run: Vec<u64>) -> Vec<Op> {
        let waiting = self
            .pending
            .iter()
            .chain(self.held.iter())
            .filter_map(|w| w.kind.inbox_seq())
            .min()
            .unwrap_or(u64::MAX);
        let (prefix, passed): (Vec<u64>, Vec<u64>) = run.into_iter().partition(|s| *s < waiting);
        let mut ops = Vec::new();
        if let Some(upto) = prefix.into_iter().max() {
            ops.push(Op::Dequeue {
                target: self.target.clone(),
                upto,
            });
        }
        if !passed.is_empty() {
            ops.push(Op::DequeueSeqs {
                target: self.target.clone(),
                seqs: passed,
            });
        }
        ops
    }

    /// Proposes the batch's command (or, with nothing to write, confirms leadership) and tells
    /// this actor the outcome.
    fn commit(&self, myself: &ActorRef<EntityMsg>, ops: Vec<Op>, taken: usize) {
        let me = myself.clone();
        let shared = self.shared.clone();
        // request -> partition -> commit -> reply: the commit of this batch, with its entity and
        // partition (the HTTP request span carries the same two fields)
        let span = tracing::debug_span!(
            "commit",
            entity = %self.entity,
            partition = self.shared.leader.partition(),
            operations = taken,
            ops = ops.len(),
        );
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                let started = Instant::now();
                let result = if ops.is_empty() {
                    // Nothing to write (reads, duplicates): still answer only as a confirmed leader.
                    shared.leader.confirm().await.map(|_| Vec::new())
                } else {
                    shared.leader.propose(ops).await
                };
                tracing::debug!(
                    ok = result.is_ok(),
                    elapsed_us = started.elapsed().as_micros() as u64,
                    "batch committed; replying"
                );
                let _ = me.cast(EntityMsg::Committed(result));
            },
            span,
        ));
    }

    /// An orchestration's call: its answer goes back to the instance through the outbox, in the
    /// batch's command (so it is sent exactly when the operation's effects commit).
    fn answer_orchestration(
        &self,
        b: &mut Batch,
        instance: &InstanceId,
        execution: &str,
        request_id: &str,
        outcome: &Result<Option<Value>, String>,
        now: u64,
    ) {
        use perdure_types::orchestration::FailureDetails;
        let kind = match outcome {
            Ok(v) => EventKind::EntityOperationCompleted {
                request_id: request_id.to_string(),
                output: v.as_ref().map(Value::to_string),
            },
            Err(e) => EventKind::EntityOperationFailed {
                request_id: request_id.to_string(),
                failure: FailureDetails::new("EntityOperationFailed", e.clone()),
            },
        };
        let message = Message::InstanceEvent {
            execution_id: Some(execution.to_string()),
            event: HistoryEvent::new(now, kind),
        };
        self.send(b, Target::Instance(instance.clone()), message);
    }

    /// Turns an operation's outgoing signals into outbox and timer ops.
    fn signal_ops(&self, signals: Vec<super::entity::OutgoingSignal>) -> Result<Vec<Op>, String> {
        let mut ops = Vec::with_capacity(signals.len());
        for s in signals {
            if !self.shared.remote_type(s.target.name()) {
                self.shared
                    .registry
                    .check(&s.target, &s.operation, s.input.as_ref())
                    .map_err(|e| format!("cannot signal {}: {e}", s.target))?;
            }
            let message = Message::entity_operation(s.operation, s.input.as_ref()).encode();
            let target = Target::Entity(s.target);
            ops.push(match s.at {
                None => Op::Send {
                    dest: target.partition(self.shared.leader.partitions().count()),
                    target,
                    message,
                },
                Some(due) => Op::ScheduleTimer {
                    due,
                    target,
                    message,
                },
            });
        }
        Ok(ops)
    }

    /// The batch in flight committed (or not).
    fn committed(
        &mut self,
        result: Result<Vec<OpResult>, Error>,
        myself: &ActorRef<EntityMsg>,
    ) -> Result<(), Error> {
        let Some(f) = self.in_flight.take() else {
            return Ok(());
        };
        // committed keys are now counted by the partition (or were not written at all)
        self.shared
            .keys_in_flight
            .fetch_sub(f.new_keys, Ordering::Relaxed);
        let result = result.and_then(|ops| {
            if ops
                .iter()
                .any(|r| matches!(r, OpResult::Duplicate | OpResult::Skipped))
            {
                // Nothing of the batch took effect: a command fenced out (proposed under another
                // leadership) answers Skipped, and a duplicate id at apply time means someone
                // else wrote for this entity. Refuse to go on with a possibly stale state.
                Err(Error::Unavailable(format!(
                    "{}: the batch did not take effect (leadership changed or a concurrent writer); retry",
                    self.entity
                )))
            } else {
                Ok(())
            }
        });
        match result {
            Ok(()) => {
                if let Some(s) = f.new_state {
                    self.state = s;
                }
                if let Some(s) = f.new_stored {
                    self.stored = s;
                }
                if let Some(l) = f.new_lock {
                    self.lock = l;
                }
                self.marks.extend(f.new_marks);
                self.reread_inbox |= f.enqueued;
                for (tx, r) in f.replies {
                    let _ = tx.send(r);
                }
                if f.sent {
                    self.shared.leader.outbox_changed();
                }
                if f.scheduled {
                    self.shared.leader.timers_changed();
                }
                Ok(())
            }
            Err(e) => {
                for (tx, _) in f.replies {
                    let _ = tx.send(Err(Error::Unavailable(e.to_string())));
                }
                // The state this actor holds may be wrong: stop; the next message reactivates
                // from committed state.
                myself.stop(Some(e.to_string()));
                Ok(())
            }
        }
    }
}
