//! JSON shapes of the public API shared by the server and the client.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One entity in a listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntitySummary {
    /// The entity's key.
    pub key: String,
    /// Its committed state.
    pub state: Value,
}

/// A page of entities of one type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityPage {
    /// The entities of this page.
    pub entities: Vec<EntitySummary>,
    /// Pass back to get the next page; `None` on the last page.
    #[serde(default)]
    pub continuation: Option<String>,
}

/// The management URLs of an orchestration instance: Durable Functions' answer to a start (and,
/// in perdure, to a restart). Absolute URLs on the node that answered; `{eventName}` and `{text}`
/// are placeholders for the caller to fill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceUrls {
    /// The instance id.
    pub id: String,
    /// `GET`: the status (`.../instances/ID`).
    pub status_query_get_uri: String,
    /// `POST`: raise an event (`.../instances/ID/raiseEvent/{eventName}`).
    pub send_event_post_uri: String,
    /// `POST`: terminate (`.../instances/ID/terminate?reason={text}`).
    pub terminate_post_uri: String,
    /// `POST`: rewind a failed instance (`.../instances/ID/rewind?reason={text}`).
    pub rewind_post_uri: String,
    /// `DELETE`: purge the instance (`.../instances/ID`).
    pub purge_history_delete_uri: String,
    /// `POST`: restart (`.../instances/ID/restart`).
    pub restart_post_uri: String,
    /// `POST`: suspend (`.../instances/ID/suspend?reason={text}`).
    pub suspend_post_uri: String,
    /// `POST`: resume (`.../instances/ID/resume?reason={text}`).
    pub resume_post_uri: String,
}

impl InstanceUrls {
    /// The URLs of instance `id` under `base`, the API's base URL
    /// (`http://HOST:PORT/runtime/webhooks/durabletask`, no trailing `/`); the id is
    /// percent-encoded as one path segment.
    pub fn new(base: &str, id: &str) -> Self {
        let at = format!("{base}/instances/{}", encode_segment(id));
        Self {
            id: id.to_string(),
            status_query_get_uri: at.clone(),
            send_event_post_uri: format!("{at}/raiseEvent/{{eventName}}"),
            terminate_post_uri: format!("{at}/terminate?reason={{text}}"),
            rewind_post_uri: format!("{at}/rewind?reason={{text}}"),
            purge_history_delete_uri: at.clone(),
            restart_post_uri: format!("{at}/restart"),
            suspend_post_uri: format!("{at}/suspend?reason={{text}}"),
            resume_post_uri: format!("{at}/resume?reason={{text}}"),
        }
    }
}

/// `text` as one URL path segment: every byte but ASCII letters, digits and `-._~`
/// percent-encoded.
pub fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Why an orchestration instance failed, as its status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureInfo {
    /// The kind of error (`PoisonMessage` for an instance quarantined as poison).
    pub error_type: String,
    /// What went wrong.
    pub error_message: String,
    /// Where, if known.
    #[serde(default)]
    pub stack_trace: Option<String>,
}

/// An orchestration instance's status: Durable Functions' fields (`name` ... `lastUpdatedTime`,
/// `historyEvents`) and perdure's (`executionId`, `historyEventCount`, `historySizeBytes`,
/// `failureDetails`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStatusBody {
    /// The orchestrator's name.
    pub name: String,
    /// The instance id.
    pub instance_id: String,
    /// `Pending`, `Running`, `Completed`, `ContinuedAsNew`, `Failed`, `Terminated` or
    /// `Suspended`.
    pub runtime_status: crate::orchestration::RuntimeStatus,
    /// The input (absent when not asked for; `null` for none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    /// The custom status the orchestrator set (`null` for none).
    #[serde(default)]
    pub custom_status: Value,
    /// The output: the result, the reason when terminated, the error message when failed
    /// (`null` for none).
    #[serde(default)]
    pub output: Value,
    /// When it was started (RFC 3339, UTC, milliseconds).
    pub created_time: String,
    /// When its status last changed.
    pub last_updated_time: String,
    /// The current execution's id (a new one per start and continue-as-new).
    pub execution_id: String,
    /// Events in the current execution's history.
    pub history_event_count: u64,
    /// Their encoded bytes.
    pub history_size_bytes: u64,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_details: Option<FailureInfo>,
    /// The history, one object per event, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_events: Option<Vec<Value>>,
}

/// The answer to a purge: how many instances were removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PurgeResult {
    /// Instances removed.
    pub instances_deleted: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_urls_are_written_as_durable_functions_writes_them() {
        let u = InstanceUrls::new(
            "http://127.0.0.1:7071/runtime/webhooks/durabletask",
            "a b/c",
        );
        let at = "http://127.0.0.1:7071/runtime/webhooks/durabletask/instances/a%20b%2Fc";
        assert_eq!(u.status_query_get_uri, at);
        assert_eq!(u.purge_history_delete_uri, at);
        assert_eq!(
            u.send_event_post_uri,
            format!("{at}/raiseEvent/{{eventName}}")
        );
        assert_eq!(
            u.terminate_post_uri,
            format!("{at}/terminate?reason={{text}}")
        );
        assert_eq!(u.restart_post_uri, format!("{at}/restart"));
        let v = serde_json::to_value(&u).unwrap();
        assert_eq!(v["id"], "a b/c");
        assert_eq!(v["resumePostUri"], format!("{at}/resume?reason={{text}}"));
        assert_eq!(v.as_object().unwrap().len(), 9);
    }
}
