//! Conversions between perdure's orchestration vocabulary (`perdure_types::orchestration`) and
//! the protocol's messages: the small pieces here (timestamps, payloads, failure details,
//! statuses, an instance's state), history events in [`history`], a worker's actions in
//! [`action`].
//!
//! Payloads are JSON text on both sides and are never parsed here. An empty `StringValue` reads
//! as absent (the SDK treats both alike, and a JSON payload is never empty).

pub mod action;
pub mod history;

pub use action::{action_from_proto, ActionError, Decision};
pub use history::{event_from_proto, event_to_proto};

use crate::proto;
use perdure_types::command::Millis;
use perdure_types::orchestration::{FailureDetails, InstanceRecord, RuntimeStatus};
use perdure_types::target::InstanceIdError;
use perdure_types::IdError;
use prost_types::Timestamp;

/// A message from a worker (or a client) that perdure cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// A `oneof` that must be set is empty.
    #[error("no {0} is set")]
    MissingOneof(&'static str),
    /// A field that must be set is absent or empty.
    #[error("field {0} is missing")]
    MissingField(&'static str),
    /// An entity id is not `@name@key`.
    #[error("invalid entity id {id:?}: {source}")]
    BadEntityId {
        /// The id as sent.
        id: String,
        /// Why it was refused.
        source: IdError,
    },
    /// An instance id is not valid.
    #[error("invalid instance id {id:?}: {source}")]
    BadInstanceId {
        /// The id as sent.
        id: String,
        /// Why it was refused.
        source: InstanceIdError,
    },
    /// An orchestration status number that is not one, or not allowed here.
    #[error("orchestration status {0} is not allowed here")]
    BadStatus(i32),
    /// An event kind perdure never stores (`genericEvent`, `historyState`).
    #[error("{0} events are not accepted")]
    UnsupportedEvent(&'static str),
    /// A nested history event (carried over, or of a rewound history) was refused.
    #[error("history event {index}: {source}")]
    Event {
        /// Its position in the list.
        index: usize,
        /// Why.
        source: Box<ConvertError>,
    },
}

/// Milliseconds since the epoch as a protobuf timestamp.
pub fn timestamp(ms: Millis) -> Timestamp {
    Timestamp {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

/// A protobuf timestamp as milliseconds since the epoch (before the epoch: 0).
pub fn millis(t: &Timestamp) -> Millis {
    if t.seconds < 0 {
        return 0;
    }
    (t.seconds as u64)
        .saturating_mul(1000)
        .saturating_add((t.nanos.max(0) / 1_000_000) as u64)
}

/// A `StringValue` as perdure keeps it: `""` is absent.
pub fn text(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

/// Failure details as the protocol carries them (verbatim, the inner failure included).
pub fn failure_to_proto(f: &FailureDetails) -> proto::TaskFailureDetails {
    proto::TaskFailureDetails {
        error_type: f.error_type.clone(),
        error_message: f.message.clone(),
        stack_trace: f.stack_trace.clone(),
        inner_failure: f.inner.as_deref().map(|i| Box::new(failure_to_proto(i))),
        is_non_retriable: f.non_retriable,
        properties: Default::default(),
    }
}

/// The protocol's failure details as perdure keeps them (`properties` are not kept).
pub fn failure_from_proto(f: proto::TaskFailureDetails) -> FailureDetails {
    FailureDetails {
        error_type: f.error_type,
        message: f.error_message,
        stack_trace: text(f.stack_trace),
        inner: f.inner_failure.map(|i| Box::new(failure_from_proto(*i))),
        non_retriable: f.is_non_retriable,
    }
}

/// perdure's status as the protocol's.
pub fn status_to_proto(s: RuntimeStatus) -> proto::OrchestrationStatus {
    use proto::OrchestrationStatus as P;
    match s {
        RuntimeStatus::Pending => P::Pending,
        RuntimeStatus::Running => P::Running,
        RuntimeStatus::Completed => P::Completed,
        RuntimeStatus::ContinuedAsNew => P::ContinuedAsNew,
        RuntimeStatus::Failed => P::Failed,
        RuntimeStatus::Terminated => P::Terminated,
        RuntimeStatus::Suspended => P::Suspended,
    }
}

/// The protocol's status number as perdure's; `None` for `CANCELED` (perdure has no such
/// status) and numbers that are no status.
pub fn status_from_proto(n: i32) -> Option<RuntimeStatus> {
    use proto::OrchestrationStatus as P;
    Some(match P::try_from(n).ok()? {
        P::Pending => RuntimeStatus::Pending,
        P::Running => RuntimeStatus::Running,
        P::Completed => RuntimeStatus::Completed,
        P::ContinuedAsNew => RuntimeStatus::ContinuedAsNew,
        P::Failed => RuntimeStatus::Failed,
        P::Terminated => RuntimeStatus::Terminated,
        P::Suspended => RuntimeStatus::Suspended,
        P::Canceled => return None,
    })
}

/// A list of status numbers as perdure's statuses (`CANCELED` and unknown numbers, which no
/// perdure instance can have, are left out).
pub fn statuses_from_proto(ns: &[i32]) -> Vec<RuntimeStatus> {
    ns.iter().filter_map(|&n| status_from_proto(n)).collect()
}

/// An instance's record as `OrchestrationState`: input and output only when `payloads`; the
/// custom status and failure details always.
pub fn state_to_proto(r: &InstanceRecord, payloads: bool) -> proto::OrchestrationState {
    proto::OrchestrationState {
        instance_id: r.instance_id.as_str().to_string(),
        name: r.name.clone(),
        version: r.version.clone(),
        orchestration_status: status_to_proto(r.status) as i32,
        scheduled_start_timestamp: r.scheduled_start.map(timestamp),
        created_timestamp: Some(timestamp(r.created_at)),
        last_updated_timestamp: Some(timestamp(r.updated_at)),
        input: payloads.then(|| r.input.clone()).flatten(),
        output: payloads.then(|| r.output.clone()).flatten(),
        custom_status: r.custom_status.clone(),
        failure_details: r.failure.as_ref().map(failure_to_proto),
        execution_id: Some(r.execution_id.clone()),
        completed_timestamp: r.completed_at.map(timestamp),
        parent_instance_id: r
            .parent
            .as_ref()
            .map(|p| p.instance_id.as_str().to_string()),
        tags: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use perdure_types::orchestration::ParentInstance;
    use perdure_types::InstanceId;

    #[test]
    fn timestamps_keep_milliseconds_both_ways() {
        for ms in [0, 1, 999, 1_000, 1_700_000_000_123] {
            assert_eq!(millis(&timestamp(ms)), ms);
        }
        let t = timestamp(1_700_000_000_123);
        assert_eq!((t.seconds, t.nanos), (1_700_000_000, 123_000_000));
        assert_eq!(
            millis(&Timestamp {
                seconds: -5,
                nanos: 0
            }),
            0
        );
    }

    #[test]
    fn an_empty_string_value_is_absent() {
        assert_eq!(text(Some(String::new())), None);
        assert_eq!(text(Some("1".into())), Some("1".into()));
        assert_eq!(text(None), None);
    }

    #[test]
    fn failure_details_round_trip_verbatim_with_the_inner_failure() {
        let f = FailureDetails {
            error_type: "builtins.ValueError".into(),
            message: "Kah-BOOOOM!!!".into(),
            stack_trace: Some("  File x.py, line 3".into()),
            inner: Some(Box::new(FailureDetails {
                non_retriable: true,
                ..FailureDetails::new("TaskFailedError", "inner")
            })),
            non_retriable: false,
        };
        assert_eq!(failure_from_proto(failure_to_proto(&f)), f);
    }

    #[test]
    fn every_status_round_trips_and_canceled_is_none() {
        for s in RuntimeStatus::ALL {
            assert_eq!(status_from_proto(status_to_proto(s) as i32), Some(s));
        }
        assert_eq!(
            status_from_proto(proto::OrchestrationStatus::Canceled as i32),
            None
        );
        assert_eq!(status_from_proto(42), None);
        assert_eq!(
            proto::OrchestrationStatus::Pending as i32,
            6,
            "the wire numbers are upstream's"
        );
    }

    #[test]
    fn a_state_shows_payloads_only_when_asked_and_its_times() {
        let mut r = InstanceRecord::pending(
            InstanceId::new("i1").unwrap(),
            "HelloSequence5".into(),
            Some("2".into()),
            "e1".into(),
            Some("\"in\"".into()),
            Some(ParentInstance {
                instance_id: InstanceId::new("p").unwrap(),
                execution_id: "pe".into(),
                name: "Parent".into(),
                task_id: 3,
            }),
            None,
            1_000,
        );
        r.output = Some("\"out\"".into());
        r.custom_status = Some("\"half\"".into());
        r.status = RuntimeStatus::Completed;
        r.completed_at = Some(2_000);
        let without = state_to_proto(&r, false);
        assert_eq!((without.input, without.output), (None, None));
        assert_eq!(without.custom_status.as_deref(), Some("\"half\""));
        assert_eq!(
            without.orchestration_status,
            proto::OrchestrationStatus::Completed as i32
        );
        assert_eq!(without.completed_timestamp, Some(timestamp(2_000)));
        assert_eq!(without.created_timestamp, Some(timestamp(1_000)));
        assert_eq!(without.parent_instance_id.as_deref(), Some("p"));
        let with = state_to_proto(&r, true);
        assert_eq!(with.input.as_deref(), Some("\"in\""));
        assert_eq!(with.output.as_deref(), Some("\"out\""));
    }
}
