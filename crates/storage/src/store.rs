//! [`NodeStore`]: everything one node keeps on disk, opened and recovered in one place.

use crate::datadir::DataDir;
use crate::log_store::{LogStore, PartitionLog};
use crate::snapshot::SnapshotStore;
use crate::state::PartitionState;
use crate::state_machine::StateMachine;
use crate::wal::{Wal, WalOptions};
use crate::{Error, Result};
use perdure_types::config::NodeConfig;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The state store's page cache budget for the whole node, shared out among the groups.
const STATE_CACHE_BYTES: usize = 256 << 20;

/// The least page cache one group gets.
const MIN_GROUP_CACHE_BYTES: usize = 4 << 20;

/// A node's data directory, write-ahead log and state store, recovered and ready to hand each
/// partition its log store and state machine.
#[derive(Debug)]
pub struct NodeStore {
    datadir: DataDir,
    wal: Wal,
    state_path: PathBuf,
    recovered: HashMap<u32, PartitionLog>,
    /// One clone per live [`PartitionState`] handle.
    open_states: std::sync::Arc<()>,
    /// Measurements the node exports.
    metrics: crate::metrics::StoreMetrics,
}

impl NodeStore {
    /// Opens (or creates) the node's data directory and recovers the write-ahead log.
    pub fn open(config: &NodeConfig) -> Result<Self> {
        let datadir = DataDir::open(&config.data_dir, config.partitions, config.node_id)?;
        let partitions = datadir.meta().partitions;
        let wal_dir = datadir.wal_dir();
        let started = std::time::Instant::now();
        let (wal, records) = Wal::open(&wal_dir, WalOptions::from(&config.wal))?;
        // one more group than partitions: the cluster's metadata group
        let metrics =
            crate::metrics::StoreMetrics::new(partitions + 1, wal.fsync_seconds().clone());
        let memory = metrics.log_memory.clone();
        let mut recovered: HashMap<u32, PartitionLog> = HashMap::new();
        let n = records.len();
        for r in &records {
            // group `partitions` is the cluster's metadata group
            if r.partition > partitions {
                return Err(Error::Corrupt {
                    path: wal_dir,
                    offset: 0,
                    reason: format!(
                        "a record of group {} in a node with {partitions} partitions",
                        r.partition
                    ),
                });
            }
            recovered
                .entry(r.partition)
                .or_insert_with(|| PartitionLog::new(r.partition, memory.clone()))
                .replay(r, &wal_dir)?;
        }
        drop(records);
        for (p, log) in recovered.iter_mut() {
            log.finish(*p, &wal_dir)?;
        }
        tracing::info!(
            records = n,
            log_bytes = memory.total_bytes(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "write-ahead log recovered"
        );
        let state_path = datadir.state_dir();
        prepare_state_dir(&state_path)?;
        Ok(Self {
            datadir,
            wal,
            state_path,
            recovered,
            open_states: Default::default(),
            metrics,
        })
    }

    /// The measurements the node exports (fsync latency, snapshot builds, commit index).
    pub fn metrics(&self) -> crate::metrics::StoreMetrics {
        self.metrics.clone()
    }

    /// The data directory.
    pub fn datadir(&self) -> &DataDir {
        &self.datadir
    }

    /// The node's write-ahead log.
    pub fn wal(&self) -> &Wal {
        &self.wal
    }

    /// Number of partitions recorded in the data directory.
    pub fn partitions(&self) -> u32 {
        self.datadir.meta().partitions
    }

    /// The log store and state machine of `partition`. Call once per partition. Group
    /// [`Self::partitions`] (one past the last partition) is the cluster's metadata group.
    pub fn open_partition(&mut self, partition: u32) -> Result<(LogStore, StateMachine)> {
        assert!(
            partition <= self.partitions(),
            "partition {partition} out of range"
        );
        let memory = self.metrics.log_memory.clone();
        let log = self
            .recovered
            .remove(&partition)
            .unwrap_or_else(|| PartitionLog::new(partition, memory));
        let log_store = LogStore::new(partition, self.wal.clone(), log)
            .with_commit_gauge(self.metrics.committed[partition as usize].clone());
        let groups = self.partitions() as usize + 1;
        let cache = (STATE_CACHE_BYTES / groups).max(MIN_GROUP_CACHE_BYTES);
        let file = self.state_path.join(format!("p{partition:05}.redb"));
        let state = open_state(partition, &file, cache, &self.open_states)?;
        let snapshots = SnapshotStore::open(self.datadir.snapshot_dir(partition))?
            .with_build_histogram(self.metrics.snapshot_build_seconds.clone());
        let sm = StateMachine::open(state, snapshots)?;
        let log_end = log_store.last_log_id();
        if sm.applied() > log_end {
            // The log lost entries the state already holds (damaged synced data). openraft will
            // purge the log up to the applied position; since this state store is not durable,
            // that purge must be backed by a durable snapshot of it first.
            tracing::warn!(
                partition,
                applied = ?sm.applied(),
                log_end = ?log_end,
                "state is ahead of the recovered log; writing a snapshot before the log is purged"
            );
            sm.snapshot_now()?;
        }
        Ok((log_store, sm))
    }

    /// Partition state handles still alive (held by state machines or readers). Each state file
    /// stays open (and locked) until its handles are all dropped; the last one closes it cleanly.
    pub fn open_state_handles(&self) -> usize {
        std::sync::Arc::strong_count(&self.open_states) - 1
    }

    /// Closes the write-ahead log after draining it. The state files close themselves when their
    /// last handle drops (making their pending commits durable: not a correctness matter).
    pub fn close(&self) {
        self.wal.close();
    }
}

/// Makes sure `path` is a directory of state files. A store of an older perdure (sled's
/// directory layout) is moved aside, never deleted: the state is derived data, rebuilt from the
/// snapshots and the log, which hold everything it held.
fn prepare_state_dir(path: &Path) -> Result<()> {
    if path.join("conf").exists() || path.join("db").exists() {
        let aside = aside_name(path, "sled");
        tracing::warn!(
            "{} holds a sled state store of an older perdure; moving it to {} and rebuilding the \
             state from snapshots and the log",
            path.display(),
            aside.display()
        );
        std::fs::rename(path, &aside).map_err(|e| Error::io(path, "rename", e))?;
    }
    // durable, and so is the move aside above (the same parent)
    crate::datadir::create_dir_durably(path)
}

/// `path` with a suffix naming why it was moved aside, and when.
fn aside_name(path: &Path, why: &str) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{why}-{secs}"));
    PathBuf::from(name)
}

