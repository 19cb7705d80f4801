//! Stream ingestion: records of Kafka-protocol topics and NATS JetStream streams applied to
//! entities exactly once.
//!
//! - [`source`]: the [`source::Source`] abstraction (list partitions, read after a position,
//!   end position) and its adapters: [`source::nats`] (NATS JetStream, async-nats),
//!   [`source::kafka`] (the Kafka protocol, rskafka), [`source::memory`] (tests), chosen by
//!   [`source::Brokers`] from a subscription's definition.
//! - `mapping.rs`: a record → an entity operation, or a dead letter's reason.
//! - `consumer.rs`: one source partition's consumer on its home partition's leader: read,
//!   map, send in order per target partition, checkpoint (the exactly-once argument is there).
//! - `workload.rs`: [`IngestWorkload`], the supervisors that place consumers on the leaders.
//! - `api.rs`: [`Ingest`], the facade (subscriptions, their status, dead letters) and the
//!   peer request that asks home partitions' leaders.
//! - `metrics.rs`, `status.rs`: what a node reports.
//!
//! Module arrows: api → workload → consumer → mapping, source, metrics, status.

mod api;
mod consumer;
mod mapping;
pub mod metrics;
pub mod source;
pub mod status;
mod workload;

pub use api::{Ingest, IngestError, PartitionReport, SubscriptionStatus};
pub use metrics::IngestMetrics;
pub use status::ConsumerStatus;
pub use workload::IngestWorkload;
