//! History events: what happened to an orchestration instance, in order. An instance's history
//! is stored one event per key (a turn appends, never rewrites), and its inbox holds events not
//! yet taken by a turn.

use super::status::RuntimeStatus;
use super::TaskId;
use crate::command::Millis;
use crate::target::InstanceId;
use serde::{Deserialize, Serialize};

/// Why something failed: an activity, a sub-orchestration, an entity operation, an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FailureDetails {
    /// The kind of error (a Rust type name, `NonDeterminism`, `PoisonMessage`, ...).
    pub error_type: String,
    /// What went wrong.
    pub message: String,
    /// Where, if known.
    pub stack_trace: Option<String>,
    /// The failure that caused this one (a sub-orchestration's, an activity's).
    pub inner: Option<Box<FailureDetails>>,
    /// Retrying cannot help (retry policies stop at once).
    pub non_retriable: bool,
}

impl FailureDetails {
    /// A failure of type `error_type` with `message`.
    pub fn new(error_type: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error_type: error_type.into(),
            message: message.into(),
            ..Default::default()
        }
    }
}

/// The instance that started a sub-orchestration, and the task that waits for it there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentInstance {
    /// The parent's id.
    pub instance_id: InstanceId,
    /// The parent's execution.
    pub execution_id: String,
    /// The parent's orchestrator name.
    pub name: String,
    /// The parent's task waiting for the child.
    pub task_id: TaskId,
}

/// One event of a history (or of an inbox, before a turn takes it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEvent {
    /// The task id for events that schedule something (`TaskScheduled`, `TimerCreated`,
    /// `SubOrchestrationCreated`, `EventSent`, entity calls/signals), -1 otherwise (Durable Task's
    /// `eventId`).
    pub event_id: i32,
    /// When it happened, in milliseconds since the epoch.
    pub timestamp: Millis,
    /// What happened.
    pub kind: EventKind,
}

impl HistoryEvent {
    /// An event without a task id.
    pub fn new(timestamp: Millis, kind: EventKind) -> Self {
        Self {
            event_id: -1,
            timestamp,
            kind,
        }
    }

    /// An event scheduling task `id`.
    pub fn scheduled(id: TaskId, timestamp: Millis, kind: EventKind) -> Self {
        Self {
            event_id: id,
            timestamp,
            kind,
        }
    }

    /// Its encoded bytes (the codec's value format).
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(self).expect("a history event always encodes")
    }

    /// The length of [`HistoryEvent::encode`]'s bytes, counted without encoding (what the
    /// history's byte count adds).
    pub fn encoded_len(&self) -> usize {
        crate::codec::encoded_len(self).expect("a history event always encodes")
    }

    /// Decodes bytes written by [`HistoryEvent::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, crate::codec::Error> {
        crate::codec::decode(bytes)
    }

    /// Durable Task's name for its kind (`TaskScheduled`, `ExecutionStarted`, ...).
    pub fn kind_name(&self) -> &'static str {
        self.kind.name()
    }
}

