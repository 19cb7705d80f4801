//! Stream ingestion's Prometheus metrics, registered in the node's registry:
//!
//! - `perdure_ingest_records_total{subscription,result}`: records by result (`applied`,
//!   `duplicate`, `failed`, `dead_letter`), counted by the consumer of their source partition;
//! - `perdure_ingest_lag_records{subscription,source_partition}`: records the source holds past
//!   the checkpoint, per source partition consumed on this node;
//! - `perdure_ingest_checkpoint_age_seconds{subscription,source_partition}`: since the consumer
//!   last wrote its checkpoint (or found nothing to write);
//! - `perdure_ingest_commit_latency_seconds{subscription}`: from the broker's record timestamp to
//!   the commit of its operation;
//! - `perdure_ingest_consumers{subscription}`: consumers running on this node;
//! - `perdure_ingest_source_errors_total{subscription,kind}`: failed source calls (`unreachable`,
//!   `not_found`, `auth`, `out_of_range`, `other`, `reset`).
//!
//! Labels are bounded: subscriptions (at most 256), their source partitions, fixed results and
//! kinds. A consumer removes its own series when it stops.

use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
};

/// The results of a record (the `result` label).
pub const RESULTS: [&str; 4] = ["applied", "duplicate", "failed", "dead_letter"];

const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

/// The metrics.
#[derive(Debug, Clone)]
pub struct IngestMetrics {
    pub(crate) records: IntCounterVec,
    pub(crate) lag: IntGaugeVec,
    pub(crate) checkpoint_age: GaugeVec,
    pub(crate) latency: HistogramVec,
    pub(crate) consumers: IntGaugeVec,
    pub(crate) errors: IntCounterVec,
}

impl IngestMetrics {
    /// The metrics, registered in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self::unregistered()?;
        m.register(registry)?;
        Ok(m)
    }

    /// Registers these metrics (made before the node's registry was) in `registry`.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.records.clone()))?;
        registry.register(Box::new(self.lag.clone()))?;
        registry.register(Box::new(self.checkpoint_age.clone()))?;
        registry.register(Box::new(self.latency.clone()))?;
        registry.register(Box::new(self.consumers.clone()))?;
        registry.register(Box::new(self.errors.clone()))?;
        Ok(())
    }

    /// The metrics, in no registry (metrics disabled, tests).
    pub fn unregistered() -> prometheus::Result<Self> {
        Ok(Self {
            records: IntCounterVec::new(
                Opts::new(
                    "perdure_ingest_records_total",
                    "Stream records by subscription and result (applied, duplicate, failed, dead_letter).",
                ),
                &["subscription", "result"],
            )?,
            lag: IntGaugeVec::new(
                Opts::new(
                    "perdure_ingest_lag_records",
                    "Records the source holds past the checkpoint, per source partition consumed on this node.",
                ),
                &["subscription", "source_partition"],
            )?,
            checkpoint_age: GaugeVec::new(
                Opts::new(
                    "perdure_ingest_checkpoint_age_seconds",
                    "Seconds since the consumer of a source partition last checkpointed (or had nothing to checkpoint).",
                ),
                &["subscription", "source_partition"],
            )?,
            latency: HistogramVec::new(
                HistogramOpts::new(
                    "perdure_ingest_commit_latency_seconds",
                    "From a record's broker timestamp to the commit of its operation.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["subscription"],
            )?,
            consumers: IntGaugeVec::new(
                Opts::new(
                    "perdure_ingest_consumers",
                    "Consumers (source partitions) running on this node.",
                ),
                &["subscription"],
            )?,
            errors: IntCounterVec::new(
                Opts::new(
                    "perdure_ingest_source_errors_total",
                    "Failed source calls by subscription and kind.",
                ),
                &["subscription", "kind"],
            )?,
        })
    }
}