/// Opens a partition's state file. A file the store reports as corrupt (or of a format this
/// build cannot read) is moved aside, never deleted, and rebuilt from snapshots and the log,
/// which hold everything it held.
fn open_state(
    partition: u32,
    file: &Path,
    cache: usize,
    open: &std::sync::Arc<()>,
) -> Result<PartitionState> {
    match PartitionState::open(partition, file, cache, open.clone()) {
        // corrupt, of another format version, or not a redb file at all (e.g. a torn creation)
        Err(Error::State { source, .. })
            if matches!(
                &*source,
                redb::Error::Corrupted(_) | redb::Error::UpgradeRequired(_)
            ) || matches!(&*source, redb::Error::Io(e) if e.kind() == std::io::ErrorKind::InvalidData) =>
        {
            let aside = aside_name(file, "corrupt");
            tracing::error!(
                error = %source,
                "state file {} is unreadable; moving it to {} and rebuilding from snapshots and the log",
                file.display(),
                aside.display()
            );
            std::fs::rename(file, &aside).map_err(|e| Error::io(file, "rename", e))?;
            PartitionState::open(partition, file, cache, open.clone())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sled_state_directory_is_moved_aside_whole_and_an_empty_one_made() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir_all(state.join("blobs")).unwrap();
        std::fs::write(state.join("conf"), b"sled conf").unwrap();
        std::fs::write(state.join("db"), b"sled db").unwrap();
        prepare_state_dir(&state).unwrap();
        assert_eq!(std::fs::read_dir(&state).unwrap().count(), 0);
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains("state.sled-"))
            .collect();
        assert_eq!(aside.len(), 1, "{aside:?}");
        assert_eq!(std::fs::read(aside[0].join("db")).unwrap(), b"sled db");
        // a directory of state files is left as it is
        std::fs::write(state.join("p00000.redb"), b"x").unwrap();
        prepare_state_dir(&state).unwrap();
        assert!(state.join("p00000.redb").exists());
    }

    #[test]
    fn an_unreadable_state_file_is_moved_aside_and_a_fresh_one_opened() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p00000.redb");
        std::fs::write(&file, vec![0xA5u8; 64 << 10]).unwrap();
        let st = open_state(0, &file, 4 << 20, &Default::default()).unwrap();
        assert_eq!(st.applied().unwrap().0, None);
        let aside = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().contains("p00000.redb.corrupt-")
            })
            .count();
        assert_eq!(aside, 1);
    }
}
