//! What a message, timer or idempotency id is addressed to: an entity or an orchestration
//! instance. Inboxes, outboxes, timers and remembered ids carry a [`Target`], so the host routes
//! and stores them without knowing any workload's message format.

use crate::ids::{EntityId, IdError, PartitionId};
use crate::partition::partition_of_canonical;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest orchestration instance id, in bytes (Durable Functions' limit).
pub const MAX_INSTANCE_ID_LEN: usize = 256;

/// Why an instance id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstanceIdError {
    /// The id is empty.
    #[error("instance id is empty")]
    Empty,
    /// The id is longer than [`MAX_INSTANCE_ID_LEN`].
    #[error("instance id is {0} bytes long; the limit is {MAX_INSTANCE_ID_LEN}")]
    TooLong(usize),
    /// The id starts with `@`, which entity ids (`@name@key`) reserve.
    #[error("instance id may not start with '@' (reserved for entity ids)")]
    ReservedPrefix,
    /// The id holds a control character (NUL, newline, ...), which storage keys reserve.
    #[error("instance id may not hold control characters")]
    ControlChar,
}

/// An orchestration instance's id, chosen by the caller or generated. Case-sensitive.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct InstanceId(String);

impl InstanceId {
    /// Validates and builds an instance id.
    pub fn new(id: &str) -> Result<Self, InstanceIdError> {
        if id.is_empty() {
            return Err(InstanceIdError::Empty);
        }
        if id.len() > MAX_INSTANCE_ID_LEN {
            return Err(InstanceIdError::TooLong(id.len()));
        }
        if id.starts_with('@') {
            return Err(InstanceIdError::ReservedPrefix);
        }
        if id.chars().any(char::is_control) {
            return Err(InstanceIdError::ControlChar);
        }
        Ok(Self(id.to_string()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a canonical target string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// An entity id (`@name@key`) that is not valid.
    #[error(transparent)]
    Entity(#[from] IdError),
    /// An instance id that is not valid.
    #[error(transparent)]
    Instance(#[from] InstanceIdError),
}

/// The addressee of a message, timer or idempotency id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Target {
    /// A durable entity.
    Entity(EntityId),
    /// An orchestration instance.
    Instance(InstanceId),
}

impl Target {
    /// The canonical string: `@name@key` for an entity, the instance id for an instance (which
    /// never starts with `@`), as Durable Functions writes them. The input of the partition
    /// function and of storage keys.
    pub fn canonical(&self) -> String {
        match self {
            Target::Entity(e) => e.canonical(),
            Target::Instance(i) => i.0.clone(),
        }
    }

    /// Parses [`Target::canonical`]'s form back.
    pub fn from_canonical(s: &str) -> Result<Self, TargetError> {
        if s.starts_with('@') {
            Ok(Target::Entity(EntityId::from_canonical(s)?))
        } else {
            Ok(Target::Instance(InstanceId::new(s)?))
        }
    }

    /// The partition that owns this target in a cluster of `partitions` partitions (entities
    /// and instances share the pinned function, over their canonical strings).
    pub fn partition(&self, partitions: u32) -> PartitionId {
        partition_of_canonical(&self.canonical(), partitions)
    }

    /// The entity, if this is one.
    pub fn as_entity(&self) -> Option<&EntityId> {
        match self {
            Target::Entity(e) => Some(e),
            Target::Instance(_) => None,
        }
    }

    /// The entity, if this is one (owned).
    pub fn into_entity(self) -> Option<EntityId> {
        match self {
            Target::Entity(e) => Some(e),
            Target::Instance(_) => None,
        }
    }
}

impl From<EntityId> for Target {
    fn from(e: EntityId) -> Self {
        Target::Entity(e)
    }
}

impl From<InstanceId> for Target {
    fn from(i: InstanceId) -> Self {
        Target::Instance(i)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Entity(e) => e.fmt(f),
            Target::Instance(i) => i.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms_round_trip_and_cannot_collide() {
        let e = Target::Entity(EntityId::new("Counter", "a@b").unwrap());
        let i = Target::Instance(InstanceId::new("order-42").unwrap());
        for t in [&e, &i] {
            assert_eq!(&Target::from_canonical(&t.canonical()).unwrap(), t);
        }
        assert_eq!(e.canonical(), "@counter@a@b");
        assert_eq!(
            InstanceId::new("@counter@a"),
            Err(InstanceIdError::ReservedPrefix)
        );
        assert_eq!(InstanceId::new("a\0b"), Err(InstanceIdError::ControlChar));
        assert_eq!(InstanceId::new(""), Err(InstanceIdError::Empty));
        assert!(InstanceId::new(&"x".repeat(MAX_INSTANCE_ID_LEN + 1)).is_err());
    }

    #[test]
    fn an_entity_target_lives_on_its_entitys_partition() {
        let e = EntityId::new("counter", "k7").unwrap();
        for n in [1, 4, 16, 64] {
            assert_eq!(
                Target::Entity(e.clone()).partition(n),
                crate::partition::partition_of(&e, n)
            );
        }
    }
}
