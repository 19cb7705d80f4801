//! What callers of the entity workload send and get back.

use perdure_types::EntityId;
use serde::{Deserialize, Serialize};
use serde_json::Value;

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
    /// Durably accepted: applied, or, when an orchestration's critical section holds the
    /// entity, put in its durable inbox to run after the release.
    Accepted,
    /// Its idempotency key was seen before: nothing was applied this time.
    Duplicate,
}

pub use perdure_types::api::{EntityPage, EntitySummary};
