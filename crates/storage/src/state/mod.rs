//! A partition's state: one tree (its own redb file, see `tree.rs`) per partition, applied
//! atomically per log batch.
//!
//! The tree holds several tables, each a key namespace with one file here that owns its keys'
//! use, the apply arms of its ops and its queries:
//!
//! | file | table | ops applied | read through |
//! |---|---|---|---|
//! | `entities.rs` | entity states | `SetState`, `DeleteState`, `PatchState` | [`PartitionState::entities`] |
//! | `inbox.rs` | inbox messages, received marks | `Enqueue`, `Dequeue`, `DequeueSeqs`, `Receive` | [`PartitionState::inbox`] |
//! | `outbox.rs` | outbox messages | `Send`, `AckOutbox` | [`PartitionState::outbox`] |
//! | `timers.rs` | scheduled messages | `ScheduleTimer`, `RemoveTimer` | [`PartitionState::timers`] |
//! | `ids.rs` | idempotency ids | `RememberId`, `ExpireIds` | [`PartitionState::ids`] |
//! | `locks.rs` | entity locks (orchestration critical sections) | `LockEntity`, `UnlockEntity` | [`PartitionState::locks`] |
//! | `ingest.rs` | stream ingestion: per-entity marks, checkpoints, dead letters | `SourceMark`, `SourceCheckpoint`, `ForgetSource` | [`PartitionState::ingest`] |
//! | `instances.rs` | orchestration instances: status records, histories, work items, timer references, finished index | `StartInstance`, `CompleteTurn`, `CompleteActivity`, `PurgeInstance`, `PurgeFinished`, `RewindInstance` | [`PartitionState::instances`] |
//!
//! Beside them: `keys.rs` (every key layout, the only code that builds or parses key bytes, pinned
//! by test vectors), `tree.rs` (the store: the only code that talks to redb), `txn.rs` (one apply
//! batch's pending writes) and `export.rs` (the whole tree as pairs, for snapshots). This file
//! holds [`PartitionState`] and the apply loop: fencing by term, the duplicate-id check, the fit
//! pre-checks (state deltas, instance turns), membership and the applied position, and the
//! dispatch of each op to its table.
//!
//! # Adding a table
//! 1. Its key layout in `keys.rs`: a new namespace byte (`'h'` holds orchestration instances,
//!    with a second byte per sub-table), builders and parsers, a row in the layout table and
//!    lines in the test vectors.
//! 2. A file `<table>.rs`: one `pub(super) fn` per op taking a `Txn` (read-your-writes
//!    within the batch), and a small `Copy` view struct, `<Table>Table<'a>`, with its queries.
//! 3. Here: `mod <table>;`, `pub use` of the view, an accessor on [`PartitionState`], and one
//!    arm per new [`Op`] in `apply_op`. An op that decides whether its whole command applies
//!    (a fence on stored state) adds a pre-check to `apply_command`, as `entities::patches_fit`
//!    and `instances::turns_fit` do.
//!
//! Nothing else changes: snapshots copy every pair of the tree, whatever its table.
//!
//! The tree is not a durability barrier (most of its commits are not fsynced): after a crash it may
//! be behind the log. That is safe because the applied position is stored in the same atomic batch as
//! the changes, so the tree is always some exact prefix of the log; the log (and, below it, the
//! durable snapshot file) holds everything after it and is re-applied.

mod entities;
mod export;
mod ids;
mod inbox;
mod ingest;
mod instances;
pub(crate) mod keys;
mod locks;
mod outbox;
#[cfg(test)]
mod testkit;
mod timers;
mod tree;
mod txn;

pub use entities::EntitiesTable;
pub use ids::IdsTable;
pub use inbox::InboxTable;
pub use ingest::IngestTable;
pub use instances::InstancesTable;
pub use locks::LocksTable;
pub use outbox::{OutboxTable, Outgoing};
pub use timers::{Timer, TimersTable};
pub use tree::TreeSnapshot;

