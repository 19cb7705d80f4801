//! The runtime's error type. Each variant maps to one HTTP status class (see `status_hint`).

use perdure_types::IdError;

/// A request to the entity runtime could not be served.
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
    /// The partition cannot serve now (no leader, storage failure, shutting down). Safe to retry
    /// with the same idempotency key.
    #[error("{0}")]
    Unavailable(String),
}

/// The HTTP status class an error maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusHint {
    /// 400: the request is wrong; retrying it unchanged cannot succeed.
    BadRequest,
    /// 422: the operation ran and reported an error.
    OperationFailed,
    /// 503: try again later.
    Unavailable,
}

impl Error {
    /// The HTTP status class of this error.
    pub fn status_hint(&self) -> StatusHint {
        match self {
            Error::BadId(_)
            | Error::UnknownEntityType { .. }
            | Error::UnknownOperation { .. }
            | Error::BadInput { .. } => StatusHint::BadRequest,
            Error::Operation(_) => StatusHint::OperationFailed,
            Error::Unavailable(_) => StatusHint::Unavailable,
        }
    }

    /// A short machine-readable code for JSON error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            Error::BadId(_) => "bad_entity_id",
            Error::UnknownEntityType { .. } => "unknown_entity_type",
            Error::UnknownOperation { .. } => "unknown_operation",
            Error::BadInput { .. } => "bad_input",
            Error::Operation(_) => "operation_failed",
            Error::Unavailable(_) => "unavailable",
        }
    }
}

impl From<perdure_cluster::Error> for Error {
    fn from(e: perdure_cluster::Error) -> Self {
        Error::Unavailable(e.to_string())
    }
}
