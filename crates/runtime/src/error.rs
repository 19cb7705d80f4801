//! The runtime's error type. Each variant has a transport-neutral [`ErrorKind`] (see
//! [`Error::kind`]) that HTTP and gRPC map to their own statuses at the edge.

use perdure_types::orchestration::RuntimeStatus;
use perdure_types::target::InstanceIdError;
use perdure_types::{ErrorKind, Failure, IdError, InstanceId, NodeId, PartitionId};

/// A request to the runtime could not be served.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The entity id is not valid.
    #[error("invalid entity id: {0}")]
    BadId(#[from] IdError),
    /// No entity type has this name.
    #[error("unknown entity type {name:?}; known types: {known}")]
    UnknownEntityType {
        /// The name asked for.
        name: String,
        /// The registered names, comma-separated.
        known: String,
    },
    /// The entity type has no such operation.
    #[error("entity type {entity_type:?} has no operation {operation:?}; its operations: {known}")]
    UnknownOperation {
        /// The entity type.
        entity_type: String,
        /// The operation asked for.
        operation: String,
        /// Its operations, comma-separated.
        known: String,
    },
    /// The operation's input is not what it takes. Nothing was written.
    #[error("bad input for {entity_type}.{operation}: {reason}")]
    BadInput {
        /// The entity type.
        entity_type: String,
        /// The operation.
        operation: String,
        /// What is wrong.
        reason: String,
    },
    /// The operation ran and failed (user code error). Its state change was discarded; the
    /// operation counts as processed.
    #[error("operation failed: {0}")]
    Operation(String),
    /// The partition has no leader this node can serve the request through now.
    #[error(
        "partition {partition} has no leader reachable from this node (leader: {leader:?}); retry"
    )]
    NoLeader {
        /// The partition.
        partition: PartitionId,
        /// Its leader, if one is known.
        leader: Option<NodeId>,
    },
    /// The partition cannot serve now (leadership changing, storage failure, shutting down).
    /// Safe to retry with the same idempotency key.
    #[error("{0}")]
    Unavailable(String),
    /// The request was not answered within `entities.request_timeout_ms` (its partition could
    /// not reach a quorum, or its leader could not be found, in time). A write's outcome is
    /// unknown: it may still take effect; a signal retried with the same idempotency key is
    /// applied at most once.
    #[error("{}", deadline_message(*partition, *waited_ms, *write))]
    DeadlineExceeded {
        /// The partition.
        partition: PartitionId,
        /// How long the request waited.
        waited_ms: u64,
        /// Whether it was a write (signal or call), whose outcome is then unknown.
        write: bool,
    },
    /// A signal with a new idempotency key was refused: its partition remembers
    /// `entities.max_idempotency_keys` keys already. Nothing was applied; keys are forgotten as
    /// their window (`entities.idempotency_window_ms`) ends. A retry of a key already
    /// remembered is still acknowledged.
    #[error(
        "partition {partition} remembers {max} idempotency keys, its limit \
         (entities.max_idempotency_keys): a signal with a new key is refused until older keys \
         expire ({window_ms} ms after their signal); retry later, or signal without an \
         idempotency key"
    )]
    TooManyIdempotencyKeys {
        /// The partition.
        partition: PartitionId,
        /// The bound.
        max: u64,
        /// How long a key is remembered.
        window_ms: u64,
    },
    /// A request forwarded to another node's leader failed there: its kind, code and message as
    /// that node gave them.
    #[error("{}", .0.message)]
    Remote(Failure),
    /// The instance id is not valid.
    #[error("invalid instance id: {0}")]
    BadInstanceId(#[from] InstanceIdError),
    /// No orchestrator has this name.
    #[error("unknown orchestrator {name:?}; known orchestrators: {known}")]
    UnknownOrchestrator {
        /// The name asked for.
        name: String,
        /// The registered names, comma-separated.
        known: String,
    },
    /// No instance has this id.
    #[error("no orchestration instance \"{0}\"")]
    InstanceNotFound(InstanceId),
    /// A start named an instance that exists in a status the reuse policy does not replace.
    #[error("orchestration instance \"{instance}\" exists and is {status}: not replaced (its reuse policy replaces only the statuses it lists)")]
    InstanceExists {
        /// The instance.
        instance: InstanceId,
        /// Its status.
        status: RuntimeStatus,
    },
    /// The request needs a running instance, and this one finished.
    #[error("orchestration instance \"{instance}\" is {status}: it no longer takes {what}")]
    InstanceFinished {
        /// The instance.
        instance: InstanceId,
        /// Its status.
        status: RuntimeStatus,
        /// What was refused ("events", "a terminate", ...).
        what: &'static str,
    },
    /// The request does not fit the instance's status (resume a running one, rewind a
    /// completed one, purge a running one).
    #[error("orchestration instance \"{instance}\" is {status}: {why}")]
    InstanceState {
        /// The instance.
        instance: InstanceId,
        /// Its status.
        status: RuntimeStatus,
        /// Why that refuses the request.
        why: String,
    },
    /// A payload (input, event data, reason) is over `orchestrations.max_payload_bytes`.
    /// Nothing was written.
    #[error("{what} is {bytes} bytes, over the limit of {max} (orchestrations.max_payload_bytes); nothing was written")]
    PayloadTooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        bytes: usize,
        /// The limit.
        max: u64,
    },
    /// A malformed request (a bad continuation token, a bad filter, ...).
    #[error("{0}")]
    BadRequest(String),
    /// A remote worker's completion token that names no lease: never issued, already completed
    /// or abandoned, or its lease ended (the work was dispatched again). Nothing was applied.
    #[error("completion token {0:?} names no work item held: never issued, already completed or abandoned, or its lease ended (the work item is dispatched again); nothing was applied")]
    UnknownToken(String),
}

