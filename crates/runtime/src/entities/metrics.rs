//! Counters of one partition's entity actors.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one partition's entity actors.
#[derive(Debug, Default)]
pub struct EntityMetrics {
    activations: AtomicU64,
    passivations: AtomicU64,
}

impl EntityMetrics {
    pub(crate) fn activated(&self) {
        self.activations.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn passivated(&self) {
        self.passivations.fetch_add(1, Ordering::Relaxed);
    }
    /// Entity actors activated so far.
    pub fn activations(&self) -> u64 {
        self.activations.load(Ordering::Relaxed)
    }
    /// Entity actors passivated so far.
    pub fn passivations(&self) -> u64 {
        self.passivations.load(Ordering::Relaxed)
    }
    /// Entity actors active now.
    pub fn active(&self) -> u64 {
        self.activations().saturating_sub(self.passivations())
    }
}
