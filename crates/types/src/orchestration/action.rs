//! The decisions one turn of an orchestrator makes (Durable Task's `OrchestratorAction`): what
//! an in-process Rust orchestrator and a remote gRPC worker both hand back, turned into history
//! events and partition ops in one place on the leader.

use super::history::{FailureDetails, HistoryEvent};
use super::status::RuntimeStatus;
use super::TaskId;
use crate::command::Millis;
use crate::target::InstanceId;
use serde::{Deserialize, Serialize};

/// One decision. `id` is the task id it schedules (the action's sequence number in the
/// execution); the history records it as the scheduling event's `event_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Run an activity.
    ScheduleTask {
        /// The task id.
        id: TaskId,
        /// The activity's name.
        name: String,
        /// Its input (JSON text).
        input: Option<String>,
    },
    /// Start a sub-orchestration.
    CreateSubOrchestration {
        /// The task id.
        id: TaskId,
        /// The orchestrator's name.
        name: String,
        /// The child's instance id.
        instance_id: InstanceId,
        /// Its input (JSON text).
        input: Option<String>,
    },
    /// Start a durable timer.
    CreateTimer {
        /// The task id.
        id: TaskId,
        /// When it fires.
        fire_at: Millis,
    },
    /// Drop a timer that is no longer awaited (perdure's in-process model; the timer's task
    /// never completes).
    CancelTimer {
        /// The timer's task id.
        timer_id: TaskId,
    },
    /// Raise an event on another instance.
    SendEvent {
        /// The task id.
        id: TaskId,
        /// The receiver.
        instance_id: InstanceId,
        /// The event's name.
        name: String,
        /// Its data (JSON text).
        data: Option<String>,
    },
    /// Signal an entity (one-way).
    SignalEntity {
        /// The task id.
        id: TaskId,
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
    /// Call an entity operation; its result arrives as `EntityOperationCompleted`/`Failed`.
    CallEntity {
        /// The task id.
        id: TaskId,
        /// The request's id.
        request_id: String,
        /// The entity, `@name@key`.
        target: String,
        /// The operation.
        operation: String,
        /// Its input (JSON text).
        input: Option<String>,
    },
    /// Acquire a set of entities (a critical section), in the order given (sorted).
    LockEntities {
        /// The task id.
        id: TaskId,
        /// The critical section's id.
        critical_section_id: String,
        /// The entities, `@name@key`, sorted.
        lock_set: Vec<String>,
    },
    /// Release one entity of a critical section.
    UnlockEntity {
        /// The task id.
        id: TaskId,
        /// The critical section's id.
        critical_section_id: String,
        /// The entity, `@name@key`.
        target: String,
    },
    /// End the execution: completed, failed, or continued as new (with the events that arrived
    /// and were not consumed, for the next execution).
    CompleteOrchestration {
        /// The task id.
        id: TaskId,
        /// `Completed`, `Failed` or `ContinuedAsNew`.
        status: RuntimeStatus,
        /// The output (JSON text), or the new input for `ContinuedAsNew`.
        result: Option<String>,
        /// Why it failed.
        failure: Option<FailureDetails>,
        /// Events carried over to the next execution (`ContinuedAsNew`).
        carryover_events: Vec<HistoryEvent>,
    },
    /// Terminate another instance.
    TerminateOrchestration {
        /// The task id.
        id: TaskId,
        /// The instance.
        instance_id: InstanceId,
        /// The reason (JSON text).
        reason: Option<String>,
        /// Its sub-orchestrations too.
        recurse: bool,
    },
}

impl Action {
    /// The task id this action schedules (for `CancelTimer`, the timer's).
    pub fn id(&self) -> TaskId {
        match self {
            Action::ScheduleTask { id, .. }
            | Action::CreateSubOrchestration { id, .. }
            | Action::CreateTimer { id, .. }
            | Action::SendEvent { id, .. }
            | Action::SignalEntity { id, .. }
            | Action::CallEntity { id, .. }
            | Action::LockEntities { id, .. }
            | Action::UnlockEntity { id, .. }
            | Action::CompleteOrchestration { id, .. }
            | Action::TerminateOrchestration { id, .. } => *id,
            Action::CancelTimer { timer_id } => *timer_id,
        }
    }
}

/// What a turn of an orchestrator hands back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TurnOutput {
    /// New decisions, in the order made.
    pub actions: Vec<Action>,
    /// The custom status after the turn (JSON text), `None` when never set.
    pub custom_status: Option<String>,
}
