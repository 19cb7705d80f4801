//! What kind of failure a request met, independent of any transport.
//!
//! Libraries say *what* went wrong with an [`ErrorKind`]; each edge maps it to its own status
//! (HTTP in `perdure-node`, gRPC next) in one place. A [`Failure`] is the form an error takes on
//! the node-to-node wire, so a request forwarded to another node's leader fails with the same
//! kind, code and message as if it had run here.

use serde::{Deserialize, Serialize};

/// The kind of a failure: what the caller can do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The request is malformed or names something invalid; retrying it unchanged cannot succeed.
    InvalidArgument,
    /// What the request names does not exist.
    NotFound,
    /// The request is valid but the target's state does not allow it now.
    FailedPrecondition,
    /// The operation ran and reported an error (user code); nothing it did took effect.
    OperationFailed,
    /// The request cannot be served now (no leader, leadership changing, storage failure,
    /// shutting down); safe to retry (with the same idempotency key).
    Unavailable,
    /// A bug or damaged data: not the caller's fault, and retrying will not help.
    Internal,
    /// The request was not answered within its deadline (its partition could not reach a
    /// quorum in time). For a write the outcome is unknown: it may still take effect. A retry
    /// with the same idempotency key is applied at most once.
    DeadlineExceeded,
    /// A bound was hit (e.g. the idempotency keys a partition remembers): a retry after a while
    /// (or without what the bound counts) may succeed. Nothing was applied.
    ResourceExhausted,
}

impl ErrorKind {
    /// A lower-case name, for logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::NotFound => "not_found",
            ErrorKind::FailedPrecondition => "failed_precondition",
            ErrorKind::OperationFailed => "operation_failed",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
            ErrorKind::DeadlineExceeded => "deadline_exceeded",
            ErrorKind::ResourceExhausted => "resource_exhausted",
        }
    }
}

/// An error as it crosses the node-to-node wire: its kind, its machine-readable code and its
/// message, all intact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// The short machine-readable code of the error (e.g. `unknown_operation`).
    pub code: String,
    /// The human-readable message.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_round_trips_through_the_codec_with_kind_code_and_message() {
        let f = Failure {
            kind: ErrorKind::InvalidArgument,
            code: "unknown_operation".into(),
            message: "entity type \"counter\" has no operation \"nope\"".into(),
        };
        let back: Failure = crate::codec::decode(&crate::codec::encode(&f).unwrap()).unwrap();
        assert_eq!(back, f);
    }
}
