//! The entity types a node runs, by name, and the checks made before anything is written.

use super::entity::EntityType;
use super::{builtin, testing};
use crate::Error;
use perdure_types::config::EntitiesConfig;
use perdure_types::EntityId;
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

    /// The built-in types plus the test types ([`testing`]) when `test_types` is set.
    pub fn for_config(config: &EntitiesConfig) -> Self {
        let r = Self::builtin();
        if config.test_types {
            r.with(testing::Relay).with(testing::Probe)
        } else {
            r
        }
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