use crate::raft_types::{Entry, LogId, StoredMembership};
use crate::{Error, Result};
use openraft::EntryPayload;
use perdure_types::codec;
use perdure_types::command::{Command, Op, OpResult, ProposalResult};
use perdure_types::PartitionId;
use std::path::Path;
use tree::Tree;
use txn::Txn;

/// One partition's tree: the apply logic, and per-table read views.
#[derive(Debug, Clone)]
pub struct PartitionState {
    partition: PartitionId,
    tree: Tree,
    /// Counted by the [`crate::NodeStore`] that made it: the store is closed only once every
    /// handle on its trees is gone (redb releases a file's lock when its last handle drops).
    _open: std::sync::Arc<()>,
}

impl PartitionState {
    /// Opens (or creates) the state of `partition` in the file `path`, with a page cache of
    /// `cache_bytes`; `open` is the owning store's handle counter.
    pub(crate) fn open(
        partition: PartitionId,
        path: &Path,
        cache_bytes: usize,
        open: std::sync::Arc<()>,
    ) -> Result<Self> {
        Ok(Self {
            partition,
            tree: Tree::open(path, cache_bytes)?,
            _open: open,
        })
    }

    /// Makes every applied batch durable in the tree's file (at close: less to re-apply at the
    /// next start; never needed for correctness).
    pub fn sync(&self) -> Result<()> {
        self.tree.sync()
    }

    /// The partition.
    pub fn partition(&self) -> PartitionId {
        self.partition
    }

    /// Entity states: one by id, or listed by entity name.
    pub fn entities(&self) -> EntitiesTable<'_> {
        EntitiesTable { state: self }
    }

    /// Entity inboxes: an entity's messages, the entities with messages, the received marks.
    pub fn inbox(&self) -> InboxTable<'_> {
        InboxTable { state: self }
    }

    /// Messages for other partitions, not yet acknowledged.
    pub fn outbox(&self) -> OutboxTable<'_> {
        OutboxTable { state: self }
    }

    /// Scheduled messages, by due time.
    pub fn timers(&self) -> TimersTable<'_> {
        TimersTable { state: self }
    }

    /// Remembered idempotency ids.
    pub fn ids(&self) -> IdsTable<'_> {
        IdsTable { state: self }
    }

    /// Entity locks: which orchestration critical section holds an entity.
    pub fn locks(&self) -> LocksTable<'_> {
        LocksTable { state: self }
    }

    /// Orchestration instances: status records, histories, work items, the finished index.
    pub fn instances(&self) -> InstancesTable<'_> {
        InstancesTable { state: self }
    }

    /// Stream ingestion: entities' marks, source checkpoints and dead letters.
    pub fn ingest(&self) -> IngestTable<'_> {
        IngestTable { state: self }
    }

    fn decode<T: serde::de::DeserializeOwned>(&self, v: &[u8]) -> Result<T> {
        codec::decode(v).map_err(|source| Error::Codec {
            path: self.tree.path().to_path_buf(),
            source,
        })
    }

    fn encode<T: serde::Serialize>(&self, v: &T) -> Result<Vec<u8>> {
        codec::encode(v).map_err(|source| Error::Codec {
            path: self.tree.path().to_path_buf(),
            source,
        })
    }

    /// The last applied log id and membership recorded in the tree.
    pub fn applied(&self) -> Result<(Option<LogId>, StoredMembership)> {
        let applied = match self.tree.get(keys::APPLIED)? {
            Some(v) => Some(self.decode(&v)?),
            None => None,
        };
        let membership = match self.tree.get(keys::MEMBERSHIP)? {
            Some(v) => self.decode(&v)?,
            None => StoredMembership::default(),
        };
        Ok((applied, membership))
    }

    /// Applies log entries in one atomic batch; returns one result per entry and the new
    /// membership if an entry changed it. Blocking: call it off the async runtime's workers.
    pub fn apply(
        &self,
        entries: &[Entry],
        membership: &mut StoredMembership,
    ) -> Result<Vec<ProposalResult>> {
        self.tree.write(|table| {
            let mut txn = Txn::new(self, table);
            let mut results = Vec::with_capacity(entries.len());
            for entry in entries {
                results.push(self.apply_entry(&mut txn, entry, membership)?);
            }
            if let Some(last) = entries.last() {
                let v = self.encode(&last.log_id)?;
                txn.put(keys::APPLIED.to_vec(), v);
            }
            let pending = txn.into_pending();
            for (k, v) in pending {
                match v {
                    Some(v) => table.insert(&k, &v)?,
                    None => table.remove(&k)?,
                }
            }
            Ok(results)
        })
    }

    /// One entry: its commands (each skipped whole if fenced to another term than the entry's),
    /// or a membership change.
    fn apply_entry(
        &self,
        txn: &mut Txn<'_>,
        entry: &Entry,
        membership: &mut StoredMembership,
    ) -> Result<ProposalResult> {
        let index = entry.log_id.index;
        let results = match &entry.payload {
            EntryPayload::Blank => vec![],
            EntryPayload::Normal(proposal) => proposal
                .commands
                .iter()
                .map(|c| {
                    if c.fence_term
                        .is_some_and(|t| t != entry.log_id.leader_id.term)
                    {
                        Ok(vec![OpResult::Skipped; c.ops.len()])
                    } else {
                        apply_command(txn, c)
                    }
                })
                .collect::<Result<_>>()?,
            EntryPayload::Membership(m) => {
                *membership = StoredMembership::new(Some(entry.log_id), m.clone());
                let v = self.encode(membership)?;
                txn.put(keys::MEMBERSHIP.to_vec(), v);
                vec![]
            }
        };
        Ok(ProposalResult { index, results })
    }
}

