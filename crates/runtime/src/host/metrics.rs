//! Counters of one partition's host services.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one partition's host (outbox delivery, timers, proposals).
#[derive(Debug, Default)]
pub struct HostMetrics {
    delivered: AtomicU64,
    timers_fired: AtomicU64,
    commands: AtomicU64,
    proposals: AtomicU64,
}

impl HostMetrics {
    pub(crate) fn add_proposal(&self, commands: u64) {
        self.proposals.fetch_add(1, Ordering::Relaxed);
        self.commands.fetch_add(commands, Ordering::Relaxed);
    }
    /// Commands this node's proposer sent to the partition's Raft group (each one atomic
    /// change: an entity batch, an orchestration turn, a delivery, ...).
    pub fn commands(&self) -> u64 {
        self.commands.load(Ordering::Relaxed)
    }
    /// Proposals (Raft entries) they went in.
    pub fn proposals(&self) -> u64 {
        self.proposals.load(Ordering::Relaxed)
    }
    pub(crate) fn add_delivered(&self, n: u64) {
        self.delivered.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn add_timers_fired(&self, n: u64) {
        self.timers_fired.fetch_add(n, Ordering::Relaxed);
    }
    /// Messages delivered from this partition's outbox.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }
    /// Timers fired.
    pub fn timers_fired(&self) -> u64 {
        self.timers_fired.load(Ordering::Relaxed)
    }
}
