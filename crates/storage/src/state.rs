//! A partition's state in sled: one tree per partition, applied atomically per log batch.
//!
//! Key layout (first byte is the namespace; integers are big-endian so keys sort numerically;
//! `E` is an entity's canonical id `@name@key`, which never holds a NUL byte):
//!
//! | key | value | what |
//! |---|---|---|
//! | `0x00 "applied"` | codec(LogId) | last applied log id |
//! | `0x00 "membership"` | codec(StoredMembership) | last applied membership |
//! | `0x00 "inbox_seq"`, `0x00 "timer_seq"` | u64 | last assigned inbox / timer number |
//! | `'e' E` | bytes | entity state |
//! | `'i' E 0x00 seq` | bytes | inbox message of an entity |
//! | `'o' dest seq` | bytes | outbox message for partition `dest` |
//! | `'O' dest` | u64 | last outbox sequence number for `dest` |
//! | `'r' source` | u64 | highest sequence number received from partition `source` |
//! | `'k' E 0x00 id` | u64 expiry | remembered idempotency id |
//! | `'K' expiry E 0x00 id` | empty | the same, ordered by expiry |
//! | `'t' due id` | codec((EntityId, bytes)) | scheduled message |
//! | `'h' ...` | | reserved: orchestration histories |
//!
//! sled is not a durability barrier (its flush is not an fsync): after a crash this tree may be
//! behind the log. That is safe because the applied position is stored in the same atomic batch as
//! the changes, so the tree is always some exact prefix of the log; the log (and, below it, the
//! durable snapshot file) holds everything after it and is re-applied.

use crate::raft_types::{Entry, LogId, StoredMembership};
use crate::{Error, Result};
use openraft::EntryPayload;
use perdure_types::codec;
use perdure_types::command::{Command, Millis, Op, OpResult, ProposalResult};
use perdure_types::{EntityId, PartitionId};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};

pub(crate) mod keys {
    use perdure_types::EntityId;

    pub const APPLIED: &[u8] = b"\x00applied";
    pub const MEMBERSHIP: &[u8] = b"\x00membership";
    pub const INBOX_SEQ: &[u8] = b"\x00inbox_seq";
    pub const TIMER_SEQ: &[u8] = b"\x00timer_seq";

    fn with(ns: u8, parts: &[&[u8]]) -> Vec<u8> {
        let mut k = Vec::with_capacity(1 + parts.iter().map(|p| p.len()).sum::<usize>());
        k.push(ns);
        for p in parts {
            k.extend_from_slice(p);
        }
        k
    }
    pub fn entity_prefix(name: &str) -> Vec<u8> {
        with(b'e', &[b"@", name.as_bytes(), b"@"])
    }
    pub fn entity(e: &EntityId) -> Vec<u8> {
        with(b'e', &[e.canonical().as_bytes()])
    }
    pub fn inbox_prefix(e: &EntityId) -> Vec<u8> {
        with(b'i', &[e.canonical().as_bytes(), &[0]])
    }
    pub fn inbox(e: &EntityId, seq: u64) -> Vec<u8> {
        let mut k = inbox_prefix(e);
        k.extend_from_slice(&seq.to_be_bytes());
        k
    }
    pub fn outbox(dest: u32, seq: u64) -> Vec<u8> {
        with(b'o', &[&dest.to_be_bytes(), &seq.to_be_bytes()])
    }
    pub fn outbox_prefix(dest: u32) -> Vec<u8> {
        with(b'o', &[&dest.to_be_bytes()])
    }
    pub fn outbox_last(dest: u32) -> Vec<u8> {
        with(b'O', &[&dest.to_be_bytes()])
    }
    pub fn received(source: u32) -> Vec<u8> {
        with(b'r', &[&source.to_be_bytes()])
    }
    pub fn id(e: &EntityId, id: &str) -> Vec<u8> {
        with(b'k', &[e.canonical().as_bytes(), &[0], id.as_bytes()])
    }
    pub fn id_by_expiry(expiry: u64, e: &EntityId, id: &str) -> Vec<u8> {
        with(
            b'K',
            &[
                &expiry.to_be_bytes(),
                e.canonical().as_bytes(),
                &[0],
                id.as_bytes(),
            ],
        )
    }
    pub fn timer(due: u64, id: u64) -> Vec<u8> {
        with(b't', &[&due.to_be_bytes(), &id.to_be_bytes()])
    }
}

