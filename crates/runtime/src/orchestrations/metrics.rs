//! The orchestration workload's counters, read by the node's `/metrics` at scrape time.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (seconds) of the turn-latency buckets: from a turn's start (its events read) to
/// its command committed.
pub const TURN_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Upper bounds (history events) of the buckets of an execution's history size when it ends
/// (completed, failed, terminated or continued as new).
pub const HISTORY_BUCKETS: [f64; 6] = [10.0, 100.0, 1e3, 1e4, 1e5, 1e6];

/// Counters of one node's orchestration workload.
#[derive(Debug, Default)]
pub struct OrchestrationMetrics {
    /// Instances started (start requests committed, sub-orchestrations included).
    pub started: AtomicU64,
    /// Turns committed.
    pub turns: AtomicU64,
    /// Turns that applied nothing (fenced out) and were recomputed.
    pub turns_fenced: AtomicU64,
    /// History events appended.
    pub events: AtomicU64,
    /// Histories replayed (a live orchestrator rebuilt).
    pub replays: AtomicU64,
    /// Activities started in-process.
    pub activities_started: AtomicU64,
    /// Activities that returned a result.
    pub activities_completed: AtomicU64,
    /// Activities that failed (an error, a panic, an unknown name).
    pub activities_failed: AtomicU64,
    /// Executions that completed.
    pub completed: AtomicU64,
    /// Executions that failed.
    pub failed: AtomicU64,
    /// Executions terminated.
    pub terminated: AtomicU64,
    /// Executions continued as new.
    pub continued_as_new: AtomicU64,
    /// Executions failed as poison (a step that kept crashing).
    pub poisoned: AtomicU64,
    /// Instances purged (by request or retention).
    pub purged: AtomicU64,
    /// Live orchestrators in memory now.
    pub live: AtomicU64,
    /// Activities waiting or running now.
    pub activities_pending: AtomicU64,
    /// Turn latency histogram: counts per bucket of [`TURN_BUCKETS`] (the last one is +Inf).
    pub turn_buckets: [AtomicU64; 13],
    /// The sum of turn latencies, in microseconds.
    pub turn_sum_us: AtomicU64,
    /// History size of the executions that ended: counts per bucket of [`HISTORY_BUCKETS`]
    /// (the last one is +Inf).
    pub history_events_at_end: [AtomicU64; 7],
    /// The sum of those history sizes, in events.
    pub history_events_at_end_sum: AtomicU64,
}

impl OrchestrationMetrics {
    /// Records one turn's latency.
    pub fn turn_took(&self, micros: u64) {
        let secs = micros as f64 / 1e6;
        let i = TURN_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(TURN_BUCKETS.len());
        self.turn_buckets[i].fetch_add(1, Ordering::Relaxed);
        self.turn_sum_us.fetch_add(micros, Ordering::Relaxed);
    }

    /// Records the history size (events) of an execution that ended.
    pub fn execution_ended(&self, events: u64) {
        let i = HISTORY_BUCKETS
            .iter()
            .position(|&b| events as f64 <= b)
            .unwrap_or(HISTORY_BUCKETS.len());
        self.history_events_at_end[i].fetch_add(1, Ordering::Relaxed);
        self.history_events_at_end_sum
            .fetch_add(events, Ordering::Relaxed);
    }

    /// Adds one to `c`.
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(a: &[AtomicU64]) -> Vec<u64> {
        a.iter().map(|c| c.load(Ordering::Relaxed)).collect()
    }

    #[test]
    fn observations_land_in_their_bucket() {
        let m = OrchestrationMetrics::default();
        m.turn_took(500); // 0.0005 s: the first bucket (upper bounds are inclusive)
        m.turn_took(7_000_000); // past the last bound: +Inf
        assert_eq!(
            counts(&m.turn_buckets),
            [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
        );
        assert_eq!(m.turn_sum_us.load(Ordering::Relaxed), 7_000_500);
        for events in [3, 10, 11, 5_000, 2_000_000] {
            m.execution_ended(events);
        }
        assert_eq!(counts(&m.history_events_at_end), [2, 1, 0, 1, 0, 0, 1]);
        assert_eq!(
            m.history_events_at_end_sum.load(Ordering::Relaxed),
            2_005_024
        );
    }
}
