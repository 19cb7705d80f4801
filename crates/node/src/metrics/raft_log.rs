//! The weight of the Raft logs held in memory and what their byte bounds asked for, read at
//! scrape time from the log stores' counters (`perdure_storage::log_memory`).

use super::scrape::{gauge, gauge_vec, mirror};
use perdure_cluster::Partitions;
use perdure_storage::log_memory::BoundReason;
use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// Gauges and counters of the logs held in memory.
#[derive(Debug)]
pub(super) struct RaftLogMetrics {
    partition_bytes: IntGaugeVec,
    node_bytes: IntGauge,
    span_bytes: IntGauge,
    snapshots: IntCounterVec,
    purges: IntCounterVec,
    /// `"0"`, `"1"`, ...: the partition label values, made once.
    labels: Vec<String>,
}

fn counter_vec(r: &Registry, name: &str, help: &str) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), &["reason"])?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

impl RaftLogMetrics {
    /// Registers the metrics in `r`, one gauge per partition.
    pub(super) fn new(r: &Registry, partitions: u32) -> prometheus::Result<Self> {
        Ok(Self {
            partition_bytes: gauge_vec(
                r,
                "perdure_raft_log_bytes",
                "Bytes of Raft log entries each partition holds in memory on this node (payload weight, from the last purge to the log end).",
                &["partition"],
            )?,
            node_bytes: gauge(
                r,
                "perdure_raft_log_node_bytes",
                "Bytes of Raft log entries all groups of this node hold in memory (the metadata group included).",
            )?,
            span_bytes: gauge(
                r,
                "perdure_raft_log_span_bytes",
                "Bytes of log written on this node since the oldest entry still held: about what the write-ahead log keeps and a restart reads back (bounded by raft.max_log_memory_bytes).",
            )?,
            snapshots: counter_vec(
                r,
                "perdure_raft_log_snapshots_triggered_total",
                "Snapshots asked for because a log's bytes reached a bound (reason: partition_log_bytes, node_log_bytes).",
            )?,
            purges: counter_vec(
                r,
                "perdure_raft_log_purges_triggered_total",
                "Log purges asked for because a log's bytes reached a bound (reason: partition_log_bytes, node_log_bytes).",
            )?,
            labels: (0..partitions).map(|p| p.to_string()).collect(),
        })
    }

    /// Reads the log stores' counters.
    pub(super) fn refresh(&self, partitions: &Partitions) {
        let memory = partitions.store_metrics().log_memory;
        for (p, label) in self.labels.iter().enumerate() {
            self.partition_bytes
                .with_label_values(&[label])
                .set(memory.group_bytes(p as u32) as i64);
        }
        self.node_bytes.set(memory.total_bytes() as i64);
        self.span_bytes.set(memory.span() as i64);
        for reason in BoundReason::ALL {
            let l = [reason.label()];
            mirror(
                &self.snapshots.with_label_values(&l),
                memory.snapshots_triggered(reason),
            );
            mirror(
                &self.purges.with_label_values(&l),
                memory.purges_triggered(reason),
            );
        }
    }
}