/// One command: all of its ops in order, unless it remembers an id seen before, holds a state
/// delta that does not fit the stored state or an instance turn whose fence does not hold.
fn apply_command(txn: &mut Txn<'_>, cmd: &Command) -> Result<Vec<OpResult>> {
    if let Some(results) = duplicate(txn, cmd)? {
        return Ok(results);
    }
    if !entities::patches_fit(txn, &cmd.ops)? {
        // computed on another state than the stored one: deterministic (every replica holds
        // the same state here), and the proposer's actor learns that nothing took effect
        tracing::warn!("a command's state delta does not fit the stored state: skipped whole");
        return Ok(vec![OpResult::Skipped; cmd.ops.len()]);
    }
    if !instances::turns_fit(txn, &cmd.ops)? {
        // a turn computed for another execution or turn count (a stale leader, a repeat): the
        // sends and dequeues computed with it must not apply alone
        tracing::debug!("a command's turn does not hold its fence: skipped whole");
        return Ok(vec![OpResult::Skipped; cmd.ops.len()]);
    }
    let mut out = Vec::with_capacity(cmd.ops.len());
    let mut skip = false;
    for op in &cmd.ops {
        if skip {
            out.push(OpResult::Skipped);
            continue;
        }
        let r = apply_op(txn, op)?;
        // an id this same command remembered already: the rest of the command is skipped
        skip = matches!(op, Op::RememberId { .. }) && r == OpResult::Duplicate;
        out.push(r);
    }
    Ok(out)
}

/// A command that remembers an id seen before (or whose ingestion mark does not rise) was
/// applied before: it applies nothing at all,
/// not even the ids before the duplicate (or those would look applied when their effects were
/// not). Returns its results (`Duplicate` for the seen ids, `Skipped` for the rest), or `None`
/// when it is new.
fn duplicate(txn: &Txn<'_>, cmd: &Command) -> Result<Option<Vec<OpResult>>> {
    let mut seen = false;
    let mut dup = Vec::with_capacity(cmd.ops.len());
    for op in &cmd.ops {
        let d = match op {
            Op::RememberId { target, id, .. } => ids::seen(txn, target, id)?,
            Op::SourceMark {
                entity,
                source,
                position,
            } => ingest::marked(txn, entity, source, *position)?,
            _ => false,
        };
        seen |= d;
        dup.push(d);
    }
    if !seen {
        return Ok(None);
    }
    Ok(Some(
        dup.into_iter()
            .map(|d| {
                if d {
                    OpResult::Duplicate
                } else {
                    OpResult::Skipped
                }
            })
            .collect(),
    ))
}

