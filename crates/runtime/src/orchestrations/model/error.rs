//! The model's errors: a failed task, a failed orchestrator, a failed activity. Each carries (or
//! turns into) the [`FailureDetails`] the history records.

use perdure_types::orchestration::FailureDetails;

/// A task failed: an activity, a sub-orchestration, an entity operation, or a task the context
/// could not make (an input that does not serialize, an invalid instance id).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {}", .0.error_type, .0.message)]
pub struct TaskError(pub FailureDetails);

impl TaskError {
    /// A failure of type `error_type` with `message`.
    pub fn new(error_type: impl Into<String>, message: impl Into<String>) -> Self {
        Self(FailureDetails::new(error_type, message))
    }

    /// The failure as the history records it.
    pub fn details(&self) -> &FailureDetails {
        &self.0
    }

    /// The failure, owned.
    pub fn into_details(self) -> FailureDetails {
        self.0
    }

    /// The same failure, marked as one retrying cannot help.
    pub(crate) fn non_retriable(mut self) -> Self {
        self.0.non_retriable = true;
        self
    }
}

impl From<FailureDetails> for TaskError {
    fn from(details: FailureDetails) -> Self {
        Self(details)
    }
}

/// Why an orchestrator failed. The execution ends `Failed` with [`OrchestrationError::details`].
///
/// A failed task converts into it, so `ctx.call_activity(..).await?` fails the orchestration
/// with the activity's failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrchestrationError {
    /// A task the orchestrator awaited failed; the orchestration fails with the task's details.
    #[error("{0}")]
    Task(#[from] TaskError),
    /// A value did not (de)serialize: the orchestration's input, a custom status, an event's
    /// data, ...
    #[error("serialization failed: {0}")]
    Serialization(String),
    /// The orchestrator failed for its own reason.
    #[error("{}: {}", .0.error_type, .0.message)]
    Failed(FailureDetails),
}

impl OrchestrationError {
    /// A failure of type `error_type` with `message`.
    pub fn new(error_type: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Failed(FailureDetails::new(error_type, message))
    }

    /// The failure the execution records.
    pub fn details(&self) -> FailureDetails {
        match self {
            Self::Task(e) => e.0.clone(),
            Self::Serialization(m) => FailureDetails::new("SerializationError", m.clone()),
            Self::Failed(d) => d.clone(),
        }
    }
}

impl From<serde_json::Error> for OrchestrationError {
    fn from(e: serde_json::Error) -> Self {
        Self::Serialization(e.to_string())
    }
}

/// Why an activity failed. The orchestration sees a `TaskFailed` with
/// [`ActivityError::details`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActivityError {
    /// The input is not what the activity takes (retrying cannot help).
    #[error("bad input: {0}")]
    BadInput(String),
    /// Something the activity relied on failed.
    #[error("{0}")]
    Task(#[from] TaskError),
    /// The activity failed for its own reason.
    #[error("{}: {}", .0.error_type, .0.message)]
    Failed(FailureDetails),
}

impl ActivityError {
    /// A failure of type `error_type` with `message` (a retry policy may retry it).
    pub fn new(error_type: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Failed(FailureDetails::new(error_type, message))
    }

    /// A failure that retry policies do not retry.
    pub fn non_retriable(error_type: impl Into<String>, message: impl Into<String>) -> Self {
        let mut d = FailureDetails::new(error_type, message);
        d.non_retriable = true;
        Self::Failed(d)
    }

    /// The failure the orchestration sees (`TaskFailed`).
    pub fn details(&self) -> FailureDetails {
        match self {
            Self::BadInput(m) => FailureDetails {
                non_retriable: true,
                ..FailureDetails::new("BadInput", m.clone())
            },
            Self::Task(e) => e.0.clone(),
            Self::Failed(d) => d.clone(),
        }
    }
}

impl From<serde_json::Error> for ActivityError {
    /// A value that does not deserialize is a bad input.
    fn from(e: serde_json::Error) -> Self {
        Self::BadInput(e.to_string())
    }
}
