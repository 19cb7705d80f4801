//! The pending writes of one apply batch: later ops of the batch read what earlier ops wrote,
//! and the whole batch reaches the tree in one write transaction.

use super::tree::WriteTable;
use super::{keys, PartitionState};
use crate::Result;
use std::collections::BTreeMap;
use std::ops::Bound;

/// Pending writes of one apply batch over a partition's tree, read back by later ops of the
/// same batch. The writes reach the tree only when the whole batch applied without error
/// ([`Txn::into_pending`]), so a failed batch leaves the tree as it was.
pub(super) struct Txn<'a> {
    state: &'a PartitionState,
    table: &'a WriteTable<'a>,
    pending: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl<'a> Txn<'a> {
    /// An empty batch over `table`, the write transaction of `state`'s tree.
    pub(super) fn new(state: &'a PartitionState, table: &'a WriteTable<'a>) -> Self {
        Self {
            state,
            table,
            pending: BTreeMap::new(),
        }
    }

    /// The value of `k`: the batch's own write if it made one, else the tree's.
    pub(super) fn get(&self, k: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(v) = self.pending.get(k) {
            return Ok(v.clone());
        }
        self.table.get(k)
    }

    /// Writes `k`.
    pub(super) fn put(&mut self, k: Vec<u8>, v: Vec<u8>) {
        self.pending.insert(k, Some(v));
    }

    /// Deletes `k`.
    pub(super) fn del(&mut self, k: Vec<u8>) {
        self.pending.insert(k, None);
    }

    /// A counter (0 when absent).
    pub(super) fn get_u64(&self, k: &[u8]) -> Result<u64> {
        Ok(self.get(k)?.map(|v| keys::u64_of(&v)).unwrap_or(0))
    }

    /// Writes a counter.
    pub(super) fn put_u64(&mut self, k: &[u8], v: u64) {
        self.put(k.to_vec(), v.to_be_bytes().to_vec());
    }

    /// Increments the counter at `k` and returns its new value.
    pub(super) fn next_u64(&mut self, k: &[u8]) -> Result<u64> {
        let n = self.get_u64(k)? + 1;
        self.put_u64(k, n);
        Ok(n)
    }

    /// Deletes every live key in `[start, end)`.
    pub(super) fn del_range(&mut self, start: &[u8], end: &[u8]) -> Result<()> {
        for k in self.keys(start, end, usize::MAX)? {
            self.del(k);
        }
        Ok(())
    }

    /// Encodes a value with the codec, naming this partition's tree in the error.
    pub(super) fn encode<T: serde::Serialize>(&self, v: &T) -> Result<Vec<u8>> {
        self.state.encode(v)
    }

    /// Decodes a value with the codec, naming this partition's tree in the error.
    pub(super) fn decode<T: serde::de::DeserializeOwned>(&self, v: &[u8]) -> Result<T> {
        self.state.decode(v)
    }

    /// Live keys in `[start, end)`, at most `limit`, merging the tree with pending writes.
    pub(super) fn keys(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Vec<u8>>> {
        let mut out: BTreeMap<Vec<u8>, ()> = BTreeMap::new();
        // deleted pending keys hide tree keys: ask the tree for enough to fill `limit` after them
        let hidden = self
            .pending
            .range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)))
            .filter(|(_, v)| v.is_none())
            .count();
        for k in self.table.keys(start, end, limit.saturating_add(hidden))? {
            if !matches!(self.pending.get(&k), Some(None)) {
                out.insert(k, ());
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

    /// The batch's writes, to hand to the write transaction once the batch applied.
    pub(super) fn into_pending(self) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
        self.pending
    }
}
