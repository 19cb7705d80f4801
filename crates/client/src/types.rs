//! The shapes the API sends and receives.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The server's answer to an accepted signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalAck {
    /// Always true: the signal is durable and will run exactly once.
    pub accepted: bool,
    /// True when the idempotency key was seen before: nothing was applied this time.
    pub duplicate: bool,
}

pub use perdure_types::api::{EntityPage, EntitySummary};

/// One signal of a batch ([`Client::signal_batch`](crate::Client::signal_batch)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchSignal {
    /// The entity type.
    pub name: String,
    /// The entity key.
    pub key: String,
    /// The operation.
    pub op: String,
    /// Its input (`None`: no input; `Some(Value::Null)`: the input `null`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    /// The idempotency key; the client makes one when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

impl BatchSignal {
    /// A signal of `op` to `name`/`key` with `input`, its idempotency key to be made by the
    /// client.
    pub fn new(name: &str, key: &str, op: &str, input: Option<Value>) -> Self {
        Self {
            name: name.to_string(),
            key: key.to_string(),
            op: op.to_string(),
            input,
            idempotency_key: None,
        }
    }

    /// Sets the idempotency key.
    pub fn with_idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

/// One result of a batch, as the server sends it.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum BatchItemResult {
    Error { error: crate::ApiError },
    Ack(SignalAck),
}

/// `{"results": [...]}`.
#[derive(Debug, Deserialize)]
pub(crate) struct BatchResponse {
    pub(crate) results: Vec<BatchItemResult>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn batch_signals_serialize_in_camel_case_keeping_null_inputs() {
        let s =
            BatchSignal::new("counter", "a", "add", Some(Value::Null)).with_idempotency_key("k");
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            json!({"name":"counter","key":"a","op":"add","input":null,"idempotencyKey":"k"})
        );
        let s = BatchSignal::new("counter", "a", "get", None);
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            json!({"name":"counter","key":"a","op":"get"})
        );
    }

    #[test]
    fn batch_results_are_acks_or_errors() {
        let r: BatchResponse = serde_json::from_value(json!({"results": [
            {"accepted": true, "duplicate": true},
            {"error": {"code": "bad_input", "message": "no"}},
        ]}))
        .unwrap();
        assert!(matches!(
            r.results[0],
            BatchItemResult::Ack(SignalAck {
                duplicate: true,
                ..
            })
        ));
        assert!(
            matches!(&r.results[1], BatchItemResult::Error { error } if error.code == "bad_input")
        );
    }
}