/// Dispatches one op to its table.
fn apply_op(txn: &mut Txn<'_>, op: &Op) -> Result<OpResult> {
    Ok(match op {
        Op::SetState { entity, state } => entities::set(txn, entity, state),
        Op::DeleteState { entity } => entities::delete(txn, entity),
        Op::PatchState { entity, delta } => entities::patch(txn, entity, delta)?,
        Op::Enqueue { target, message } => inbox::enqueue(txn, target, message)?,
        Op::Dequeue { target, upto } => inbox::dequeue(txn, target, *upto)?,
        Op::Receive {
            source,
            seq,
            target,
            message,
        } => inbox::receive(txn, *source, *seq, target, message)?,
        Op::Send {
            dest,
            target,
            message,
        } => outbox::send(txn, *dest, target, message)?,
        Op::AckOutbox { dest, upto } => outbox::ack(txn, *dest, *upto)?,
        Op::RememberId {
            target,
            id,
            expires_at,
        } => ids::remember(txn, target, id, *expires_at)?,
        Op::ExpireIds { now, limit } => ids::expire(txn, *now, *limit as usize)?,
        Op::ScheduleTimer {
            due,
            target,
            message,
        } => timers::schedule(txn, *due, target, message)?,
        Op::RemoveTimer { due, id } => timers::remove(txn, *due, *id),
        Op::StartInstance {
            record,
            started,
            policy,
        } => instances::start(txn, record, started, policy)?,
        Op::CompleteTurn(turn) => instances::complete_turn(txn, turn)?,
        Op::CompleteActivity {
            instance,
            execution_id,
            task_id,
            event,
        } => instances::complete_activity(txn, instance, execution_id, *task_id, event)?,
        Op::PurgeInstance { instance } => instances::purge(txn, instance)?,
        Op::PurgeFinished { before, limit } => {
            instances::purge_finished(txn, *before, *limit as usize)?
        }
        Op::RewindInstance(r) => instances::rewind(txn, r)?,
        Op::LockEntity { entity, holder } => locks::lock(txn, entity, holder)?,
        Op::UnlockEntity { entity } => locks::unlock(txn, entity),
        Op::DequeueSeqs { target, seqs } => inbox::dequeue_seqs(txn, target, seqs),
        Op::SourceMark {
            entity,
            source,
            position,
        } => ingest::mark(txn, entity, source, *position),
        Op::SourceCheckpoint(c) => ingest::checkpoint(txn, c)?,
        Op::ForgetSource { source } => ingest::forget(txn, source)?,
    })
}

#[cfg(test)]
mod tests {
    use super::testkit::e;
    use super::*;
    use openraft::CommittedLeaderId;

    #[test]
    fn a_command_fenced_to_another_term_applies_nothing() {
        let (st, _d) = testkit::state();
        let entry = |term, index, cmd: Command| Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Normal(cmd.into()),
        };
        let set = |v: &[u8]| {
            Command::single(Op::SetState {
                entity: e("f"),
                state: v.to_vec(),
            })
        };
        let mut m = StoredMembership::default();
        // stamped with term 3, appended in term 3: applies
        let r = st
            .apply(&[entry(3, 1, set(b"a").fenced(3))], &mut m)
            .unwrap();
        assert_eq!(r[0].results[0], vec![OpResult::Done]);
        // stamped with term 3, appended in term 4 (a later leadership): nothing happens
        let r = st
            .apply(&[entry(4, 2, set(b"b").fenced(3))], &mut m)
            .unwrap();
        assert_eq!(r[0].results[0], vec![OpResult::Skipped]);
        assert_eq!(st.entities().get(&e("f")).unwrap(), Some(b"a".to_vec()));
        // not fenced: applies in any term
        st.apply(&[entry(4, 3, set(b"c"))], &mut m).unwrap();
        assert_eq!(st.entities().get(&e("f")).unwrap(), Some(b"c".to_vec()));
    }
}