/// What happened. Variants are only ever added at the end (the encoding names them by index).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// The execution started: the first event of every execution's history.
    ExecutionStarted {
        /// The orchestrator's name.
        name: String,
        /// The orchestrator's version, if the caller gave one.
        version: Option<String>,
        /// The input (JSON text).
        input: Option<String>,
        /// The instance that started this one as a sub-orchestration.
        parent: Option<ParentInstance>,
        /// Not before this time (a scheduled start).
        scheduled_start: Option<Millis>,
        /// The execution's id (new for each start and each continue-as-new).
        execution_id: String,
    },
    /// The execution ended.
    ExecutionCompleted {
        /// `Completed`, `Failed` (or `Terminated`, when written by a terminate).
        status: RuntimeStatus,
        /// The output (JSON text).
        result: Option<String>,
        /// Why it failed.
        failure: Option<FailureDetails>,
    },
    /// Someone asked to terminate the instance (an inbox event; the turn that takes it ends
    /// the execution as `Terminated`).
    ExecutionTerminated {
        /// The reason given (JSON text).
        reason: Option<String>,
        /// Terminate its sub-orchestrations too.
        recurse: bool,
    },
    /// An activity was scheduled (`event_id` = its task id).
    TaskScheduled {
        /// The activity's name.
        name: String,
        /// Its input (JSON text).
        input: Option<String>,
    },
    /// An activity returned.
    TaskCompleted {
        /// The task it answers.
        scheduled_id: TaskId,
        /// Its result (JSON text).
        result: Option<String>,
    },
    /// An activity failed.
    TaskFailed {
        /// The task it answers.
        scheduled_id: TaskId,
        /// Why.
        failure: FailureDetails,
    },
    /// A sub-orchestration was started (`event_id` = its task id).
    SubOrchestrationCreated {
        /// Its orchestrator's name.
        name: String,
        /// Its instance id.
        instance_id: InstanceId,
        /// Its input (JSON text).
        input: Option<String>,
    },
    /// A sub-orchestration completed.
    SubOrchestrationCompleted {
        /// The task it answers.
        scheduled_id: TaskId,
        /// Its output (JSON text).
        result: Option<String>,
    },
    /// A sub-orchestration failed (or was terminated).
    SubOrchestrationFailed {
        /// The task it answers.
        scheduled_id: TaskId,
        /// Why.
        failure: FailureDetails,
    },
    /// A durable timer was created (`event_id` = its task id).
    TimerCreated {
        /// When it fires (milliseconds since the epoch).
        fire_at: Millis,
    },
    /// A durable timer fired.
    TimerFired {
        /// The task it answers.
        timer_id: TaskId,
        /// When it was due.
        fire_at: Millis,
    },
    /// A turn began: its timestamp is the orchestrator's current time for the turn.
    OrchestratorStarted,
    /// A turn ended.
    OrchestratorCompleted,
    /// An event was sent to another instance (`event_id` = its task id).
    EventSent {
        /// The receiver.
        instance_id: InstanceId,
        /// The event's name.
        name: String,
        /// Its data (JSON text).
        input: Option<String>,
    },
    /// An external event arrived.
    EventRaised {
        /// The event's name.
        name: String,
        /// Its data (JSON text).
        input: Option<String>,
    },
    /// The execution continued as new (the turn that takes this restarts the instance).
    ContinueAsNew {
        /// The new input (JSON text).
        input: Option<String>,
    },
    /// The instance was suspended: events other than resume and terminate wait in its inbox.
    ExecutionSuspended {
        /// The reason given.
        reason: Option<String>,
    },
    /// The instance was resumed.
    ExecutionResumed {
        /// The reason given.
        reason: Option<String>,
    },
    /// A signal to an entity was sent (`event_id` = its task id).
    EntityOperationSignaled {
        /// The request's id.
        request_id: String,
        /// The entity, `@name@key`.
        target: String,
        /// The operation.
        operation: String,
        /// Its input (JSON text).
        input: Option<String>,
        /// Delivered no earlier than this.
        scheduled_time: Option<Millis>,
    },
    /// An entity operation was called (`event_id` = its task id).
    EntityOperationCalled {
        /// The request's id (the response names it).
        request_id: String,
        /// The entity, `@name@key`.
        target: String,
        /// The operation.
        operation: String,
        /// Its input (JSON text).
        input: Option<String>,
    },
    /// A called entity operation returned.
    EntityOperationCompleted {
        /// The request it answers.
        request_id: String,
        /// Its result (JSON text).
        output: Option<String>,
    },
    /// A called entity operation failed.
    EntityOperationFailed {
        /// The request it answers.
        request_id: String,
        /// Why.
        failure: FailureDetails,
    },
    /// A set of entities was asked for (`event_id` = its task id): the critical section's id and
    /// its entities in the order they are acquired.
    EntityLockRequested {
        /// The critical section's id.
        critical_section_id: String,
        /// The entities, `@name@key`, sorted.
        lock_set: Vec<String>,
    },
    /// Every entity of the set was acquired.
    EntityLockGranted {
        /// The critical section's id.
        critical_section_id: String,
    },
    /// An entity was released.
    EntityUnlockSent {
        /// The critical section's id.
        critical_section_id: String,
        /// The entity, `@name@key`.
        target: String,
    },
    /// A failed instance was rewound: its failed tasks run again.
    ExecutionRewound {
        /// The reason given.
        reason: Option<String>,
    },
}