fn u64_of(v: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = v.len().min(8);
    b[8 - n..].copy_from_slice(&v[v.len() - n..]);
    u64::from_be_bytes(b)
}

/// A scheduled message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    /// When it is due.
    pub due: Millis,
    /// Its id.
    pub id: u64,
    /// The entity it is for.
    pub entity: EntityId,
    /// The message.
    pub message: Vec<u8>,
}

/// One partition's tree, with the apply logic and read accessors.
#[derive(Debug, Clone)]
pub struct PartitionState {
    partition: PartitionId,
    tree: sled::Tree,
    path: PathBuf,
    /// Counted by the [`crate::NodeStore`] that made it: the store is closed only once every
    /// handle on its trees is gone (sled releases its file lock when the last one drops).
    _open: std::sync::Arc<()>,
}

/// Pending writes of one apply batch, read back by later ops of the same batch.
struct Txn<'a> {
    tree: &'a sled::Tree,
    path: &'a Path,
    pending: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl<'a> Txn<'a> {
    fn sled_err(&self, source: sled::Error) -> Error {
        Error::Sled {
            path: self.path.to_path_buf(),
            source,
        }
    }
    fn get(&self, k: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(v) = self.pending.get(k) {
            return Ok(v.clone());
        }
        Ok(self
            .tree
            .get(k)
            .map_err(|e| self.sled_err(e))?
            .map(|v| v.to_vec()))
    }
    fn put(&mut self, k: Vec<u8>, v: Vec<u8>) {
        self.pending.insert(k, Some(v));
    }
    fn del(&mut self, k: Vec<u8>) {
        self.pending.insert(k, None);
    }
    fn get_u64(&self, k: &[u8]) -> Result<u64> {
        Ok(self.get(k)?.map(|v| u64_of(&v)).unwrap_or(0))
    }
    fn put_u64(&mut self, k: &[u8], v: u64) {
        self.put(k.to_vec(), v.to_be_bytes().to_vec());
    }
    /// Live keys in `[start, end)`, at most `limit`, merging the tree with pending writes.
    fn keys(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Vec<u8>>> {
        let mut out: BTreeMap<Vec<u8>, ()> = BTreeMap::new();
        for kv in self.tree.range(start..end) {
            let (k, _) = kv.map_err(|e| self.sled_err(e))?;
            if !matches!(self.pending.get(k.as_ref()), Some(None)) {
                out.insert(k.to_vec(), ());
            }
            if out.len() >= limit {
                break;
            }
        }
        let range = (
            Bound::Included(start.to_vec()),
            Bound::Excluded(end.to_vec()),
        );
        for (k, v) in self.pending.range(range) {
            if v.is_some() {
                out.insert(k.clone(), ());
            }
        }
        Ok(out.into_keys().take(limit).collect())
    }
    fn into_batch(self) -> sled::Batch {
        let mut b = sled::Batch::default();
        for (k, v) in self.pending {
            match v {
                Some(v) => b.insert(k, v),
                None => b.remove(k),
            }
        }
        b
    }
}

/// The key just past every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0xff; prefix.len() + 1]
}

impl PartitionState {
    /// Wraps `tree`, the state of `partition`; `path` names the store in errors; `open` is the
    /// owning store's handle counter.
    pub fn new(
        partition: PartitionId,
        tree: sled::Tree,
        path: PathBuf,
        open: std::sync::Arc<()>,
    ) -> Self {
        Self {
            partition,
            tree,
            path,
            _open: open,
        }
    }

