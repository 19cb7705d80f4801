//! openraft's `RaftLogStorage` for one partition, over the node's shared write-ahead log.
//!
//! Entries live in memory (from the last purge to the end of the log) for reads, and in the WAL
//! for durability. `append` hands the entries to the WAL and returns; openraft's `LogFlushed`
//! callback runs on the WAL's writer thread only after the fdatasync that covers them. Votes,
//! truncations and purges wait for their own sync before returning.

use crate::log_memory::{self, LogMemory};
use crate::raft_types::{to_raft_err, Entry, LogId, StorageError, TypeConfig, Vote};
use crate::wal::{Record, RecordKind, Wal};
use crate::{Error, Result};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader};
use perdure_types::codec;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

/// An entry held in memory, with its weight (see [`crate::log_memory`]).
#[derive(Debug, Clone)]
struct Held {
    entry: Entry,
    /// Its weight ([`log_memory::weigh`]).
    bytes: u64,
    /// The partition's weight appended up to and including this entry (a running sum, so the
    /// weight of any range is two lookups).
    through: u64,
    /// The node's log clock when it came.
    at: u64,
}

/// One partition's log as recovered from the WAL, and as kept in memory afterwards.
#[derive(Debug)]
pub struct PartitionLog {
    /// Entries after the last purge, by index.
    entries: BTreeMap<u64, Held>,
    /// The last saved vote.
    pub vote: Option<Vote>,
    /// The last saved committed log id.
    pub committed: Option<LogId>,
    /// The last purged log id.
    pub last_purged: Option<LogId>,
    /// The group, as counted in `memory`.
    group: u32,
    /// The weight of `entries`.
    bytes: u64,
    /// Where the weight is counted for the node.
    memory: Arc<LogMemory>,
}

impl Default for PartitionLog {
    /// A log counted on its own (tests).
    fn default() -> Self {
        Self::new(0, Arc::new(LogMemory::new(1)))
    }
}

fn wal_path(wal: &Wal) -> PathBuf {
    wal.dir().to_path_buf()
}

fn decode_err(wal_dir: &std::path::Path) -> impl Fn(codec::Error) -> Error + '_ {
    move |source| Error::Codec {
        path: wal_dir.to_path_buf(),
        source,
    }
}

impl PartitionLog {
    /// An empty log of `group`, its weight counted in `memory`.
    pub fn new(group: u32, memory: Arc<LogMemory>) -> Self {
        Self {
            entries: BTreeMap::new(),
            vote: None,
            committed: None,
            last_purged: None,
            group,
            bytes: 0,
            memory,
        }
    }

    /// Replays one recovered WAL record of this partition. A purge drops the entries it covers
    /// at once, so replay holds no more than the log held when it was written.
    pub fn replay(&mut self, record: &Record, wal_dir: &std::path::Path) -> Result<()> {
        match record.kind {
            RecordKind::Entries => {
                let entries: Vec<Entry> =
                    codec::decode(&record.payload).map_err(decode_err(wal_dir))?;
                let purged = self.last_purged.map(|p| p.index);
                self.insert(
                    entries
                        .into_iter()
                        .filter(|e| purged.is_none_or(|p| e.log_id.index > p)),
                );
            }
            RecordKind::Truncate => self.truncate_from(record.index),
            RecordKind::Purge => {
                let id: LogId = codec::decode(&record.payload).map_err(decode_err(wal_dir))?;
                self.purge_through(id);
            }
            RecordKind::Vote => {
                self.vote = Some(codec::decode(&record.payload).map_err(decode_err(wal_dir))?)
            }
            RecordKind::Committed => {
                self.committed = codec::decode(&record.payload).map_err(decode_err(wal_dir))?
            }
        }
        Ok(())
    }

    /// After replay: checks that what is left has no holes.
    pub fn finish(&mut self, partition: u32, wal_dir: &std::path::Path) -> Result<()> {
        let mut expect = self.last_purged.map(|p| p.index + 1);
        for &i in self.entries.keys() {
            if let Some(e) = expect {
                if i != e {
                    return Err(Error::Corrupt {
                        path: wal_dir.to_path_buf(),
                        offset: 0,
                        reason: format!(
                            "partition {partition}: log entry {e} is missing (next present: {i})"
                        ),
                    });
                }
            }
            expect = Some(i + 1);
        }
        Ok(())
    }

