//! perdure's runtime: the partition host and the workloads it runs.
//!
//! - [`host`]: per-partition machinery that is not about any one workload: the leader loop
//!   and its read barrier, the proposer, routing to the local leader or forwarding to a remote
//!   one, and leader-only services (outbox delivery, timers, idempotency-id expiry).
//! - [`entities`]: durable entities, one workload of the host (actors, processor, programming
//!   model, built-in types, registry, the [`Entities`] facade).
//! - [`orchestrations`]: durable orchestrations, the second workload (live instances, turns,
//!   the programming model, in-process activities, the [`Orchestrations`] facade).
//! - [`Runtime`]: a node's host with its workloads, built and started together.

mod chaos_bug;
pub mod entities;
pub mod error;
pub mod host;
pub mod orchestrations;
pub mod remote;

pub use entities::{
    builtin, entity, testing, Entities, EntityMetrics, EntityPage, EntitySummary, IngestRecord,
    Passivation, RecordOutcome, Registry, SignalOutcome, SignalRequest, MAX_PAGE,
};
pub use error::Error;
pub use host::{Host, HostMetrics, LEADER_WAIT};
pub use orchestrations::model::OrchestrationRegistry;
pub use orchestrations::{OrchestrationWorkload, Orchestrations};

use perdure_cluster::Partitions;
use perdure_types::config::{EntitiesConfig, OrchestrationsConfig};
use std::sync::Arc;

/// What a node runs: its entity types, and its orchestrators and activities.
#[derive(Debug, Clone, Default)]
pub struct Registries {
    /// The entity types.
    pub entities: Registry,
    /// The orchestrators and activities.
    pub orchestrations: OrchestrationRegistry,
}

/// A node's runtime: the partition host with the entity and orchestration workloads.
#[derive(Debug)]
pub struct Runtime {
    host: Arc<Host>,
    entities: Arc<Entities>,
    orchestrations: Arc<Orchestrations>,
}

impl Runtime {
    /// Starts the host over a node's partitions with the entity workload only (no
    /// orchestrators registered).
    pub async fn start(
        partitions: Arc<Partitions>,
        registry: Registry,
        config: EntitiesConfig,
    ) -> Result<Self, Error> {
        let registries = Registries {
            entities: registry,
            orchestrations: OrchestrationRegistry::default(),
        };
        Self::start_with(
            partitions,
            registries,
            config,
            OrchestrationsConfig::default(),
        )
        .await
    }

    /// Starts the host over a node's partitions with both workloads: a proposer per partition
    /// and a leader loop that runs the workloads and services whenever this node leads the
    /// partition.
    pub async fn start_with(
        partitions: Arc<Partitions>,
        registries: Registries,
        config: EntitiesConfig,
        orchestrations: OrchestrationsConfig,
    ) -> Result<Self, Error> {
        Self::start_serving(partitions, registries, config, orchestrations, None).await
    }

    /// [`Runtime::start_with`], serving remote workers from the start when `remote` is given
    /// (orchestrators, activities and entity types without Rust code run on them: `remote/`).
    pub async fn start_serving(
        partitions: Arc<Partitions>,
        registries: Registries,
        config: EntitiesConfig,
        orchestrations: OrchestrationsConfig,
        remote: Option<remote::RemoteConfig>,
    ) -> Result<Self, Error> {
        Self::start_with_workloads(
            partitions,
            registries,
            config,
            orchestrations,
            remote,
            Vec::new(),
        )
        .await
    }

    /// [`Runtime::start_serving`] with more workloads beside entities and orchestrations
    /// (stream ingestion, `perdure-ingest`): each runs on every partition this node leads,
    /// started after the built-in ones.
    pub async fn start_with_workloads(
        partitions: Arc<Partitions>,
        registries: Registries,
        config: EntitiesConfig,
        orchestrations: OrchestrationsConfig,
        remote: Option<remote::RemoteConfig>,
        extra: Vec<Arc<dyn host::Workload>>,
    ) -> Result<Self, Error> {
        chaos_bug::stale_reads(); // read the chaos-test switch once, at start-up (logs when on)
        let request_timeout = std::time::Duration::from_millis(config.request_timeout_ms);
        // work for remote workers, issued by both workloads (served once enabled)
        let queue = Arc::new(remote::queue::WorkQueue::new(partitions.node_id()));
        if let Some(c) = remote {
            // before any leadership runs: no instance or entity starts without knowing it
            queue.enable(c);
        }
        let remote = queue;
        let workload = Arc::new(entities::EntityWorkload::new(
            registries.entities,
            config,
            partitions.count(),
            remote.clone(),
        ));
        let orch_workload = Arc::new(OrchestrationWorkload::new(
            registries.orchestrations,
            orchestrations,
            partitions.count(),
            remote,
        ));
        let mut builder = Host::builder(partitions)
            .workload(workload.clone())
            .workload(orch_workload.clone());
        for w in extra {
            builder = builder.workload(w);
        }
        let host = builder.start()?;
        let entities = Arc::new(Entities::new(host.router().clone(), workload)?);
        let orchestrations = Arc::new(Orchestrations::new(
            host.router().clone(),
            orch_workload,
            request_timeout,
        )?);
        Ok(Self {
            host,
            entities,
            orchestrations,
        })
    }

    /// The entity facade.
    pub fn entities(&self) -> &Arc<Entities> {
        &self.entities
    }

    /// The orchestration facade.
    pub fn orchestrations(&self) -> &Arc<Orchestrations> {
        &self.orchestrations
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
