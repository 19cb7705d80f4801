//! Stream ingestion: records of Kafka-protocol topics and NATS JetStream streams applied to
//! entities exactly once.
//!
//! - [`source`]: the [`source::Source`] abstraction (list partitions, read after a position,
//!   end position) and its adapters.

pub mod source;
