//! Where records come from: the [`Source`] abstraction and its adapters.
//!
//! A source is read by position, never through broker consumer groups: perdure places its
//! consumers itself (one per source partition, on its home partition's leader) and keeps the
//! position in its own Raft state. So a source only lists its partitions, reads records after a
//! position, tells the end position (for lag), and may be told a position was checkpointed (for
//! the broker's retention and other tools, never read back).
//!
//! Positions start at 1 and increase within a source partition: a Kafka offset plus one, a
//! JetStream stream sequence. "After 0" reads from the first record the source holds.

use futures::future::BoxFuture;
use perdure_types::subscription::SourceSpec;
use std::sync::Arc;
use std::time::Duration;

pub mod kafka;
pub mod memory;
pub mod nats;

/// One record of a source partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its position (from 1, increasing within its source partition; gaps allowed).
    pub position: u64,
    /// Its key (Kafka), if any.
    pub key: Option<Vec<u8>>,
    /// Its headers (Kafka headers, NATS message headers), in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Its value (payload).
    pub value: Vec<u8>,
    /// When the broker stored it (ms since the epoch), if it says.
    pub timestamp_ms: Option<u64>,
}

impl Record {
    /// Bytes this record holds in memory, about.
    pub fn bytes(&self) -> usize {
        64 + self.key.as_ref().map_or(0, Vec::len)
            + self.value.len()
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len() + 16)
                .sum::<usize>()
    }
}

/// What a source is made of now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceInfo {
    /// Its partitions (Kafka partition numbers; `[0]` for a JetStream stream).
    pub partitions: Vec<u32>,
    /// What identifies this incarnation of the source (a Kafka topic id, a stream's creation
    /// time): a source deleted and created again has another one. Empty when the broker cannot
    /// tell.
    pub incarnation: String,
}

/// Why a source could not be read. Each says what to check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The broker could not be reached (or the connection broke): retried with backoff.
    #[error("broker unreachable: {0}")]
    Unreachable(String),
    /// The topic or stream does not exist (deleted, or never created).
    #[error("not found: {0}")]
    NotFound(String),
    /// The broker refused our credentials.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The position asked for is no longer (or not yet) held by the source: retention removed
    /// it, or the source was recreated and is behind the checkpoint.
    #[error("position out of range: {0}")]
    OutOfRange(String),
    /// Anything else the broker or client reported.
    #[error("{0}")]
    Other(String),
}

/// A connected source (one subscription's topic or stream). Cheap to share; safe to call from
/// several consumers at once (one per source partition).
pub trait Source: Send + Sync + 'static {
    /// Its partitions and incarnation now.
    fn info(&self) -> BoxFuture<'_, Result<SourceInfo, SourceError>>;

    /// Records of `partition` with positions above `after`, in position order: at most `max`
    /// records and about `max_bytes` bytes (at least one record when any is there). Waits up to
    /// `wait` for a first record; an empty answer means none arrived in that time.
    fn read(
        &self,
        partition: u32,
        after: u64,
        max: usize,
        max_bytes: usize,
        wait: Duration,
    ) -> BoxFuture<'_, Result<Vec<Record>, SourceError>>;

    /// The position of the last record `partition` holds (0 when empty): the end for lag.
    fn end(&self, partition: u32) -> BoxFuture<'_, Result<u64, SourceError>>;

    /// The first position `partition` still holds (retention may have removed older records).
    fn start(&self, partition: u32) -> BoxFuture<'_, Result<u64, SourceError>>;

    /// Every record of `partition` up to `position` was applied: the broker may be told (Kafka
    /// offset commit under the group `perdure-NAME`, a JetStream ack) for its retention and other
    /// tools. Best effort; never read back. The default does nothing.
    fn committed(&self, partition: u32, position: u64) -> BoxFuture<'_, Result<(), SourceError>> {
        let _ = (partition, position);
        Box::pin(async { Ok(()) })
    }
}

/// Opens sources from their definitions: [`Brokers`] for the real adapters; tests hand the
/// workload another one (e.g. [`memory::MemoryConnector`]).
pub trait Connector: Send + Sync + 'static {
    /// Connects to the source of subscription `name`.
    fn connect<'a>(
        &'a self,
        name: &'a str,
        spec: &'a SourceSpec,
    ) -> BoxFuture<'a, Result<Arc<dyn Source>, SourceError>>;
}

/// The real adapters: Kafka protocol (`kafka.rs`) and NATS JetStream (`nats.rs`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Brokers;

impl Connector for Brokers {
    fn connect<'a>(
        &'a self,
        name: &'a str,
        spec: &'a SourceSpec,
    ) -> BoxFuture<'a, Result<Arc<dyn Source>, SourceError>> {
        let _ = name;
        Box::pin(async move {
            Ok(match spec {
                SourceSpec::Nats(s) => {
                    Arc::new(nats::JetStreamSource::connect(s).await?) as Arc<dyn Source>
                }
                SourceSpec::Kafka(s) => Arc::new(kafka::KafkaTopicSource::connect(s).await?),
            })
        })
    }
}
