//! Counters of one partition's host services.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one partition's host (outbox delivery, timers).
#[derive(Debug, Default)]
pub struct HostMetrics {
    delivered: AtomicU64,
    timers_fired: AtomicU64,
}

impl HostMetrics {
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
