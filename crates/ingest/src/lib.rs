//! Stream ingestion: records of Kafka-protocol topics and NATS JetStream streams applied to
//! entities exactly once.
//!
//! - [`source`]: the [`source::Source`] abstraction (list partitions, read after a position,
//!   end position) and its adapters: [`source::nats`] (NATS JetStream, async-nats),
//!   [`source::kafka`] (the Kafka protocol, rskafka), [`source::memory`] (tests), chosen by
//!   [`source::Brokers`] from a subscription's definition.

pub mod source;
