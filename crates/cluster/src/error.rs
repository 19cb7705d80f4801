//! The cluster crate's error type.

use crate::transport::{DuplicateService, Kind};
use perdure_types::{NodeId, PartitionId};

/// A proposal or read could not be served.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Opening or recovering the node's storage failed.
    #[error(transparent)]
    Storage(#[from] perdure_storage::Error),
    /// This node is not the partition's leader.
    #[error("partition {partition}: this node is not the leader (leader: {leader:?})")]
    NotLeader {
        /// The partition.
        partition: PartitionId,
        /// The leader, if known.
        leader: Option<NodeId>,
    },
    /// The partition's group stopped (a storage failure, or shutdown) or cannot serve now.
    #[error("partition {partition} is unavailable: {reason}")]
    Unavailable {
        /// The partition.
        partition: PartitionId,
        /// Why.
        reason: String,
    },
    /// No such partition.
    #[error("partition {0} does not exist")]
    NoSuchPartition(PartitionId),
    /// openraft refused the configuration.
    #[error("raft configuration: {0}")]
    Config(String),
    /// Waiting for the partitions to elect leaders (or for cluster formation) took too long.
    #[error("not ready after {waited_ms} ms: partitions without a leader: {partitions:?}{}", formation.as_deref().map(|f| format!("; {f}")).unwrap_or_default())]
    NotReady {
        /// How long we waited.
        waited_ms: u64,
        /// Those still without a leader.
        partitions: Vec<PartitionId>,
        /// What cluster formation waits for, if it waits.
        formation: Option<String>,
    },
    /// A peer service was added for a request kind that is served already.
    #[error(transparent)]
    DuplicateService(#[from] DuplicateService),
    /// A peer service was added after the node started serving its peers: the table of services
    /// is complete before the first peer is accepted (add services between
    /// [`crate::Partitions::open`] and [`crate::Partitions::serve`]).
    #[error("cannot add a service for request kind {0}: this node serves its peers already")]
    ServingAlready(Kind),
}