    /// The partition.
    pub fn partition(&self) -> PartitionId {
        self.partition
    }

    fn sled_err(&self, source: sled::Error) -> Error {
        Error::Sled {
            path: self.path.clone(),
            source,
        }
    }

    fn decode<T: serde::de::DeserializeOwned>(&self, v: &[u8]) -> Result<T> {
        codec::decode(v).map_err(|source| Error::Codec {
            path: self.path.join(format!("p{:05}", self.partition)),
            source,
        })
    }

    fn encode<T: serde::Serialize>(&self, v: &T) -> Result<Vec<u8>> {
        codec::encode(v).map_err(|source| Error::Codec {
            path: self.path.join(format!("p{:05}", self.partition)),
            source,
        })
    }

    /// The last applied log id and membership recorded in the tree.
    pub fn applied(&self) -> Result<(Option<LogId>, StoredMembership)> {
        let applied = match self.tree.get(keys::APPLIED).map_err(|e| self.sled_err(e))? {
            Some(v) => Some(self.decode(&v)?),
            None => None,
        };
        let membership = match self
            .tree
            .get(keys::MEMBERSHIP)
            .map_err(|e| self.sled_err(e))?
        {
            Some(v) => self.decode(&v)?,
            None => StoredMembership::default(),
        };
        Ok((applied, membership))
    }

    /// Applies log entries in one atomic batch; returns one result per entry and the new
    /// membership if an entry changed it.
    pub fn apply(
        &self,
        entries: &[Entry],
        membership: &mut StoredMembership,
    ) -> Result<Vec<ProposalResult>> {
        let mut txn = Txn {
            tree: &self.tree,
            path: &self.path,
            pending: BTreeMap::new(),
        };
        let mut results = Vec::with_capacity(entries.len());
        let mut last = None;
        for entry in entries {
            let index = entry.log_id.index;
            let r = match &entry.payload {
                EntryPayload::Blank => ProposalResult {
                    index,
                    results: vec![],
                },
                EntryPayload::Normal(proposal) => ProposalResult {
                    index,
                    results: proposal
                        .commands
                        .iter()
                        .map(|c| {
                            if c.fence_term
                                .is_some_and(|t| t != entry.log_id.leader_id.term)
                            {
                                Ok(vec![OpResult::Skipped; c.ops.len()])
                            } else {
                                self.apply_command(&mut txn, c)
                            }
                        })
                        .collect::<Result<_>>()?,
                },
                EntryPayload::Membership(m) => {
                    *membership = StoredMembership::new(Some(entry.log_id), m.clone());
                    let v = self.encode(membership)?;
                    txn.put(keys::MEMBERSHIP.to_vec(), v);
                    ProposalResult {
                        index,
                        results: vec![],
                    }
                }
            };
            results.push(r);
            last = Some(entry.log_id);
        }
        if let Some(last) = last {
            let v = self.encode(&last)?;
            txn.put(keys::APPLIED.to_vec(), v);
        }
        let batch = txn.into_batch();
        self.tree.apply_batch(batch).map_err(|e| self.sled_err(e))?;
        Ok(results)
    }

