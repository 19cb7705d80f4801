//! The entity runtime: durable entities on a node's partitions.
//!
//! [`Runtime`] is the facade the HTTP API (and later gRPC) calls: signal, call, read, list.
//! Behind it, on each partition this node leads, a partition processor (a ractor actor) owns that
//! partition's entity actors: one per active entity id, activated on its first message,
//! passivated when idle, running one operation at a time. An entity actor runs the operations
//! waiting for it in order, each on the state the previous one left, then hands their combined
//! effects (state, idempotency keys, signals) to the partition's proposer, which batches commands
//! of many entities into one Raft entry. Callers are answered only after that entry commits.
//!
//! Signals between entities travel through the sender partition's durable outbox and the
//! receiver's inbox (sequence numbers make delivery exactly once and in order); scheduled signals
//! are durable timers that fire into the same path.

pub mod builtin;
pub mod entity;
pub mod error;

pub use error::Error;

use entity::EntityType;
use perdure_cluster::Partitions;
use perdure_types::config::EntitiesConfig;
use perdure_types::EntityId;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The entity types a node runs, by name.
#[derive(Clone, Default)]
pub struct Registry {
    types: BTreeMap<&'static str, Arc<dyn EntityType>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.types.keys()).finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The built-in types: counter, register, list, aggregator.
    pub fn builtin() -> Self {
        Self::new()
            .with(builtin::Counter)
            .with(builtin::Register)
            .with(builtin::List)
            .with(builtin::Aggregator)
    }

    /// Adds an entity type (replacing one of the same name).
    pub fn with(mut self, t: impl EntityType) -> Self {
        self.types.insert(t.name(), Arc::new(t));
        self
    }

    /// The type named `name` (lower-cased).
    pub fn get(&self, name: &str) -> Result<&Arc<dyn EntityType>, Error> {
        self.types
            .get(name.to_ascii_lowercase().as_str())
            .ok_or_else(|| Error::UnknownEntityType {
                name: name.to_string(),
                known: self.names().join(", "),
            })
    }

    /// The registered names.
    pub fn names(&self) -> Vec<&'static str> {
        self.types.keys().copied().collect()
    }

    /// Checks that `entity`'s type exists, has `operation`, and accepts `input`: the checks done
    /// before anything is written.
    pub fn check(
        &self,
        entity: &EntityId,
        operation: &str,
        input: Option<&Value>,
    ) -> Result<&Arc<dyn EntityType>, Error> {
        let t = self.get(entity.name())?;
        if !t.operations().contains(&operation) {
            return Err(Error::UnknownOperation {
                entity_type: t.name().to_string(),
                operation: operation.to_string(),
                known: t.operations().join(", "),
            });
        }
        t.validate(operation, input).map_err(|e| Error::BadInput {
            entity_type: t.name().to_string(),
            operation: operation.to_string(),
            reason: e.to_string(),
        })?;
        Ok(t)
    }
}

/// One signal: run `operation` on `entity` with `input`, exactly once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignalRequest {
    /// The entity.
    pub entity: EntityId,
    /// The operation.
    pub operation: String,
    /// Its input.
    pub input: Option<Value>,
    /// An idempotency key: a retry with the same key for the same entity is acknowledged again
    /// but applied once (within the configured window).
    pub idempotency_key: Option<String>,
}

/// How a signal was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignalOutcome {
    /// Durably accepted (and, on this path, already applied).
    Accepted,
    /// Its idempotency key was seen before: nothing was applied this time.
    Duplicate,
}

/// One entity in a listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntitySummary {
    /// The entity's key.
    pub key: String,
    /// Its committed state.
    pub state: Value,
}

/// A page of entities of one type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityPage {
    /// Entities in (partition, key) order.
    pub entities: Vec<EntitySummary>,
    /// Pass back to get the next page; `None` on the last page.
    pub continuation: Option<String>,
}

/// The entity runtime of one node.
pub struct Runtime {
    partitions: Arc<Partitions>,
    registry: Registry,
    config: EntitiesConfig,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Starts the runtime over a node's partitions.
    pub async fn start(
        partitions: Arc<Partitions>,
        registry: Registry,
        config: EntitiesConfig,
    ) -> Result<Self, Error> {
        Ok(Self {
            partitions,
            registry,
            config,
        })
    }

    /// The entity types.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The partitions underneath.
    pub fn partitions(&self) -> &Arc<Partitions> {
        &self.partitions
    }

    /// Signals an entity; returns once the signal is durable (and applied).
    pub async fn signal(&self, req: SignalRequest) -> Result<SignalOutcome, Error> {
        let _ = (&req, &self.config);
        Err(Error::Unavailable(
            "the entity runtime is being built".into(),
        ))
    }

    /// Signals many entities; one result per request, in order.
    pub async fn signal_batch(
        &self,
        reqs: Vec<SignalRequest>,
    ) -> Vec<Result<SignalOutcome, Error>> {
        futures::future::join_all(reqs.into_iter().map(|r| self.signal(r))).await
    }

    /// Runs an operation and returns its result once committed.
    pub async fn call(
        &self,
        entity: EntityId,
        operation: &str,
        input: Option<Value>,
    ) -> Result<Value, Error> {
        let _ = (entity, operation, input);
        Err(Error::Unavailable(
            "the entity runtime is being built".into(),
        ))
    }

    /// The committed state of an entity (linearizable), `None` if it does not exist.
    pub async fn get(&self, entity: &EntityId) -> Result<Option<Value>, Error> {
        let _ = entity;
        Err(Error::Unavailable(
            "the entity runtime is being built".into(),
        ))
    }

    /// A page of entities of type `name`.
    pub async fn list(
        &self,
        name: &str,
        continuation: Option<&str>,
        limit: usize,
    ) -> Result<EntityPage, Error> {
        let _ = (name, continuation, limit);
        Err(Error::Unavailable(
            "the entity runtime is being built".into(),
        ))
    }

    /// Stops every actor; in-flight requests get [`Error::Unavailable`].
    pub async fn shutdown(&self) {}
}