impl Error {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::BadId(_)
            | Error::UnknownEntityType { .. }
            | Error::UnknownOperation { .. }
            | Error::BadInput { .. } => ErrorKind::InvalidArgument,
            Error::Operation(_) => ErrorKind::OperationFailed,
            Error::NoLeader { .. } | Error::Unavailable(_) => ErrorKind::Unavailable,
            Error::DeadlineExceeded { .. } => ErrorKind::DeadlineExceeded,
            Error::TooManyIdempotencyKeys { .. } => ErrorKind::ResourceExhausted,
            Error::Remote(f) => f.kind,
            Error::BadInstanceId(_)
            | Error::UnknownOrchestrator { .. }
            | Error::PayloadTooLarge { .. }
            | Error::BadRequest(_) => ErrorKind::InvalidArgument,
            Error::InstanceNotFound(_) | Error::UnknownToken(_) => ErrorKind::NotFound,
            Error::InstanceExists { .. }
            | Error::InstanceFinished { .. }
            | Error::InstanceState { .. } => ErrorKind::FailedPrecondition,
        }
    }

    /// A short machine-readable code for error bodies.
    pub fn code(&self) -> &str {
        match self {
            Error::BadId(_) => "bad_entity_id",
            Error::UnknownEntityType { .. } => "unknown_entity_type",
            Error::UnknownOperation { .. } => "unknown_operation",
            Error::BadInput { .. } => "bad_input",
            Error::Operation(_) => "operation_failed",
            Error::NoLeader { .. } | Error::Unavailable(_) => "unavailable",
            Error::DeadlineExceeded { write: true, .. } => "outcome_unknown",
            Error::DeadlineExceeded { write: false, .. } => "deadline_exceeded",
            Error::TooManyIdempotencyKeys { .. } => "too_many_idempotency_keys",
            Error::Remote(f) => &f.code,
            Error::BadInstanceId(_) => "bad_instance_id",
            Error::UnknownOrchestrator { .. } => "unknown_orchestrator",
            Error::InstanceNotFound(_) => "instance_not_found",
            Error::UnknownToken(_) => "unknown_completion_token",
            Error::InstanceExists { .. } => "instance_exists",
            Error::InstanceFinished { .. } => "instance_finished",
            Error::InstanceState { .. } => "instance_state",
            Error::PayloadTooLarge { .. } => "payload_too_large",
            Error::BadRequest(_) => "bad_request",
        }
    }

    /// The leader of the partition, when the error is about not reaching it and it is known.
    pub fn leader(&self) -> Option<NodeId> {
        match self {
            Error::NoLeader { leader, .. } => *leader,
            _ => None,
        }
    }

    /// This error as it crosses the node-to-node wire.
    pub fn to_failure(&self) -> Failure {
        match self {
            Error::Remote(f) => f.clone(),
            e => Failure {
                kind: e.kind(),
                code: e.code().to_string(),
                message: e.to_string(),
            },
        }
    }
}

fn deadline_message(partition: PartitionId, waited_ms: u64, write: bool) -> String {
    if write {
        format!(
            "partition {partition} did not commit within {waited_ms} ms (no quorum reachable?): \
             the outcome is unknown, the operation may still take effect; a signal retried with \
             the same Idempotency-Key is applied at most once"
        )
    } else {
        format!(
            "partition {partition} could not serve the read within {waited_ms} ms (no quorum \
             reachable?); retry"
        )
    }
}

impl From<perdure_cluster::Error> for Error {
    fn from(e: perdure_cluster::Error) -> Self {
        match e {
            perdure_cluster::Error::NotLeader { partition, leader } => {
                Error::NoLeader { partition, leader }
            }
            e => Error::Unavailable(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forwarded_error_keeps_its_kind_code_and_message() {
        let here = Error::UnknownOperation {
            entity_type: "counter".into(),
            operation: "nope".into(),
            known: "add, get".into(),
        };
        let there = Error::Remote(here.to_failure());
        assert_eq!(there.kind(), ErrorKind::InvalidArgument);
        assert_eq!(there.code(), "unknown_operation");
        assert_eq!(there.to_string(), here.to_string());
        let op = Error::Remote(Error::Operation("boom".into()).to_failure());
        assert_eq!(
            (op.kind(), op.code(), op.to_string().as_str()),
            (
                ErrorKind::OperationFailed,
                "operation_failed",
                "operation failed: boom"
            )
        );
    }

    #[test]
    fn a_write_past_its_deadline_says_its_outcome_is_unknown() {
        let w = Error::DeadlineExceeded {
            partition: 3,
            waited_ms: 10_000,
            write: true,
        };
        assert_eq!(
            (w.kind(), w.code()),
            (ErrorKind::DeadlineExceeded, "outcome_unknown")
        );
        assert!(w.to_string().contains("outcome is unknown"), "{w}");
        let there = Error::Remote(w.to_failure());
        assert_eq!(there.code(), "outcome_unknown");
        let r = Error::DeadlineExceeded {
            partition: 3,
            waited_ms: 10_000,
            write: false,
        };
        assert_eq!(r.code(), "deadline_exceeded");
    }

    #[test]
    fn not_leader_keeps_the_leader() {
        let e = Error::from(perdure_cluster::Error::NotLeader {
            partition: 3,
            leader: Some(2),
        });
        assert_eq!((e.kind(), e.leader()), (ErrorKind::Unavailable, Some(2)));
    }
}
