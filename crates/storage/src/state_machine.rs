//! openraft's `RaftStateMachine` for one partition: [`PartitionState`] plus its snapshot files.

use crate::raft_types::{
    to_raft_err, Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use crate::snapshot::{self, SnapshotStore};
use crate::state::{PartitionState, TreeSnapshot};
use crate::{Error, Result};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder};
use perdure_types::command::ProposalResult;
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

/// The state machine of one partition.
#[derive(Debug)]
pub struct StateMachine {
    state: PartitionState,
    snapshots: Arc<SnapshotStore>,
    applied: Option<LogId>,
    membership: StoredMembership,
}

fn ordinal(l: Option<LogId>) -> u64 {
    l.map(|l| l.index + 1).unwrap_or(0)
}

impl StateMachine {
    /// Opens the state machine; if the tree is behind the latest snapshot (it lost unsynced writes in a
    /// crash, or was rebuilt), the tree is first restored from that snapshot.
    pub fn open(state: PartitionState, snapshots: SnapshotStore) -> Result<Self> {
        let (mut applied, mut membership) = state.applied()?;
        if let Some((path, bytes)) = snapshots.latest()? {
            let snap = snapshot::decode(&bytes, &path)?;
            if snap.partition != state.partition() {
                return Err(Error::Format {
                    path,
                    reason: format!(
                        "snapshot of partition {} in the directory of partition {}",
                        snap.partition,
                        state.partition()
                    ),
                });
            }
            if ordinal(snap.meta.last_log_id) > ordinal(applied) {
                tracing::info!(
                    partition = state.partition(),
                    snapshot = ?snap.meta.last_log_id,
                    state_store = ?applied,
                    "state store is behind the latest snapshot; restoring it from {}",
                    path.display()
                );
                state.replace(&snap.pairs)?;
                applied = snap.meta.last_log_id;
                membership = snap.meta.last_membership.clone();
            }
        }
        Ok(Self {
            state,
            snapshots: Arc::new(snapshots),
            applied,
            membership,
        })
    }

    /// A handle for reads.
    pub fn reader(&self) -> PartitionState {
        self.state.clone()
    }

    /// The last applied log id.
    pub fn applied(&self) -> Option<LogId> {
        self.applied
    }

    /// Writes a durable snapshot of the current state now (blocking).
    pub fn snapshot_now(&self) -> Result<SnapshotMeta> {
        let pairs = self.state.export_snapshot()?.pairs()?;
        let (meta, _) = write_snapshot(
            self.state.partition(),
            &pairs,
            self.applied,
            self.membership.clone(),
            &self.snapshots,
        )?;
        Ok(meta)
    }
}

/// Encodes the state `pairs` at `applied` as a snapshot and saves it durably.
fn write_snapshot(
    partition: u32,
    pairs: &[(Vec<u8>, Vec<u8>)],
    applied: Option<LogId>,
    membership: StoredMembership,
    store: &SnapshotStore,
) -> Result<(SnapshotMeta, Vec<u8>)> {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let meta = SnapshotMeta {
        last_log_id: applied,
        last_membership: membership,
        snapshot_id: format!("p{partition}-{}-{millis}", ordinal(applied)),
    };
    let started = std::time::Instant::now();
    let bytes = snapshot::encode(partition, &meta, pairs)?;
    store.save(&meta, &bytes)?;
    store.observe_build(started.elapsed().as_secs_f64());
    Ok((meta, bytes))
}