    fn apply_command(&self, txn: &mut Txn<'_>, cmd: &Command) -> Result<Vec<OpResult>> {
        // A command that remembers an id seen before was applied before: it applies nothing at
        // all, not even the ids before the duplicate (or those would look applied when their
        // effects were not).
        let mut seen = false;
        let mut dup = Vec::with_capacity(cmd.ops.len());
        for op in &cmd.ops {
            let d = match op {
                Op::RememberId { entity, id, .. } => txn.get(&keys::id(entity, id))?.is_some(),
                _ => false,
            };
            seen |= d;
            dup.push(d);
        }
        if seen {
            return Ok(dup
                .into_iter()
                .map(|d| {
                    if d {
                        OpResult::Duplicate
                    } else {
                        OpResult::Skipped
                    }
                })
                .collect());
        }
        let mut out = Vec::with_capacity(cmd.ops.len());
        let mut skip = false;
        for op in &cmd.ops {
            if skip {
                out.push(OpResult::Skipped);
                continue;
            }
            let r = match op {
                Op::SetState { entity, state } => {
                    txn.put(keys::entity(entity), state.clone());
                    OpResult::Done
                }
                Op::DeleteState { entity } => {
                    txn.del(keys::entity(entity));
                    OpResult::Done
                }
                Op::Enqueue { entity, message } => {
                    let seq = txn.get_u64(keys::INBOX_SEQ)? + 1;
                    txn.put_u64(keys::INBOX_SEQ, seq);
                    txn.put(keys::inbox(entity, seq), message.clone());
                    OpResult::Enqueued(seq)
                }
                Op::Dequeue { entity, upto } => {
                    let start = keys::inbox_prefix(entity);
                    let end = keys::inbox(entity, upto.saturating_add(1));
                    let end = if *upto == u64::MAX {
                        prefix_end(&start)
                    } else {
                        end
                    };
                    for k in txn.keys(&start, &end, usize::MAX)? {
                        txn.del(k);
                    }
                    OpResult::Done
                }
                Op::Send { dest, message } => {
                    let k = keys::outbox_last(*dest);
                    let seq = txn.get_u64(&k)? + 1;
                    txn.put_u64(&k, seq);
                    txn.put(keys::outbox(*dest, seq), message.clone());
                    OpResult::Sent(seq)
                }
                Op::AckOutbox { dest, upto } => {
                    let start = keys::outbox_prefix(*dest);
                    let end = if *upto == u64::MAX {
                        prefix_end(&start)
                    } else {
                        keys::outbox(*dest, upto + 1)
                    };
                    for k in txn.keys(&start, &end, usize::MAX)? {
                        txn.del(k);
                    }
                    OpResult::Done
                }
                Op::Receive {
                    source,
                    seq,
                    entity,
                    message,
                } => {
                    let k = keys::received(*source);
                    let have = txn.get_u64(&k)?;
                    if *seq <= have {
                        OpResult::Duplicate
                    } else if *seq > have + 1 {
                        OpResult::Gap { expected: have + 1 }
                    } else {
                        txn.put_u64(&k, *seq);
                        let n = txn.get_u64(keys::INBOX_SEQ)? + 1;
                        txn.put_u64(keys::INBOX_SEQ, n);
                        txn.put(keys::inbox(entity, n), message.clone());
                        OpResult::Enqueued(n)
                    }
                }
                Op::RememberId {
                    entity,
                    id,
                    expires_at,
                } => {
                    let k = keys::id(entity, id);
                    if txn.get(&k)?.is_some() {
                        skip = true;
                        OpResult::Duplicate
                    } else {
                        txn.put(k, expires_at.to_be_bytes().to_vec());
                        txn.put(keys::id_by_expiry(*expires_at, entity, id), Vec::new());
                        OpResult::Done
                    }
                }
                Op::ExpireIds { now, limit } => {
                    let start = [b'K'];
                    let mut end = vec![b'K'];
                    end.extend_from_slice(&now.to_be_bytes());
                    for k in txn.keys(&start, &end, *limit as usize)? {
                        let mut id_key = vec![b'k'];
                        id_key.extend_from_slice(&k[9..]);
                        txn.del(id_key);
                        txn.del(k);
                    }
                    OpResult::Done
                }
                Op::ScheduleTimer {
                    due,
                    entity,
                    message,
                } => {
                    let id = txn.get_u64(keys::TIMER_SEQ)? + 1;
                    txn.put_u64(keys::TIMER_SEQ, id);
                    let v = self.encode(&(entity, message))?;
                    txn.put(keys::timer(*due, id), v);
                    OpResult::Scheduled(id)
                }
                Op::RemoveTimer { due, id } => {
                    txn.del(keys::timer(*due, *id));
                    OpResult::Done
                }
            };
            out.push(r);
        }
        Ok(out)
    }