    /// The weight of the entries held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Number of entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Holds `entries` (replacing any held at their indexes), weighing each once.
    fn insert(&mut self, entries: impl IntoIterator<Item = Entry>) {
        for entry in entries {
            let index = entry.log_id.index;
            // appended over a held tail: openraft truncates first, but a replaced entry must
            // not be counted twice
            if self.entries.range(index..).next().is_some() {
                self.truncate_from(index);
            }
            let bytes = log_memory::weigh(&entry);
            let before = self.entries.values().next_back().map_or(0, |h| h.through);
            let at = self.memory.add(self.group, bytes);
            self.bytes += bytes;
            self.entries.insert(
                index,
                Held {
                    entry,
                    bytes,
                    through: before + bytes,
                    at,
                },
            );
        }
    }

    /// Drops the entries at `index` and after.
    fn truncate_from(&mut self, index: u64) {
        let gone = self.entries.split_off(&index);
        self.forget(gone.values());
    }

    /// Drops the entries up to and including `id` and records the purge.
    fn purge_through(&mut self, id: LogId) {
        let kept = self.entries.split_off(&(id.index + 1));
        let gone = std::mem::replace(&mut self.entries, kept);
        self.forget(gone.values());
        if self.last_purged.is_none_or(|p| p < id) {
            self.last_purged = Some(id);
        }
    }

    fn forget<'a>(&mut self, gone: impl Iterator<Item = &'a Held>) {
        let bytes: u64 = gone.map(|h| h.bytes).sum();
        self.bytes -= bytes;
        self.memory.remove(self.group, bytes);
    }

    /// The running weight through the last held entry at or before `index` (the weight before
    /// the first held entry when none is).
    fn through(&self, index: Option<u64>) -> u64 {
        let before_first = self
            .entries
            .values()
            .next()
            .map_or(0, |h| h.through - h.bytes);
        index
            .and_then(|i| self.entries.range(..=i).next_back())
            .map_or(before_first, |(_, h)| h.through)
    }

    /// The weight of the held entries after `after` (all of them for `None`) up to and including
    /// `upto`.
    pub fn bytes_between(&self, after: Option<u64>, upto: u64) -> u64 {
        self.through(Some(upto)).saturating_sub(self.through(after))
    }

    /// The least index to purge through so that the held entries after it, up to and including
    /// `upto`, weigh at most `keep`; `None` when they already do.
    pub fn purge_point(&self, upto: u64, keep: u64) -> Option<u64> {
        let end = self.through(Some(upto));
        if end - self.through(None) <= keep {
            return None;
        }
        self.entries
            .range(..=upto)
            .find(|(_, h)| end - h.through <= keep)
            .map(|(&i, _)| i)
    }

    /// The oldest held entry: its index and the node's log clock when it came.
    pub fn oldest(&self) -> Option<(u64, u64)> {
        self.entries.iter().next().map(|(&i, h)| (i, h.at))
    }
}

impl Drop for PartitionLog {
    fn drop(&mut self) {
        self.memory.remove(self.group, self.bytes);
    }
}

/// A read-only view of a partition's held log, for the task that bounds it (see
/// [`crate::log_memory`]).
#[derive(Debug, Clone)]
pub struct HeldLog {
    log: Arc<Mutex<PartitionLog>>,
}

