//! The openraft type configuration shared by every partition group.

use perdure_types::command::{Proposal, ProposalResult};
use std::io::Cursor;

openraft::declare_raft_types!(
    /// perdure's Raft types: log entries carry [`Proposal`]s, applying one answers a
    /// [`ProposalResult`]; snapshots travel as one in-memory buffer in the snapshot file format.
    pub TypeConfig:
        D = Proposal,
        R = ProposalResult,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id.
pub type LogId = openraft::LogId<u64>;
/// A vote.
pub type Vote = openraft::Vote<u64>;
/// Membership as stored.
pub type StoredMembership = openraft::StoredMembership<u64, openraft::BasicNode>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::SnapshotMeta<u64, openraft::BasicNode>;
/// openraft's storage error.
pub type StorageError = openraft::StorageError<u64>;

/// Converts our error into openraft's, keeping the message.
pub(crate) fn to_raft_err(
    subject: openraft::ErrorSubject<u64>,
    verb: openraft::ErrorVerb,
    e: &crate::Error,
) -> StorageError {
    StorageError::from(openraft::StorageIOError::new(
        subject,
        verb,
        openraft::AnyError::error(e.to_string()),
    ))
}