    /// An entity's state.
    pub fn state(&self, entity: &EntityId) -> Result<Option<Vec<u8>>> {
        Ok(self
            .tree
            .get(keys::entity(entity))
            .map_err(|e| self.sled_err(e))?
            .map(|v| v.to_vec()))
    }

    /// Keys and states of entities named `name`, in key order, after `after`, at most `limit`.
    pub fn entities(
        &self,
        name: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        let prefix = keys::entity_prefix(&name.to_ascii_lowercase());
        let start = match after {
            Some(a) => {
                let mut s = prefix.clone();
                s.extend_from_slice(a.as_bytes());
                s.push(0);
                s
            }
            None => prefix.clone(),
        };
        let mut out = Vec::new();
        for kv in self.tree.range(start..prefix_end(&prefix)).take(limit) {
            let (k, v) = kv.map_err(|e| self.sled_err(e))?;
            let key = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            out.push((key, v.to_vec()));
        }
        Ok(out)
    }

    /// An entity's pending inbox messages, oldest first.
    pub fn inbox(&self, entity: &EntityId) -> Result<Vec<(u64, Vec<u8>)>> {
        let prefix = keys::inbox_prefix(entity);
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix(&prefix) {
            let (k, v) = kv.map_err(|e| self.sled_err(e))?;
            out.push((u64_of(&k[prefix.len()..]), v.to_vec()));
        }
        Ok(out)
    }

    /// Entities with pending inbox messages (each once), in key order, at most `limit`.
    pub fn inbox_entities(&self, limit: usize) -> Result<Vec<EntityId>> {
        let mut out: Vec<EntityId> = Vec::new();
        let mut start = vec![b'i'];
        while out.len() < limit {
            let Some(kv) = self.tree.range(start.clone()..vec![b'j']).next() else {
                break;
            };
            let (k, _) = kv.map_err(|e| self.sled_err(e))?;
            let Some(nul) = k.iter().position(|b| *b == 0) else {
                break;
            };
            let canonical = String::from_utf8_lossy(&k[1..nul]).into_owned();
            match EntityId::from_canonical(&canonical) {
                Ok(id) => out.push(id),
                Err(e) => tracing::warn!(key = %canonical, error = %e, "unreadable inbox key"),
            }
            // skip past every message of this entity
            start = k[..=nul].to_vec();
            start.extend_from_slice(&[0xff; 9]);
        }
        Ok(out)
    }

    /// Messages waiting in this partition's entity inboxes, counted up to `cap` (for metrics:
    /// bounded work at scrape time).
    pub fn inbox_depth(&self, cap: usize) -> usize {
        self.tree.scan_prefix([b'i']).keys().take(cap).count()
    }

    /// Messages waiting in this partition's outbox (not yet acknowledged by their destination),
    /// counted up to `cap`.
    pub fn outbox_depth(&self, cap: usize) -> usize {
        self.tree.scan_prefix([b'o']).keys().take(cap).count()
    }