impl EventKind {
    /// Whether the event records a decision of the orchestrator (it schedules something:
    /// an activity, a timer, a sub-orchestration, an event sent, an entity operation or lock).
    pub fn is_decision(&self) -> bool {
        matches!(
            self,
            EventKind::TaskScheduled { .. }
                | EventKind::TimerCreated { .. }
                | EventKind::SubOrchestrationCreated { .. }
                | EventKind::EventSent { .. }
                | EventKind::EntityOperationSignaled { .. }
                | EventKind::EntityOperationCalled { .. }
                | EventKind::EntityLockRequested { .. }
                | EventKind::EntityUnlockSent { .. }
        )
    }

    /// Durable Task's name for this kind.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::ExecutionStarted { .. } => "ExecutionStarted",
            EventKind::ExecutionCompleted { .. } => "ExecutionCompleted",
            EventKind::ExecutionTerminated { .. } => "ExecutionTerminated",
            EventKind::TaskScheduled { .. } => "TaskScheduled",
            EventKind::TaskCompleted { .. } => "TaskCompleted",
            EventKind::TaskFailed { .. } => "TaskFailed",
            EventKind::SubOrchestrationCreated { .. } => "SubOrchestrationInstanceCreated",
            EventKind::SubOrchestrationCompleted { .. } => "SubOrchestrationInstanceCompleted",
            EventKind::SubOrchestrationFailed { .. } => "SubOrchestrationInstanceFailed",
            EventKind::TimerCreated { .. } => "TimerCreated",
            EventKind::TimerFired { .. } => "TimerFired",
            EventKind::OrchestratorStarted => "OrchestratorStarted",
            EventKind::OrchestratorCompleted => "OrchestratorCompleted",
            EventKind::EventSent { .. } => "EventSent",
            EventKind::EventRaised { .. } => "EventRaised",
            EventKind::ContinueAsNew { .. } => "ContinueAsNew",
            EventKind::ExecutionSuspended { .. } => "ExecutionSuspended",
            EventKind::ExecutionResumed { .. } => "ExecutionResumed",
            EventKind::EntityOperationSignaled { .. } => "EntityOperationSignaled",
            EventKind::EntityOperationCalled { .. } => "EntityOperationCalled",
            EventKind::EntityOperationCompleted { .. } => "EntityOperationCompleted",
            EventKind::EntityOperationFailed { .. } => "EntityOperationFailed",
            EventKind::EntityLockRequested { .. } => "EntityLockRequested",
            EventKind::EntityLockGranted { .. } => "EntityLockGranted",
            EventKind::EntityUnlockSent { .. } => "EntityUnlockSent",
            EventKind::ExecutionRewound { .. } => "ExecutionRewound",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_round_trips() {
        let e = HistoryEvent::scheduled(
            3,
            1_700_000_000_000,
            EventKind::TaskScheduled {
                name: "SayHello".into(),
                input: Some("\"Tokyo\"".into()),
            },
        );
        assert_eq!(HistoryEvent::decode(&e.encode()).unwrap(), e);
        assert_eq!(e.kind_name(), "TaskScheduled");
    }

    #[test]
    fn the_encoded_length_is_counted_without_encoding() {
        let big = "x".repeat(70_000);
        let events = [
            HistoryEvent::new(0, EventKind::OrchestratorStarted),
            HistoryEvent::new(
                u64::MAX,
                EventKind::TaskCompleted {
                    scheduled_id: 7,
                    result: Some(big.clone()),
                },
            ),
            HistoryEvent::scheduled(
                1_000_000,
                1_700_000_000_000,
                EventKind::TaskScheduled {
                    name: "SayHello".into(),
                    input: None,
                },
            ),
            HistoryEvent::new(
                5,
                EventKind::TaskFailed {
                    scheduled_id: -1,
                    failure: FailureDetails::new("E", big),
                },
            ),
        ];
        for e in &events {
            assert_eq!(e.encoded_len(), e.encode().len(), "{}", e.kind_name());
        }
    }
}
