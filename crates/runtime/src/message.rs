//! The message format between partitions (outbox, inbox, timers): one place owns it; the host
//! reads only its target, the workloads its body.

use perdure_types::codec;
use perdure_types::EntityId;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A signal on its way to an entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The receiving entity.
    pub target: EntityId,
    /// Its operation.
    pub operation: String,
    /// The input as JSON text (JSON values are not self-describing in bincode).
    pub input: Option<String>,
}

impl Envelope {
    pub fn new(target: EntityId, operation: String, input: Option<&Value>) -> Self {
        Self {
            target,
            operation,
            input: input.map(Value::to_string),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self).expect("an envelope always encodes")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        codec::decode(bytes).map_err(|e| e.to_string())
    }

    /// The input, parsed.
    pub fn input_value(&self) -> Result<Option<Value>, String> {
        self.input
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| e.to_string())
    }
}
