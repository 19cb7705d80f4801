//! openraft's `RaftLogStorage` for one partition, over the node's shared write-ahead log.
//!
//! Entries live in memory (from the last purge to the end of the log) for reads, and in the WAL
//! for durability. `append` hands the entries to the WAL and returns; openraft's `LogFlushed`
//! callback runs on the WAL's writer thread only after the fdatasync that covers them. Votes,
//! truncations and purges wait for their own sync before returning.

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

/// One partition's log as recovered from the WAL, and as kept in memory afterwards.
#[derive(Debug, Default)]
pub struct PartitionLog {
    /// Entries after the last purge, by index.
    pub entries: BTreeMap<u64, Entry>,
    /// The last saved vote.
    pub vote: Option<Vote>,
    /// The last saved committed log id.
    pub committed: Option<LogId>,
    /// The last purged log id.
    pub last_purged: Option<LogId>,
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
    /// Replays one recovered WAL record of this partition.
    pub fn replay(&mut self, record: &Record, wal_dir: &std::path::Path) -> Result<()> {
        match record.kind {
            RecordKind::Entries => {
                let entries: Vec<Entry> =
                    codec::decode(&record.payload).map_err(decode_err(wal_dir))?;
                for e in entries {
                    self.entries.insert(e.log_id.index, e);
                }
            }
            RecordKind::Truncate => {
                self.entries.split_off(&record.index);
            }
            RecordKind::Purge => {
                let id: LogId = codec::decode(&record.payload).map_err(decode_err(wal_dir))?;
                if self.last_purged.is_none_or(|p| p < id) {
                    self.last_purged = Some(id);
                }
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

    /// After replay: drops purged entries and checks that what is left has no holes.
    pub fn finish(&mut self, partition: u32, wal_dir: &std::path::Path) -> Result<()> {
        if let Some(p) = self.last_purged {
            self.entries = self.entries.split_off(&(p.index + 1));
        }
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
            .map(|e| e.log_id)
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
            .map(|(_, e)| e.clone())
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
        {
            let mut log = self.log();
            for e in entries {
                log.entries.insert(e.log_id.index, e);
            }
        }
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
        self.log().entries.split_off(&log_id.index);
        let rec = self.record(RecordKind::Truncate, log_id.index, Vec::new());
        self.wal
            .write(vec![rec])
            .await
            .map_err(|e| to_raft_err(ErrorSubject::Logs, ErrorVerb::Delete, &e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        {
            let mut log = self.log();
            log.entries = log.entries.split_off(&(log_id.index + 1));
            if log.last_purged.is_none_or(|p| p < log_id) {
                log.last_purged = Some(log_id);
            }
        }
        let rec = self.record(RecordKind::Purge, log_id.index, self.encode(&log_id)?);
        self.wal
            .write(vec![rec])
            .await
            .map_err(|e| to_raft_err(ErrorSubject::Logs, ErrorVerb::Delete, &e))
    }
}
