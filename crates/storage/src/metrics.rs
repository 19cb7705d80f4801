//! Storage measurements a node exports: fsync latency, snapshot builds, commit positions, the
//! weight of the Raft logs held in memory.
//!
//! Every value here belongs to one [`NodeStore`](crate::NodeStore) (several nodes may run in one
//! process), costs an atomic update on the path it measures, and is read by the node's metrics
//! collector at scrape time. The histograms are `prometheus` histograms that no registry owns
//! yet: the node registers them in its own registry.

use prometheus::{Histogram, HistogramOpts};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Buckets of the fsync latency histogram, in seconds (100 µs to 1 s).
pub const FSYNC_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];
/// Buckets of the snapshot build histogram, in seconds (1 ms to 60 s).
pub const SNAPSHOT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

fn histogram(name: &str, help: &str, buckets: &[f64]) -> Histogram {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
        .expect("static histogram options are valid")
}

/// The write-ahead log's `fdatasync` latency, in seconds (one observation per group commit).
pub(crate) fn fsync_histogram() -> Histogram {
    histogram(
        "perdure_wal_fsync_duration_seconds",
        "Latency of the write-ahead log's fdatasync (one per group commit).",
        FSYNC_BUCKETS,
    )
}

/// One node's storage measurements. Cheap to clone (shared handles).
#[derive(Clone, Debug)]
pub struct StoreMetrics {
    /// `fdatasync` latency of the write-ahead log, in seconds.
    pub fsync_seconds: Histogram,
    /// Duration of each snapshot built (encoded and saved durably), in seconds; its count is the
    /// number of snapshots built.
    pub snapshot_build_seconds: Histogram,
    /// Each partition's last committed log index plus one (0: nothing committed known yet), as
    /// openraft last saved it on this node.
    pub committed: Arc<[Arc<AtomicU64>]>,
    /// What the log entries held in memory weigh, and the snapshots and purges their bounds
    /// asked for.
    pub log_memory: Arc<crate::log_memory::LogMemory>,
}

impl StoreMetrics {
    /// Fresh measurements for `partitions` groups around the WAL's fsync histogram.
    pub(crate) fn new(partitions: u32, fsync_seconds: Histogram) -> Self {
        Self {
            fsync_seconds,
            snapshot_build_seconds: histogram(
                "perdure_snapshot_build_duration_seconds",
                "Duration of building a partition snapshot (encode and durable save).",
                SNAPSHOT_BUCKETS,
            ),
            committed: (0..partitions).map(|_| Arc::default()).collect(),
            log_memory: Arc::new(crate::log_memory::LogMemory::new(partitions)),
        }
    }

    /// Partition `p`'s last committed log index as this node knows it, if any.
    pub fn committed_index(&self, p: u32) -> Option<u64> {
        let v = self.committed.get(p as usize)?.load(Ordering::Relaxed);
        v.checked_sub(1)
    }
}

/// Sets a commit gauge (`index + 1`, 0 for none).
pub(crate) fn set_committed(gauge: &AtomicU64, index: Option<u64>) {
    gauge.store(index.map_or(0, |i| i + 1), Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_index_round_trips_and_is_none_when_unknown() {
        let m = StoreMetrics::new(2, fsync_histogram());
        assert_eq!(m.committed_index(0), None);
        set_committed(&m.committed[1], Some(0));
        assert_eq!(m.committed_index(1), Some(0));
        set_committed(&m.committed[1], Some(41));
        assert_eq!(m.committed_index(1), Some(41));
        assert_eq!(m.committed_index(7), None);
    }
}
