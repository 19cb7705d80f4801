//! perdure's runtime: the partition host and the workloads it runs.
//!
//! - [`host`]: per-partition machinery that is not about any one workload: the leader loop
//!   and its read barrier, the proposer, routing to the local leader or forwarding to a remote
//!   one, and leader-only services (outbox delivery, timers, idempotency-id expiry).
//! - [`entities`]: durable entities, one workload of the host (actors, processor, programming
//!   model, built-in types, registry, the [`Entities`] facade).
//! - [`Runtime`]: a node's host with its workloads, built and started together.

mod chaos_bug;
pub mod entities;
pub mod error;
pub mod host;
pub mod orchestrations;

pub use entities::{
    builtin, entity, testing, Entities, EntityMetrics, EntityPage, EntitySummary, Passivation,
    Registry, SignalOutcome, SignalRequest, MAX_PAGE,
};
pub use error::Error;
pub use host::{Host, HostMetrics, LEADER_WAIT};

use perdure_cluster::Partitions;
use perdure_types::config::EntitiesConfig;
use std::sync::Arc;

/// A node's runtime: the partition host with the entity workload.
#[derive(Debug)]
pub struct Runtime {
    host: Arc<Host>,
    entities: Arc<Entities>,
}

impl Runtime {
    /// Starts the host over a node's partitions with the entity workload: a proposer per
    /// partition and a leader loop that runs the workloads and services whenever this node leads
    /// the partition.
    pub async fn start(
        partitions: Arc<Partitions>,
        registry: Registry,
        config: EntitiesConfig,
    ) -> Result<Self, Error> {
        chaos_bug::stale_reads(); // read the chaos-test switch once, at start-up (logs when on)
        let workload = Arc::new(entities::EntityWorkload::new(
            registry,
            config,
            partitions.count(),
        ));
        let host = Host::builder(partitions)
            .workload(workload.clone())
            .start()?;
        let entities = Arc::new(Entities::new(host.router().clone(), workload)?);
        Ok(Self { host, entities })
    }

    /// The entity facade.
    pub fn entities(&self) -> &Arc<Entities> {
        &self.entities
    }

    /// The partition host.
    pub fn host(&self) -> &Arc<Host> {
        &self.host
    }

    /// The partitions underneath.
    pub fn partitions(&self) -> &Arc<Partitions> {
        self.host.partitions()
    }

    /// Stops every partition's workloads and services; requests in flight get
    /// [`Error::Unavailable`].
    pub async fn shutdown(&self) {
        self.host.shutdown().await;
    }
}
