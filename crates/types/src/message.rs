//! The message format between partitions: the body of outbox, inbox and timer entries, owned
//! here and nowhere else. The addressee travels beside it as a [`crate::Target`], so the host
//! delivers messages without decoding them; each workload reads the variants it owns.

use crate::codec;
use crate::orchestration::HistoryEvent;
use crate::target::InstanceId;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A message to a partition workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Run an operation on the addressed entity (a signal from another entity, or a timer).
    EntityOperation {
        /// The operation.
        operation: String,
        /// Its input as JSON text (JSON values are not self-describing in bincode).
        input: Option<String>,
    },
    /// An event for an orchestration instance's inbox.
    InstanceEvent {
        /// The execution it is for: an event of another (an earlier) execution is dropped when
        /// a turn takes it; `None` for events for whatever execution runs (raised events,
        /// terminate, suspend).
        execution_id: Option<String>,
        /// The event.
        event: HistoryEvent,
    },
    /// An entity operation sent by an orchestration: a signal, or a call whose result goes
    /// back to `reply_to` as `EntityOperationCompleted` / `EntityOperationFailed`.
    EntityRequest {
        /// The operation.
        operation: String,
        /// Its input as JSON text.
        input: Option<String>,
        /// The request's id (named by the answer).
        request_id: String,
        /// Who waits for the answer (instance and execution), for a call.
        reply_to: Option<(InstanceId, String)>,
    },
}

impl Message {
    /// An entity operation with `input`.
    pub fn entity_operation(operation: String, input: Option<&Value>) -> Self {
        Message::EntityOperation {
            operation,
            input: input.map(Value::to_string),
        }
    }

    /// Its encoded bytes.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self).expect("a message always encodes")
    }

    /// Decodes bytes written by [`Message::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, codec::Error> {
        codec::decode(bytes)
    }
}

/// Parses a message's JSON input text.
pub fn parse_input(input: Option<&str>) -> Result<Option<Value>, serde_json::Error> {
    input.map(serde_json::from_str).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entity_operation_round_trips() {
        let m = Message::entity_operation("add".into(), Some(&serde_json::json!({"n": 2})));
        let back = Message::decode(&m.encode()).unwrap();
        assert_eq!(back, m);
        let Message::EntityOperation { input, .. } = back else {
            panic!("not an entity operation");
        };
        assert_eq!(
            parse_input(input.as_deref()).unwrap(),
            Some(serde_json::json!({"n": 2}))
        );
    }
}