    /// The oldest pending outbox messages over all destinations: `(dest, seq, message)` in
    /// (destination, sequence) order, at most `limit`.
    pub fn outbox_pending(&self, limit: usize) -> Result<Vec<(PartitionId, u64, Vec<u8>)>> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix([b'o']).take(limit) {
            let (k, v) = kv.map_err(|e| self.sled_err(e))?;
            if k.len() != 13 {
                continue;
            }
            let dest = u32::from_be_bytes(k[1..5].try_into().expect("4 bytes"));
            out.push((dest, u64_of(&k[5..13]), v.to_vec()));
        }
        Ok(out)
    }

    /// The due time of the earliest timer, if any.
    pub fn next_timer_due(&self) -> Result<Option<Millis>> {
        Ok(self
            .tree
            .scan_prefix([b't'])
            .next()
            .transpose()
            .map_err(|e| self.sled_err(e))?
            .map(|(k, _)| u64_of(&k[1..9])))
    }

    /// Outbox messages for `dest` with sequence numbers above `after`, at most `limit`.
    pub fn outbox(
        &self,
        dest: PartitionId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>> {
        let prefix = keys::outbox_prefix(dest);
        let mut out = Vec::new();
        for kv in self
            .tree
            .range(keys::outbox(dest, after.saturating_add(1))..prefix_end(&prefix))
            .take(limit)
        {
            let (k, v) = kv.map_err(|e| self.sled_err(e))?;
            out.push((u64_of(&k[prefix.len()..]), v.to_vec()));
        }
        Ok(out)
    }

    /// Highest sequence number received from `source`.
    pub fn received_upto(&self, source: PartitionId) -> Result<u64> {
        Ok(self
            .tree
            .get(keys::received(source))
            .map_err(|e| self.sled_err(e))?
            .map(|v| u64_of(&v))
            .unwrap_or(0))
    }

    /// Whether an idempotency id is remembered for an entity.
    pub fn remembers_id(&self, entity: &EntityId, id: &str) -> Result<bool> {
        self.tree
            .contains_key(keys::id(entity, id))
            .map_err(|e| self.sled_err(e))
    }

    /// Timers due at or before `now`, earliest first, at most `limit`.
    pub fn due_timers(&self, now: Millis, limit: usize) -> Result<Vec<Timer>> {
        let mut out = Vec::new();
        for kv in self
            .tree
            .range(vec![b't']..keys::timer(now.saturating_add(1), 0))
            .take(limit)
        {
            let (k, v) = kv.map_err(|e| self.sled_err(e))?;
            let (entity, message): (EntityId, Vec<u8>) = self.decode(&v)?;
            out.push(Timer {
                due: u64_of(&k[1..9]),
                id: u64_of(&k[9..17]),
                entity,
                message,
            });
        }
        Ok(out)
    }

    /// Every pair of the tree as sled's own shared buffers: mostly reference-count increments,
    /// no copies, so a snapshot holds the partition's applies for as short a time as possible
    /// (the snapshot is encoded from these buffers later, off the state machine).
    pub fn export_shared(&self) -> Result<Vec<(sled::IVec, sled::IVec)>> {
        self.tree
            .iter()
            .map(|kv| kv.map_err(|e| self.sled_err(e)))
            .collect()
    }

    /// Every key and value, owned (tests compare trees with it).
    #[cfg(test)]
    pub fn export(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.tree
            .iter()
            .map(|kv| {
                kv.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(|e| self.sled_err(e))
            })
            .collect()
    }

    /// Replaces the whole tree with `pairs` in one atomic batch.
    pub fn replace(&self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let mut batch = sled::Batch::default();
        for k in self.tree.iter().keys() {
            batch.remove(k.map_err(|e| self.sled_err(e))?);
        }
        for (k, v) in pairs {
            batch.insert(k.as_slice(), v.as_slice());
        }
        self.tree.apply_batch(batch).map_err(|e| self.sled_err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn state() -> (PartitionState, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new()
            .temporary(true)
            .path(dir.path())
            .open()
            .unwrap();
        let tree = db.open_tree("p00000").unwrap();
        (
            PartitionState::new(0, tree, dir.path().to_path_buf(), Default::default()),
            dir,
        )
    }

    fn e(key: &str) -> EntityId {
        EntityId::new("t", key).unwrap()
    }

    fn apply(st: &PartitionState, index: u64, ops: Vec<Op>) -> Vec<OpResult> {
        let entry = Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Command::new(ops).into()),
        };
        let mut m = StoredMembership::default();
        let mut r = st.apply(&[entry], &mut m).unwrap();
        assert_eq!(r[0].index, index);
        r.remove(0).results.remove(0)
    }

    #[test]
    fn state_set_delete_and_applied_position() {
        let (st, _d) = state();
        apply(
            &st,
            1,
            vec![Op::SetState {
                entity: e("a"),
                state: b"1".to_vec(),
            }],
        );
        assert_eq!(st.state(&e("a")).unwrap(), Some(b"1".to_vec()));
        apply(&st, 2, vec![Op::DeleteState { entity: e("a") }]);
        assert_eq!(st.state(&e("a")).unwrap(), None);
        assert_eq!(st.applied().unwrap().0.unwrap().index, 2);
    }

    #[test]
    fn inbox_sequence_numbers_increase_and_dequeue_removes_a_prefix() {
        let (st, _d) = state();
        let r = apply(
            &st,
            1,
            (0..5)
                .map(|i| Op::Enqueue {
                    entity: e(if i % 2 == 0 { "a" } else { "b" }),
                    message: vec![i],
                })
                .collect(),
        );
        assert_eq!(r, (1..=5).map(OpResult::Enqueued).collect::<Vec<_>>());
        assert_eq!(
            st.inbox(&e("a")).unwrap(),
            vec![(1, vec![0]), (3, vec![2]), (5, vec![4])]
        );
        // an entity whose key extends another's does not see its messages
        assert!(st.inbox(&e("a0")).unwrap().is_empty());
        apply(
            &st,
            2,
            vec![Op::Dequeue {
                entity: e("a"),
                upto: 3,
            }],
        );
        assert_eq!(st.inbox(&e("a")).unwrap(), vec![(5, vec![4])]);
        assert_eq!(st.inbox(&e("b")).unwrap().len(), 2);
        assert_eq!(st.inbox_entities(10).unwrap(), vec![e("a"), e("b")]);
        assert_eq!(st.inbox_entities(1).unwrap(), vec![e("a")]);
    }

    #[test]
    fn outbox_is_gap_free_per_destination_and_acks_drop_a_prefix() {
        let (st, _d) = state();
        let r = apply(
            &st,
            1,
            vec![
                Op::Send {
                    dest: 3,
                    message: b"x".to_vec(),
                },
                Op::Send {
                    dest: 4,
                    message: b"y".to_vec(),
                },
                Op::Send {
                    dest: 3,
                    message: b"z".to_vec(),
                },
            ],
        );
        assert_eq!(
            r,
            vec![OpResult::Sent(1), OpResult::Sent(1), OpResult::Sent(2)]
        );
        assert_eq!(
            st.outbox(3, 0, 10).unwrap(),
            vec![(1, b"x".to_vec()), (2, b"z".to_vec())]
        );
        assert_eq!(
            st.outbox_pending(10).unwrap(),
            vec![
                (3, 1, b"x".to_vec()),
                (3, 2, b"z".to_vec()),
                (4, 1, b"y".to_vec())
            ]
        );
        apply(&st, 2, vec![Op::AckOutbox { dest: 3, upto: 1 }]);
        assert_eq!(st.outbox(3, 0, 10).unwrap(), vec![(2, b"z".to_vec())]);
        assert_eq!(st.outbox(4, 0, 10).unwrap().len(), 1);
    }

    #[test]
    fn receive_accepts_each_sequence_number_once_and_in_order() {
        let (st, _d) = state();
        let recv = |seq| Op::Receive {
            source: 7,
            seq,
            entity: e("a"),
            message: vec![seq as u8],
        };
        let r = apply(&st, 1, vec![recv(1), recv(1), recv(3), recv(2)]);
        assert_eq!(
            r,
            vec![
                OpResult::Enqueued(1),
                OpResult::Duplicate,
                OpResult::Gap { expected: 2 },
                OpResult::Enqueued(2)
            ]
        );
        assert_eq!(st.received_upto(7).unwrap(), 2);
        assert_eq!(st.inbox(&e("a")).unwrap(), vec![(1, vec![1]), (2, vec![2])]);
    }

    #[test]
    fn a_remembered_id_skips_the_rest_of_the_command() {
        let (st, _d) = state();
        let cmd = |n: u8| {
            vec![
                Op::RememberId {
                    entity: e("a"),
                    id: "req-1".into(),
                    expires_at: 1000,
                },
                Op::Enqueue {
                    entity: e("a"),
                    message: vec![n],
                },
            ]
        };
        assert_eq!(
            apply(&st, 1, cmd(1)),
            vec![OpResult::Done, OpResult::Enqueued(1)]
        );
        assert_eq!(
            apply(&st, 2, cmd(2)),
            vec![OpResult::Duplicate, OpResult::Skipped]
        );
        assert_eq!(st.inbox(&e("a")).unwrap().len(), 1);
        // a new id before a seen one is not remembered either: the command applies nothing
        let mixed = vec![
            Op::RememberId {
                entity: e("a"),
                id: "req-new".into(),
                expires_at: 1000,
            },
            Op::RememberId {
                entity: e("a"),
                id: "req-1".into(),
                expires_at: 1000,
            },
            Op::Enqueue {
                entity: e("a"),
                message: vec![9],
            },
        ];
        assert_eq!(
            apply(&st, 20, mixed),
            vec![OpResult::Skipped, OpResult::Duplicate, OpResult::Skipped]
        );
        assert!(!st.remembers_id(&e("a"), "req-new").unwrap());
        assert_eq!(st.inbox(&e("a")).unwrap().len(), 1);
        // expiry forgets it; the same id is then new again
        apply(
            &st,
            3,
            vec![Op::ExpireIds {
                now: 999,
                limit: 10,
            }],
        );
        assert!(st.remembers_id(&e("a"), "req-1").unwrap());
        apply(
            &st,
            4,
            vec![Op::ExpireIds {
                now: 1001,
                limit: 10,
            }],
        );
        assert!(!st.remembers_id(&e("a"), "req-1").unwrap());
        assert_eq!(
            apply(&st, 5, cmd(3)),
            vec![OpResult::Done, OpResult::Enqueued(2)]
        );
    }

    #[test]
    fn a_command_fenced_to_another_term_applies_nothing() {
        let (st, _d) = state();
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
        assert_eq!(st.state(&e("f")).unwrap(), Some(b"a".to_vec()));
        // not fenced: applies in any term
        st.apply(&[entry(4, 3, set(b"c"))], &mut m).unwrap();
        assert_eq!(st.state(&e("f")).unwrap(), Some(b"c".to_vec()));
    }

    #[test]
    fn timers_come_due_in_time_order() {
        let (st, _d) = state();
        let r = apply(
            &st,
            1,
            vec![
                Op::ScheduleTimer {
                    due: 500,
                    entity: e("a"),
                    message: b"late".to_vec(),
                },
                Op::ScheduleTimer {
                    due: 100,
                    entity: e("b"),
                    message: b"early".to_vec(),
                },
            ],
        );
        assert_eq!(r, vec![OpResult::Scheduled(1), OpResult::Scheduled(2)]);
        assert_eq!(st.next_timer_due().unwrap(), Some(100));
        let due = st.due_timers(200, 10).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(
            (due[0].due, due[0].id, due[0].message.as_slice()),
            (100, 2, &b"early"[..])
        );
        assert_eq!(st.due_timers(500, 10).unwrap().len(), 2);
        apply(&st, 2, vec![Op::RemoveTimer { due: 100, id: 2 }]);
        assert_eq!(st.due_timers(1000, 10).unwrap().len(), 1);
    }

    #[test]
    fn export_and_replace_round_trip() {
        let (a, _d1) = state();
        apply(
            &a,
            1,
            vec![
                Op::SetState {
                    entity: e("x"),
                    state: b"s".to_vec(),
                },
                Op::Enqueue {
                    entity: e("x"),
                    message: b"m".to_vec(),
                },
            ],
        );
        let (b, _d2) = state();
        apply(
            &b,
            1,
            vec![Op::SetState {
                entity: e("old"),
                state: b"gone".to_vec(),
            }],
        );
        b.replace(&a.export().unwrap()).unwrap();
        assert_eq!(b.export().unwrap(), a.export().unwrap());
        assert_eq!(b.state(&e("old")).unwrap(), None);
    }
}
