//! Replay checks: what a decision looks like, what a history's scheduling event looks like, and
//! whether the two are the same step (else the code changed since the history was written, and
//! the message names the step).

use perdure_types::orchestration::{Action, EventKind};

/// The comparable part of a decision, or of the history event that records one. Ids the runtime
/// or the GUID sequence chose (request ids, critical sections, timer times) are kept for
/// bookkeeping but not compared: Durable Task compares the kind and the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Shape {
    /// An activity.
    Activity { name: String },
    /// A durable timer.
    Timer,
    /// A sub-orchestration.
    SubOrchestration { name: String },
    /// An event sent to another instance.
    EventSent { instance_id: String, name: String },
    /// A one-way entity signal.
    Signal { target: String, operation: String },
    /// An entity call.
    Call {
        target: String,
        operation: String,
        request_id: String,
    },
    /// A lock request.
    Lock {
        lock_set: Vec<String>,
        critical_section_id: String,
    },
    /// An entity released.
    Unlock { target: String },
    /// The end of the execution (recorded as `ExecutionCompleted`).
    Complete,
    /// Another instance terminated (never made by the Rust model).
    Terminate { instance_id: String },
}

impl Shape {
    /// The shape of a decision; `None` for `CancelTimer`, which takes no task id and is not
    /// recorded in the history.
    pub(crate) fn of_action(a: &Action) -> Option<Shape> {
        Some(match a {
            Action::ScheduleTask { name, .. } => Shape::Activity { name: name.clone() },
            Action::CreateTimer { .. } => Shape::Timer,
            Action::CreateSubOrchestration { name, .. } => {
                Shape::SubOrchestration { name: name.clone() }
            }
            Action::SendEvent {
                instance_id, name, ..
            } => Shape::EventSent {
                instance_id: instance_id.to_string(),
                name: name.clone(),
            },
            Action::SignalEntity {
                target, operation, ..
            } => Shape::Signal {
                target: target.clone(),
                operation: operation.clone(),
            },
            Action::CallEntity {
                target,
                operation,
                request_id,
                ..
            } => Shape::Call {
                target: target.clone(),
                operation: operation.clone(),
                request_id: request_id.clone(),
            },
            Action::LockEntities {
                lock_set,
                critical_section_id,
                ..
            } => Shape::Lock {
                lock_set: lock_set.clone(),
                critical_section_id: critical_section_id.clone(),
            },
            Action::UnlockEntity { target, .. } => Shape::Unlock {
                target: target.clone(),
            },
            Action::CompleteOrchestration { .. } => Shape::Complete,
            Action::TerminateOrchestration { instance_id, .. } => Shape::Terminate {
                instance_id: instance_id.to_string(),
            },
            Action::CancelTimer { .. } => return None,
        })
    }

    /// The shape of a history event that records a decision (its `event_id` is the decision's
    /// task id); `None` for every other event.
    pub(crate) fn of_event(k: &EventKind) -> Option<Shape> {
        Some(match k {
            EventKind::TaskScheduled { name, .. } => Shape::Activity { name: name.clone() },
            EventKind::TimerCreated { .. } => Shape::Timer,
            EventKind::SubOrchestrationCreated { name, .. } => {
                Shape::SubOrchestration { name: name.clone() }
            }
            EventKind::EventSent {
                instance_id, name, ..
            } => Shape::EventSent {
                instance_id: instance_id.to_string(),
                name: name.clone(),
            },
            EventKind::EntityOperationSignaled {
                target, operation, ..
            } => Shape::Signal {
                target: target.clone(),
                operation: operation.clone(),
            },
            EventKind::EntityOperationCalled {
                target,
                operation,
                request_id,
                ..
            } => Shape::Call {
                target: target.clone(),
                operation: operation.clone(),
                request_id: request_id.clone(),
            },
            EventKind::EntityLockRequested {
                lock_set,
                critical_section_id,
            } => Shape::Lock {
                lock_set: lock_set.clone(),
                critical_section_id: critical_section_id.clone(),
            },
            EventKind::EntityUnlockSent { target, .. } => Shape::Unlock {
                target: target.clone(),
            },
            _ => return None,
        })
    }

