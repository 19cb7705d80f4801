//! The requests and answers of the orchestration facade ([`super::Orchestrations`]), shared by
//! HTTP, the CLI, the Rust client and (next) gRPC.

use perdure_types::command::Millis;
use perdure_types::orchestration::{HistoryEvent, InstanceRecord, ReusePolicy, RuntimeStatus};
use perdure_types::InstanceId;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A new random id, UUID-shaped (instance and execution ids).
pub fn new_id() -> String {
    let b: [u8; 16] = rand::random();
    let h = |r: std::ops::Range<usize>| b[r].iter().map(|x| format!("{x:02x}")).collect::<String>();
    format!(
        "{}-{}-4{}-{}-{}",
        h(0..4),
        h(4..6),
        &h(6..8)[1..],
        h(8..10),
        h(10..16)
    )
}

/// Start an orchestration.
#[derive(Debug, Clone, Default)]
pub struct StartRequest {
    /// The orchestrator's name.
    pub name: String,
    /// The instance id; a new random one when `None`.
    pub instance_id: Option<String>,
    /// The input.
    pub input: Option<Value>,
    /// Start no earlier than this (milliseconds since the epoch).
    pub scheduled_start: Option<Millis>,
    /// What an existing instance of the same id allows.
    pub policy: ReusePolicy,
    /// The orchestrator's version, if the caller names one.
    pub version: Option<String>,
}

/// A start's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started {
    /// The instance id.
    pub instance_id: InstanceId,
    /// The new execution's id.
    pub execution_id: String,
    /// False when the policy ignored the start (an instance of that id runs).
    pub created: bool,
}

/// An instance's status, optionally with its history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceStatus {
    /// The record.
    pub record: InstanceRecord,
    /// The current execution's history, when asked for.
    pub history: Option<Vec<HistoryEvent>>,
}

/// Which instances a query or a purge selects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceFilter {
    /// Any of these statuses (none: every status).
    pub statuses: Vec<RuntimeStatus>,
    /// Created at or after.
    pub created_from: Option<Millis>,
    /// Created before.
    pub created_to: Option<Millis>,
    /// Instance ids starting with this.
    pub prefix: Option<String>,
    /// Only instances quarantined as poison (failed with a `PoisonMessage` failure: a step that
    /// kept crashing).
    pub poisoned: bool,
}

impl InstanceFilter {
    /// Whether `r` is selected.
    pub fn matches(&self, r: &InstanceRecord) -> bool {
        (self.statuses.is_empty() || self.statuses.contains(&r.status))
            && self.created_from.is_none_or(|t| r.created_at >= t)
            && self.created_to.is_none_or(|t| r.created_at < t)
            && self
                .prefix
                .as_ref()
                .is_none_or(|p| r.instance_id.as_str().starts_with(p.as_str()))
            && (!self.poisoned || r.failure.as_ref().is_some_and(|f| f.error_type == POISON))
    }
}

/// The failure type of an instance quarantined as poison.
pub const POISON: &str = "PoisonMessage";

/// A page of a query.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Which instances.
    pub filter: InstanceFilter,
    /// Most instances in the page (at most [`MAX_QUERY_PAGE`]).
    pub page_size: u32,
    /// Where the previous page ended.
    pub continuation: Option<String>,
}

/// Most instances one query page holds.
pub const MAX_QUERY_PAGE: u32 = 1_000;

/// One page of instances.
#[derive(Debug, Clone, Default)]
pub struct QueryPage {
    /// The instances' records.
    pub instances: Vec<InstanceRecord>,
    /// Where the next page starts; `None` at the end.
    pub continuation: Option<String>,
}

/// Where a listing continues: a partition and the last instance id seen there, written as a
/// short opaque token (hex of `partition NUL id`).
pub(crate) fn encode_token(partition: u32, after: Option<&InstanceId>) -> String {
    let mut raw = partition.to_string().into_bytes();
    if let Some(a) = after {
        raw.push(0);
        raw.extend_from_slice(a.as_str().as_bytes());
    }
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a token written by [`encode_token`].
pub(crate) fn decode_token(token: &str) -> Option<(u32, Option<InstanceId>)> {
    if !token.len().is_multiple_of(2) || token.len() > 1024 {
        return None;
    }
    let raw: Vec<u8> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
        .collect::<Option<_>>()?;
    let s = String::from_utf8(raw).ok()?;
    let (p, after) = match s.split_once('\0') {
        Some((p, a)) => (p, Some(InstanceId::new(a).ok()?)),
        None => (s.as_str(), None),
    };
    Some((p.parse().ok()?, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let id = InstanceId::new("order-42").unwrap();
        assert_eq!(
            decode_token(&encode_token(7, Some(&id))),
            Some((7, Some(id)))
        );
        assert_eq!(decode_token(&encode_token(3, None)), Some((3, None)));
        assert_eq!(decode_token("zz"), None);
        assert_eq!(decode_token("abc"), None);
    }

    #[test]
    fn new_ids_look_like_uuids_and_differ() {
        let (a, b) = (new_id(), new_id());
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert_ne!(a, b);
    }
}
