//! How a record becomes an entity operation (a subscription's [`Mapping`]), or why it cannot
//! (a dead letter's reason).

use crate::source::Record;
use perdure_runtime::{Entities, IngestRecord};
use perdure_types::subscription::{InputFrom, KeyFrom, Mapping};
use perdure_types::EntityId;
use serde_json::Value;

/// A mapping ready to apply.
#[derive(Debug, Clone)]
pub(crate) struct Mapper {
    entity: String,
    operation: String,
    key: KeyFrom,
    input: InputFrom,
    needs_json: bool,
}

impl Mapper {
    /// The mapper of a (validated) mapping.
    pub(crate) fn new(m: &Mapping) -> Self {
        Self {
            entity: m.entity.clone(),
            operation: m.operation.clone(),
            key: m.key_from(),
            input: m.input_from(),
            needs_json: m.needs_json(),
        }
    }

    /// The operation `record` maps to, checked against the entity type (`entities.validate`),
    /// or why it does not map.
    pub(crate) fn map(&self, record: &Record, entities: &Entities) -> Result<IngestRecord, String> {
        let value: Option<Value> = if self.needs_json {
            Some(
                serde_json::from_slice(&record.value)
                    .map_err(|e| format!("the value is not JSON: {e}"))?,
            )
        } else {
            None
        };
        let key = match &self.key {
            KeyFrom::RecordKey => {
                let k = record
                    .key
                    .as_deref()
                    .ok_or_else(|| "the record has no key ($key)".to_string())?;
                std::str::from_utf8(k)
                    .map_err(|_| "the record's key is not UTF-8 text ($key)".to_string())?
                    .to_string()
            }
            KeyFrom::Header(h) => {
                let (_, v) = record
                    .headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(h))
                    .ok_or_else(|| format!("the record has no header {h:?}"))?;
                std::str::from_utf8(v)
                    .map_err(|_| format!("header {h:?} is not UTF-8 text"))?
                    .to_string()
            }
            KeyFrom::Pointer(p) => {
                let v = value
                    .as_ref()
                    .and_then(|v| v.pointer(p))
                    .ok_or_else(|| format!("the value has nothing at {p} (the key)"))?;
                match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    other => {
                        return Err(format!(
                            "the key at {p} is {}, not a string or number",
                            kind(other)
                        ))
                    }
                }
            }
        };
        let entity = EntityId::new(&self.entity, &key)
            .map_err(|e| format!("the key {:?} is not a valid entity key: {e}", short(&key)))?;
        let input = match &self.input {
            InputFrom::None => None,
            InputFrom::Position => Some(Value::from(record.position)),
            InputFrom::Pointer(p) => Some(
                value
                    .as_ref()
                    .and_then(|v| v.pointer(p))
                    .cloned()
                    .ok_or_else(|| format!("the value has nothing at {p:?} (the input)"))?,
            ),
        };
        entities
            .validate(&entity, &self.operation, input.as_ref())
            .map_err(|e| e.to_string())?;
        Ok(IngestRecord {
            entity,
            operation: self.operation.clone(),
            input,
            position: record.position,
        })
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// At most 64 characters of `s`, for messages.
fn short(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}