    /// Whether the history's step `recorded` is this decision. Names of activities,
    /// orchestrators, events and operations compare case-insensitively (their lookups are).
    pub(crate) fn is_recorded_as(&self, recorded: &Shape) -> bool {
        use Shape::*;
        let same = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        match (self, recorded) {
            (Activity { name: a }, Activity { name: b }) => same(a, b),
            (Timer, Timer) | (Complete, Complete) => true,
            (SubOrchestration { name: a }, SubOrchestration { name: b }) => same(a, b),
            (
                EventSent {
                    instance_id: ia,
                    name: a,
                },
                EventSent {
                    instance_id: ib,
                    name: b,
                },
            ) => ia == ib && same(a, b),
            (
                Signal {
                    target: ta,
                    operation: a,
                },
                Signal {
                    target: tb,
                    operation: b,
                },
            )
            | (
                Call {
                    target: ta,
                    operation: a,
                    ..
                },
                Call {
                    target: tb,
                    operation: b,
                    ..
                },
            ) => ta == tb && same(a, b),
            (Lock { lock_set: a, .. }, Lock { lock_set: b, .. }) => a == b,
            (Unlock { target: a }, Unlock { target: b }) => a == b,
            (Terminate { instance_id: a }, Terminate { instance_id: b }) => a == b,
            _ => false,
        }
    }

    /// How the history puts it: `activity "SayHello" scheduled`.
    pub(crate) fn as_recorded(&self) -> String {
        match self {
            Shape::Activity { name } => format!("activity {name:?} scheduled"),
            Shape::Timer => "a timer created".into(),
            Shape::SubOrchestration { name } => format!("sub-orchestration {name:?} started"),
            Shape::EventSent { instance_id, name } => {
                format!("event {name:?} sent to instance {instance_id:?}")
            }
            Shape::Signal { target, operation } => {
                format!("entity {target:?} signaled with operation {operation:?}")
            }
            Shape::Call {
                target, operation, ..
            } => format!("operation {operation:?} of entity {target:?} called"),
            Shape::Lock { lock_set, .. } => format!("a lock on entities {lock_set:?} requested"),
            Shape::Unlock { target } => format!("entity {target:?} unlocked"),
            Shape::Complete => "the orchestration completed".into(),
            Shape::Terminate { instance_id } => format!("instance {instance_id:?} terminated"),
        }
    }

    /// How the code puts it: `calls activity "SayBye"`.
    pub(crate) fn as_made(&self) -> String {
        match self {
            Shape::Activity { name } => format!("calls activity {name:?}"),
            Shape::Timer => "creates a timer".into(),
            Shape::SubOrchestration { name } => format!("calls sub-orchestration {name:?}"),
            Shape::EventSent { instance_id, name } => {
                format!("sends event {name:?} to instance {instance_id:?}")
            }
            Shape::Signal { target, operation } => {
                format!("signals entity {target:?} with operation {operation:?}")
            }
            Shape::Call {
                target, operation, ..
            } => format!("calls operation {operation:?} of entity {target:?}"),
            Shape::Lock { lock_set, .. } => format!("locks entities {lock_set:?}"),
            Shape::Unlock { target } => format!("unlocks entity {target:?}"),
            Shape::Complete => "completes the orchestration".into(),
            Shape::Terminate { instance_id } => format!("terminates instance {instance_id:?}"),
        }
    }
}

/// The message of a nondeterminism failure at step `step` (a task id): what the history
/// recorded there, and what the code does there now (`None`: nothing).
pub(crate) fn mismatch_message(step: i32, recorded: &Shape, made: Option<&Shape>) -> String {
    let now = made.map_or_else(
        || "makes no decision at that step".to_string(),
        Shape::as_made,
    );
    format!(
        "step {step}: the history has {}, but the code now {now}",
        recorded.as_recorded()
    )
}
