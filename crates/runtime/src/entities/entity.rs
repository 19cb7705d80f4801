//! The programming model: how an entity type is written.
//!
//! An entity type implements [`EntityType`]. For each operation the runtime calls
//! [`EntityType::execute`] with a [`Context`] that shows the operation's name and input and the
//! entity's current state, and collects what the operation does: set or delete the state, return
//! a value, signal other entities now or later. The runtime commits all of it atomically through
//! the partition's Raft log, or none of it when the operation fails. Operations of one entity run
//! one at a time, each seeing the state the previous one left.
//!
//! ```
//! use perdure_runtime::entity::{Context, EntityType, OperationError};
//! use serde_json::{json, Value};
//!
//! /// A greeting book: `sign` a name, `count` the signatures.
//! struct Book;
//!
//! impl EntityType for Book {
//!     fn name(&self) -> &'static str { "book" }
//!     fn operations(&self) -> &'static [&'static str] { &["sign", "count"] }
//!     fn execute(&self, ctx: &mut Context<'_>) -> Result<Option<Value>, OperationError> {
//!         let mut names: Vec<String> = ctx.state_or_default()?;
//!         match ctx.operation() {
//!             "sign" => {
//!                 names.push(ctx.input_as::<String>()?);
//!                 ctx.set_state(&names)?;
//!                 Ok(None)
//!             }
//!             _ => Ok(Some(json!(names.len()))),
//!         }
//!     }
//! }
//! ```

use perdure_types::command::Millis;
use perdure_types::EntityId;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// An operation failed. Its state change and signals are discarded; the message reaches a caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OperationError {
    /// The input is not what the operation takes (also checked before a signal is accepted, by
    /// [`EntityType::validate`]).
    #[error("{0}")]
    BadInput(String),
    /// The operation refused to proceed.
    #[error("{0}")]
    Failed(String),
}

/// A signal an operation sends.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingSignal {
    /// The receiving entity.
    pub target: EntityId,
    /// Its operation.
    pub operation: String,
    /// The input.
    pub input: Option<Value>,
    /// Deliver no earlier than this time (milliseconds since the epoch); `None` is now.
    pub at: Option<Millis>,
}

/// What an operation sees and does.
#[derive(Debug)]
pub struct Context<'a> {
    entity: &'a EntityId,
    operation: &'a str,
    input: Option<&'a Value>,
    /// The state before the operation (borrowed: a failed operation leaves it untouched).
    state: Option<&'a Value>,
    /// The replacement set by the operation: `Some(None)` deletes.
    new_state: Option<Option<Value>>,
    signals: Vec<OutgoingSignal>,
    now: Millis,
}

impl<'a> Context<'a> {
    /// A context for one operation on `entity` whose current state is `state`.
    pub fn new(
        entity: &'a EntityId,
        operation: &'a str,
        input: Option<&'a Value>,
        state: Option<&'a Value>,
        now: Millis,
    ) -> Self {
        Self {
            entity,
            operation,
            input,
            state,
            new_state: None,
            signals: Vec::new(),
            now,
        }
    }

    /// The entity's id.
    pub fn entity(&self) -> &EntityId {
        self.entity
    }
    /// The operation's name (as sent; compare lower-case names).
    pub fn operation(&self) -> &str {
        self.operation
    }
    /// The raw input.
    pub fn input(&self) -> Option<&Value> {
        self.input
    }
    /// The input as `T` (a missing input is JSON `null`).
    pub fn input_as<T: DeserializeOwned>(&self) -> Result<T, OperationError> {
        let v = self.input.cloned().unwrap_or(Value::Null);
        serde_json::from_value(v).map_err(|e| OperationError::BadInput(e.to_string()))
    }
    /// The current state; `None` for an entity that does not exist yet (or was deleted).
    pub fn state(&self) -> Option<&Value> {
        match &self.new_state {
            Some(s) => s.as_ref(),
            None => self.state,
        }
    }
    /// The current state as `T`, or `T::default()` for a new entity.
    pub fn state_or_default<T: DeserializeOwned + Default>(&self) -> Result<T, OperationError> {
        match self.state() {
            None => Ok(T::default()),
            Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
                OperationError::Failed(format!("stored state does not fit this entity type: {e}"))
            }),
        }
    }
    /// Replaces the state.
    pub fn set_state<T: Serialize>(&mut self, state: &T) -> Result<(), OperationError> {
        let v = serde_json::to_value(state)
            .map_err(|e| OperationError::Failed(format!("state cannot be stored: {e}")))?;
        self.new_state = Some(Some(v));
        Ok(())
    }
    /// Deletes the entity: its state is removed once the operation commits.
    pub fn delete(&mut self) {
        self.new_state = Some(None);
    }
    /// Signals another entity (or this one) once this operation commits.
    pub fn signal(&mut self, target: EntityId, operation: &str, input: Option<Value>) {
        self.signals.push(OutgoingSignal {
            target,
            operation: operation.to_string(),
            input,
            at: None,
        });
    }
    /// Signals an entity no earlier than `at` (milliseconds since the epoch); durable across
    /// restarts.
    pub fn signal_at(
        &mut self,
        target: EntityId,
        operation: &str,
        input: Option<Value>,
        at: Millis,
    ) {
        self.signals.push(OutgoingSignal {
            target,
            operation: operation.to_string(),
            input,
            at: Some(at),
        });
    }
    /// The time the operation runs at (milliseconds since the epoch).
    pub fn now(&self) -> Millis {
        self.now
    }

    /// What the operation did: `(replacement state if it set or deleted it, signals)`.
    pub fn into_effects(self) -> (Option<Option<Value>>, Vec<OutgoingSignal>) {
        (self.new_state, self.signals)
    }
}

/// An entity type: a name, its operations, and the code that runs them.
pub trait EntityType: Send + Sync + 'static {
    /// The type's name: lower-case letters, digits, `-`, `_`, `.`.
    fn name(&self) -> &'static str;
    /// The operations it accepts; others are refused before anything is written.
    fn operations(&self) -> &'static [&'static str];
    /// Checks an operation's input before a signal is accepted. Default: anything.
    fn validate(&self, _operation: &str, _input: Option<&Value>) -> Result<(), OperationError> {
        Ok(())
    }
    /// Runs one operation. Returning an error discards its state change and signals.
    fn execute(&self, ctx: &mut Context<'_>) -> Result<Option<Value>, OperationError>;
}