impl HeldLog {
    /// Runs `f` on the log (briefly: appends wait meanwhile).
    pub fn with<T>(&self, f: impl FnOnce(&PartitionLog) -> T) -> T {
        f(&self.log.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The log storage of one partition (and its reader: both share the in-memory log).
#[derive(Debug, Clone)]
pub struct LogStore {
    partition: u32,
    wal: Wal,
    log: Arc<Mutex<PartitionLog>>,
    /// Where the last committed index is published for metrics (see [`crate::metrics`]).
    commit_gauge: Option<Arc<std::sync::atomic::AtomicU64>>,
}

impl LogStore {
    /// A log store for `partition` starting from its recovered state.
    pub fn new(partition: u32, wal: Wal, recovered: PartitionLog) -> Self {
        Self {
            partition,
            wal,
            log: Arc::new(Mutex::new(recovered)),
            commit_gauge: None,
        }
    }

    /// Publishes the committed index to `gauge` from now on (starting with the recovered one).
    pub fn with_commit_gauge(mut self, gauge: Arc<std::sync::atomic::AtomicU64>) -> Self {
        crate::metrics::set_committed(&gauge, self.log().committed.map(|c| c.index));
        self.commit_gauge = Some(gauge);
        self
    }

    /// A view of the held log, for bounding its weight.
    pub fn held(&self) -> HeldLog {
        HeldLog {
            log: self.log.clone(),
        }
    }

    /// The last saved vote (as recovered, until openraft saves another).
    pub fn vote(&self) -> Option<Vote> {
        self.log().vote
    }

    /// The id of the last entry, or of the last purged one when the log is empty.
    pub fn last_log_id(&self) -> Option<LogId> {
        let log = self.log();
        log.entries
            .values()
            .next_back()
            .map(|h| h.entry.log_id)
            .or(log.last_purged)
    }

    fn log(&self) -> MutexGuard<'_, PartitionLog> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, kind: RecordKind, index: u64, payload: Vec<u8>) -> Record {
        Record {
            partition: self.partition,
            kind,
            index,
            payload,
        }
    }

    // openraft's StorageError is large; it is the type the storage traits must return.
    #[allow(clippy::result_large_err)]
    fn encode<T: serde::Serialize>(&self, v: &T) -> Result<Vec<u8>, StorageError> {
        codec::encode(v).map_err(|source| {
            let e = Error::Codec {
                path: wal_path(&self.wal),
                source,
            };
            to_raft_err(ErrorSubject::Logs, ErrorVerb::Write, &e)
        })
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(self
            .log()
            .entries
            .range(range)
            .map(|(_, h)| h.entry.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_log_id = self.last_log_id();
        Ok(LogState {
            last_purged_log_id: self.log().last_purged,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let rec = self.record(RecordKind::Vote, 0, self.encode(vote)?);
        self.wal
            .write(vec![rec])
            .await
            .map_err(|e| to_raft_err(ErrorSubject::Vote, ErrorVerb::Write, &e))?;
        self.log().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.log().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not a durability promise (committed entries are durable on a majority already): it only
        // lets a restart re-apply sooner. So it rides along with the next sync.
        let rec = self.record(RecordKind::Committed, 0, self.encode(&committed)?);
        self.wal.submit(vec![rec], None);
        self.log().committed = committed;
        if let Some(g) = &self.commit_gauge {
            crate::metrics::set_committed(g, committed.map(|c| c.index));
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.log().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let Some(last) = entries.last().map(|e| e.log_id.index) else {
            callback.log_io_completed(Ok(()));
            return Ok(());
        };
        let payload = self.encode(&entries)?;
        self.log().insert(entries);
        let rec = self.record(RecordKind::Entries, last, payload);
        self.wal.submit(
            vec![rec],
            Some(Box::new(move |r: Result<()>| {
                callback.log_io_completed(r.map_err(std::io::Error::other))
            })),
        );
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.log().truncate_from(log_id.index);
        let rec = self.record(RecordKind::Truncate, log_id.index, Vec::new());
        self.wal
            .write(vec![rec])
            .await
            .map_err(|e| to_raft_err(ErrorSubject::Logs, ErrorVerb::Delete, &e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.log().purge_through(log_id);
        let rec = self.record(RecordKind::Purge, log_id.index, self.encode(&log_id)?);
        self.wal
            .write(vec![rec])
            .await
            .map_err(|e| to_raft_err(ErrorSubject::Logs, ErrorVerb::Delete, &e))
    }
}

#[cfg(test)]
#[path = "log_store_tests.rs"]
mod tests;
