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
    /// Work for remote workers (entity types with no Rust type, once served).
    pub remote: Arc<crate::remote::queue::WorkQueue>,
}

impl Shared {
    /// Whether entities of type `name` are served by remote workers.
    pub fn remote_type(&self, name: &str) -> bool {
        self.remote.config().is_some() && self.registry.get(name).is_err()
    }
}
