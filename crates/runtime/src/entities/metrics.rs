//! Counters of one partition's entity actors.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why an entity actor was passivated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Passivation {
    /// Idle longer than `entities.passivate_after_ms`.
    Idle,
    /// The partition was at its share of `entities.max_active` and a new entity needed a slot:
    /// the actor idle the longest made room.
    Pressure,
}

/// Counters of one partition's entity actors.
#[derive(Debug, Default)]
pub struct EntityMetrics {
    activations: AtomicU64,
    passivated_idle: AtomicU64,
    passivated_pressure: AtomicU64,
    active: AtomicU64,
}

impl EntityMetrics {
    pub(crate) fn activated(&self) {
        self.activations.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn passivated(&self, why: Passivation) {
        let c = match why {
            Passivation::Idle => &self.passivated_idle,
            Passivation::Pressure => &self.passivated_pressure,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn set_active(&self, n: usize) {
        self.active.store(n as u64, Ordering::Relaxed);
    }
    /// Entity actors activated so far.
    pub fn activations(&self) -> u64 {
        self.activations.load(Ordering::Relaxed)
    }
    /// Entity actors passivated so far, for either reason.
    pub fn passivations(&self) -> u64 {
        self.passivations_for(Passivation::Idle) + self.passivations_for(Passivation::Pressure)
    }
    /// Entity actors passivated so far for `why`.
    pub fn passivations_for(&self, why: Passivation) -> u64 {
        match why {
            Passivation::Idle => self.passivated_idle.load(Ordering::Relaxed),
            Passivation::Pressure => self.passivated_pressure.load(Ordering::Relaxed),
        }
    }
    /// Entity actors active now (as the partition's processor last counted them).
    pub fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }
}