/// Builds a snapshot from a copy of the state taken when it was asked for.
#[derive(Debug)]
pub struct SnapshotBuilder {
    partition: u32,
    /// The state at `applied`, pinned (read when the snapshot is built).
    pairs: Result<Option<TreeSnapshot>>,
    applied: Option<LogId>,
    membership: StoredMembership,
    snapshots: Arc<SnapshotStore>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let err = |e: &Error| to_raft_err(ErrorSubject::Snapshot(None), ErrorVerb::Write, e);
        let view = std::mem::replace(&mut self.pairs, Ok(None))
            .map_err(|e| err(&e))?
            .ok_or_else(|| err(&Error::WalFailed("snapshot built twice".into())))?;
        let partition = self.partition;
        let (applied, membership) = (self.applied, self.membership.clone());
        let store = self.snapshots.clone();
        let (meta, bytes) = tokio::task::spawn_blocking(move || {
            let pairs = view.pairs()?;
            drop(view);
            write_snapshot(partition, &pairs, applied, membership, &store)
        })
        .await
        .map_err(|e| err(&Error::WalFailed(format!("snapshot task: {e}"))))?
        .map_err(|e| err(&e))?;
        tracing::info!(partition, last_log_id = ?meta.last_log_id, bytes = bytes.len(), "snapshot built");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ProposalResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let Some(last) = entries.last().map(|e| e.log_id) else {
            return Ok(Vec::new());
        };
        let mut membership = self.membership.clone();
        // a blocking write (and, once a second, an fsync): never on the runtime's workers
        let state = self.state.clone();
        let results = tokio::task::spawn_blocking(move || {
            state
                .apply(&entries, &mut membership)
                .map(|r| (r, membership))
        })
        .await
        .unwrap_or_else(|e| Err(Error::WalFailed(format!("apply task: {e}"))));
        let (results, membership) =
            results.map_err(|e| to_raft_err(ErrorSubject::StateMachine, ErrorVerb::Write, &e))?;
        self.applied = Some(last);
        self.membership = membership;
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // Pinned here, while no apply can run, so the snapshot is exactly the state at
        // `applied`: a read transaction (no copy; applies go on at once). The pairs are read
        // from it later, on a blocking thread, by the builder.
        let pairs = self.state.export_snapshot().map(Some);
        SnapshotBuilder {
            partition: self.state.partition(),
            pairs,
            applied: self.applied,
            membership: self.membership.clone(),
            snapshots: self.snapshots.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let err = |e: &Error| {
            to_raft_err(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Write,
                e,
            )
        };
        let bytes = snapshot.into_inner();
        let (state, store, m) = (self.state.clone(), self.snapshots.clone(), meta.clone());
        // decode, durable file, then the tree: blocking work, on a blocking thread
        tokio::task::spawn_blocking(move || -> Result<()> {
            let content = snapshot::decode(&bytes, Path::new("<received snapshot>"))?;
            if content.partition != state.partition() || content.meta.last_log_id != m.last_log_id {
                return Err(Error::Format {
                    path: "<received snapshot>".into(),
                    reason: format!(
                        "snapshot of partition {} at {:?} offered to partition {} as {:?}",
                        content.partition,
                        content.meta.last_log_id,
                        state.partition(),
                        m.last_log_id
                    ),
                });
            }
            // Durable file first: once the tree is replaced, the log before it may be purged.
            store.save(&m, &bytes)?;
            state.replace(&content.pairs)
        })
        .await
        .map_err(|e| err(&Error::WalFailed(format!("snapshot install task: {e}"))))?
        .map_err(|e| err(&e))?;
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let err = |e: &Error| to_raft_err(ErrorSubject::Snapshot(None), ErrorVerb::Read, e);
        // a file read and a decode of the whole state: on a blocking thread
        let store = self.snapshots.clone();
        let read = tokio::task::spawn_blocking(move || -> Result<_> {
            let Some((path, bytes)) = store.latest()? else {
                return Ok(None);
            };
            let content = snapshot::decode(&bytes, &path)?;
            Ok(Some((content.meta, bytes)))
        })
        .await
        .map_err(|e| err(&Error::WalFailed(format!("snapshot read task: {e}"))))?
        .map_err(|e| err(&e))?;
        let Some((meta, bytes)) = read else {
            return Ok(None);
        };
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}
