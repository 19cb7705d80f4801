//! One partition's slot in the host: its proposer, its counters, and its leadership while this
//! node leads it and the workloads run.

use super::leader::Leader;
use super::metrics::HostMetrics;
use super::proposer::Proposer;
use std::sync::Arc;

/// One partition's slot in the host.
pub(crate) struct Slot {
    /// The partition's proposer (runs whether or not this node leads).
    pub(crate) proposer: Proposer,
    /// The partition's host counters.
    pub(crate) metrics: Arc<HostMetrics>,
    /// The leadership context while this node leads the partition and its workloads run.
    leader: std::sync::RwLock<Option<Arc<Leader>>>,
}

impl Slot {
    pub(crate) fn leader(&self) -> Option<Arc<Leader>> {
        self.leader
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    pub(crate) fn set_leader(&self, l: Option<Arc<Leader>>) {
        *self.leader.write().unwrap_or_else(|p| p.into_inner()) = l;
    }
}

impl Slot {
    /// A slot with `proposer` (counting into `metrics`), not led here.
    pub(crate) fn new(proposer: Proposer, metrics: Arc<HostMetrics>) -> Self {
        Self {
            proposer,
            metrics,
            leader: std::sync::RwLock::new(None),
        }
    }
}
