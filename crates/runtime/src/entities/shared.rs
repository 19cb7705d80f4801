//! What every entity actor of one partition leadership shares.

use super::metrics::EntityMetrics;
use super::registry::Registry;
use crate::host::Leader;
use perdure_types::config::EntitiesConfig;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// What every entity actor of one partition leadership shares.
pub(crate) struct Shared {
    /// The leadership: partition, term (every command is fenced to it), proposer.
    pub leader: Arc<Leader>,
    /// The entity types.
    pub registry: Registry,
    /// Passivation, batching and idempotency settings.
    pub config: EntitiesConfig,
    /// The partition's actor counters.
    pub metrics: Arc<EntityMetrics>,
    /// New idempotency keys in batches proposed and not yet answered: counted against
    /// `entities.max_idempotency_keys` beside the ones the partition remembers.
    pub keys_in_flight: AtomicU64,
}
