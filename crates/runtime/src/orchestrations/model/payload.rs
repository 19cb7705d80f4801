//! JSON payloads as the history carries them: JSON text, `None` for `null`.

use super::error::TaskError;
use serde::Serialize;
use serde_json::Value;

/// `value` as history JSON text; `null` is `None` (no payload).
pub(crate) fn encode(value: &impl Serialize) -> Result<Option<String>, serde_json::Error> {
    Ok(match serde_json::to_value(value)? {
        Value::Null => None,
        v => Some(v.to_string()),
    })
}

/// History JSON text as a value; no payload is `null`. Text that is not JSON (written by a
/// foreign worker or client) fails the task that receives it.
pub(crate) fn decode(text: Option<&str>) -> Result<Value, TaskError> {
    match text {
        None => Ok(Value::Null),
        Some(t) => serde_json::from_str(t).map_err(|e| {
            TaskError::new("InvalidPayload", format!("the payload is not JSON: {e}"))
                .non_retriable()
        }),
    }
}
