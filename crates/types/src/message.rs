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
    ///
    /// (`sender` and the two lock messages below were added before any release wrote these
    /// variants, so changing them needed no format version bump; from now on they only grow at
    /// the end.)
    EntityRequest {
        /// The operation.
        operation: String,
        /// Its input as JSON text.
        input: Option<String>,
        /// The request's id (named by the answer).
        request_id: String,
        /// Who waits for the answer (instance and execution), for a call.
        reply_to: Option<(InstanceId, String)>,
        /// The orchestration (instance and execution) that sent it: while the entity is locked
        /// by that execution's critical section, its requests run and everything else waits.
        sender: Option<(InstanceId, String)>,
    },
    /// A request to lock the addressed entity, `lock_set[position]`, for a critical section.
    /// Once the entity is free it takes the lock and passes the request on to
    /// `lock_set[position + 1]`, or, at the last one, sends `EntityLockGranted` to the holder.
    /// Taken in `lock_set` order (sorted), so two critical sections over overlapping sets never
    /// wait for each other in a cycle.
    EntityLock {
        /// The critical section's id.
        critical_section_id: String,
        /// Every entity of the section, canonical (`@name@key`), sorted, without duplicates.
        lock_set: Vec<String>,
        /// The addressed entity's place in `lock_set`.
        position: u32,
        /// Who asks (instance and execution).
        holder: (InstanceId, String),
    },
    /// Releases the addressed entity from a critical section of `holder`. When the entity does
    /// not hold it yet, the request waiting there is dropped instead. `forward`: the entities
    /// after this one the release goes on to (in order), when the section may not have reached
    /// them all (released before it was granted): a release travels behind the lock request,
    /// along the same path, so it never overtakes it.
    EntityUnlock {
        /// The critical section's id.
        critical_section_id: String,
        /// The instance that holds it.
        holder: InstanceId,
        /// Entities (canonical) the release is passed on to, in order.
        forward: Vec<String>,
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

    #[test]
    fn lock_messages_round_trip() {
        let me = InstanceId::new("transfer-1").unwrap();
        for m in [
            Message::EntityRequest {
                operation: "add".into(),
                input: Some("5".into()),
                request_id: "r1".into(),
                reply_to: None,
                sender: Some((me.clone(), "e1".into())),
            },
            Message::EntityLock {
                critical_section_id: "cs".into(),
                lock_set: vec!["@counter@a".into(), "@counter@b".into()],
                position: 1,
                holder: (me.clone(), "e1".into()),
            },
            Message::EntityUnlock {
                critical_section_id: "cs".into(),
                holder: me,
                forward: vec!["@counter@b".into()],
            },
        ] {
            assert_eq!(Message::decode(&m.encode()).unwrap(), m);
        }
    }
}
