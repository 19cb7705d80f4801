//! The entity workload on the partition host: per partition this node leads, a processor actor
//! that owns the partition's entity actors, and the inbox scan service.

use super::metrics::EntityMetrics;
use super::msg::{EntityMsg, ProcessorMsg};
use super::processor::Processor;
use super::registry::Registry;
use super::shared::Shared;
use crate::host::{Leader, PartitionService, Workload};
use crate::Error;
use futures::future::BoxFuture;
use perdure_types::config::EntitiesConfig;
use perdure_types::{EntityId, PartitionId, Target};
use ractor::{Actor, ActorRef};
use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The entity workload: what runs on each partition this node leads.
pub struct EntityWorkload {
    registry: Registry,
    config: EntitiesConfig,
    /// Per partition: its processor while this node leads it.
    processors: Vec<RwLock<Option<ActorRef<ProcessorMsg>>>>,
    /// Per partition: its actor counters.
    metrics: Vec<Arc<EntityMetrics>>,
    /// Work for remote workers (entity types with no Rust type, once served).
    remote: Arc<crate::remote::queue::WorkQueue>,
}

impl std::fmt::Debug for EntityWorkload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntityWorkload")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl EntityWorkload {
    /// The workload for `partitions` partitions.
    pub fn new(
        registry: Registry,
        config: EntitiesConfig,
        partitions: u32,
        remote: Arc<crate::remote::queue::WorkQueue>,
    ) -> Self {
        Self {
            remote,
            registry,
            config,
            processors: (0..partitions).map(|_| RwLock::new(None)).collect(),
            metrics: (0..partitions).map(|_| Default::default()).collect(),
        }
    }

    /// The entity types.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The entity settings.
    pub(crate) fn config(&self) -> &EntitiesConfig {
        &self.config
    }

    /// Whether entities of type `name` are served by remote workers: they are served and no
    /// Rust type of that name is registered (a Rust type keeps precedence).
    pub fn remote_type(&self, name: &str) -> bool {
        self.remote.config().is_some() && self.registry.get(name).is_err()
    }

    /// Longest an entity request waits for its partition (`entities.request_timeout_ms`).
    pub fn request_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.config.request_timeout_ms)
    }

    /// Counters of partition `p`'s entity actors.
    pub fn metrics(&self, p: PartitionId) -> Option<&EntityMetrics> {
        self.metrics.get(p as usize).map(|m| m.as_ref())
    }

    /// Entity actors active on this node now.
    pub fn active_actors(&self) -> u64 {
        self.metrics.iter().map(|m| m.active()).sum()
    }

    /// Partition `p`'s processor, while this node leads it.
    pub(crate) fn processor(&self, p: PartitionId) -> Option<ActorRef<ProcessorMsg>> {
        self.processors
            .get(p as usize)?
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_processor(&self, p: PartitionId, a: Option<ActorRef<ProcessorMsg>>) {
        if let Some(slot) = self.processors.get(p as usize) {
            *slot.write().unwrap_or_else(|e| e.into_inner()) = a;
        }
    }

    /// Routes `msg` for `entity` to partition `p`'s processor, if this node runs it.
    pub(crate) fn route(
        &self,
        p: PartitionId,
        entity: EntityId,
        msg: EntityMsg,
    ) -> Result<(), Error> {
        let Some(proc_) = self.processor(p) else {
            return Err(Error::Unavailable(format!(
                "partition {p} has no leader on this node"
            )));
        };
        proc_
            .cast(ProcessorMsg::Deliver(entity, msg))
            .map_err(|_| Error::Unavailable(format!("partition {p} is changing leadership; retry")))
    }
}

impl Workload for EntityWorkload {
    fn name(&self) -> &'static str {
        "entities"
    }

    fn lead(
        &self,
        leader: Arc<Leader>,
    ) -> BoxFuture<'_, Result<Vec<Box<dyn PartitionService>>, Error>> {
        Box::pin(async move {
            let p = leader.partition();
            let metrics = self.metrics.get(p as usize).cloned().unwrap_or_default();
            let shared = Arc::new(Shared {
                leader,
                registry: self.registry.clone(),
                config: self.config.clone(),
                metrics,
                keys_in_flight: Default::default(),
                remote: self.remote.clone(),
            });
            let (actor, _) = Actor::spawn(None, Processor, shared)
                .await
                .map_err(|e| Error::Unavailable(format!("partition {p}: processor: {e}")))?;
            self.set_processor(p, Some(actor.clone()));
            let scan: Box<dyn PartitionService> = Box::new(InboxScan { processor: actor });
            Ok(vec![scan])
        })
    }

    fn resign(&self, p: PartitionId) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let Some(actor) = self.processor(p) else {
                return;
            };
            self.set_processor(p, None);
            let _ = actor
                .stop_and_wait(
                    Some("leadership lost or shutdown".into()),
                    Some(Duration::from_secs(5)),
                )
                .await;
        })
    }

    fn wake(&self, p: PartitionId, targets: &[Target]) {
        if let Some(proc_) = self.processor(p) {
            let unique: BTreeSet<&EntityId> =
                targets.iter().filter_map(Target::as_entity).collect();
            for e in unique {
                let _ = proc_.cast(ProcessorMsg::Deliver(e.clone(), EntityMsg::ProcessInbox));
            }
        }
    }
}

/// Tells entities with pending inbox messages to run them: at the start of a leadership and
/// every 5 s, so nothing waits for a lost notification.
struct InboxScan {
    processor: ActorRef<ProcessorMsg>,
}

/// Most entities told per scan.
const SCAN_LIMIT: usize = 100_000;

impl PartitionService for InboxScan {
    fn name(&self) -> &'static str {
        "inbox scan"
    }

    fn run(self: Box<Self>, leader: Arc<Leader>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            loop {
                match leader.read(|s| s.inbox().targets(SCAN_LIMIT)).await {
                    Ok(targets) => {
                        // this workload's targets: entities
                        for e in targets.into_iter().filter_map(Target::into_entity) {
                            let _ = self
                                .processor
                                .cast(ProcessorMsg::Deliver(e, EntityMsg::ProcessInbox));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(partition = leader.partition(), error = %e, "inbox scan failed")
                    }
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        })
    }
}
