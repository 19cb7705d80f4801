//! What each consumer running on this node reports about itself (for `GET
//! .../subscriptions/{name}`, `GET /cluster` and the dashboard).

use perdure_types::{NodeId, PartitionId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// One source partition's consumer, as the node running it sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerStatus {
    /// The subscription.
    pub subscription: String,
    /// Its generation.
    pub generation: u64,
    /// The source partition.
    pub source_partition: u32,
    /// Its home partition (whose leader runs the consumer).
    pub home_partition: PartitionId,
    /// The node running it.
    pub node: NodeId,
    /// `running`, `starting`, `retrying` (a source or cluster error, retried with backoff) or
    /// `stopped` (needs an operator: the source was recreated or truncated).
    pub state: String,
    /// The last error, if any.
    pub error: Option<String>,
    /// The checkpoint: every record at or below it was applied.
    pub position: u64,
    /// The last position read from the source.
    pub read_position: u64,
    /// The last position the source holds (as last asked).
    pub end: u64,
    /// `end - position`.
    pub lag: u64,
    /// Records read and not yet checkpointed.
    pub in_flight: u64,
    /// When the checkpoint was last written (ms since the epoch).
    pub checkpoint_at_ms: u64,
}

/// The consumers running on this node, by source key.
#[derive(Debug, Default)]
pub struct StatusBoard {
    by_source: Mutex<BTreeMap<String, ConsumerStatus>>,
}

impl StatusBoard {
    /// Updates (or adds) the consumer of `source`.
    pub(crate) fn update(&self, source: &str, f: impl FnOnce(&mut ConsumerStatus)) {
        let mut m = self.by_source.lock().unwrap_or_else(|p| p.into_inner());
        f(m.entry(source.to_string()).or_default());
    }

    /// The consumer of `source` stopped here.
    pub(crate) fn remove(&self, source: &str) {
        self.by_source
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(source);
    }

    /// The consumers of home partition `p` (of subscription `name`, or all).
    pub fn of(&self, p: PartitionId, name: Option<&str>) -> Vec<ConsumerStatus> {
        self.by_source
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|c| c.home_partition == p && name.is_none_or(|n| c.subscription == n))
            .cloned()
            .collect()
    }

    /// Every consumer running here.
    pub fn all(&self) -> Vec<ConsumerStatus> {
        self.by_source
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }
}
