//! A worker's `OrchestratorAction` as perdure's [`Action`], or, for `rewindOrchestration`
//! (which perdure's in-process orchestrators never make), a [`Decision::Rewind`] of its own.
//!
//! Fields perdure's actions do not carry are dropped: versions and tags of activities and
//! sub-orchestrations, trace contexts, `completeOrchestration.newVersion` and `.details`.

use super::history::{entity, instance};
use super::{event_from_proto, failure_from_proto, millis, status_from_proto, text, ConvertError};
use crate::proto;
use crate::proto::orchestrator_action::OrchestratorActionType as A;
use crate::proto::send_entity_message_action::EntityMessageType as M;
use perdure_types::orchestration::TaskId;
use perdure_types::orchestration::{Action, HistoryEvent, RuntimeStatus};

/// What one action of a worker's response asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// One of perdure's actions.
    Action(Action),
    /// Replace the history of the instance being rewound with `new_history` (the SDK's answer to
    /// an `executionRewound` dispatch).
    Rewind {
        /// The action's id (the SDK sends -1).
        id: TaskId,
        /// The history to keep.
        new_history: Vec<HistoryEvent>,
    },
}

/// An action perdure cannot take, naming it by its id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("orchestrator action {id}: {reason}")]
pub struct ActionError {
    /// The action's id.
    pub id: TaskId,
    /// What is wrong with it.
    #[source]
    pub reason: ConvertError,
}

/// Converts one action of a worker's `OrchestratorResponse`.
pub fn action_from_proto(a: proto::OrchestratorAction) -> Result<Decision, ActionError> {
    let id = a.id;
    let t = a
        .orchestrator_action_type
        .ok_or(ConvertError::MissingOneof("orchestratorActionType"))
        .map_err(|reason| ActionError { id, reason })?;
    convert(id, t).map_err(|reason| ActionError { id, reason })
}

fn convert(id: TaskId, t: A) -> Result<Decision, ConvertError> {
    let action = match t {
        A::ScheduleTask(s) => Action::ScheduleTask {
            id,
            name: s.name,
            input: text(s.input),
        },
        A::CreateSubOrchestration(c) => Action::CreateSubOrchestration {
            id,
            name: c.name,
            instance_id: instance(c.instance_id)?,
            input: text(c.input),
        },
        A::CreateTimer(t) => Action::CreateTimer {
            id,
            fire_at: millis(&t.fire_at.ok_or(ConvertError::MissingField("fireAt"))?),
        },
        A::SendEvent(s) => Action::SendEvent {
            id,
            instance_id: instance(
                s.instance
                    .ok_or(ConvertError::MissingField("instance"))?
                    .instance_id,
            )?,
            name: s.name,
            data: text(s.data),
        },
        A::CompleteOrchestration(c) => complete(id, c)?,
        A::TerminateOrchestration(t) => Action::TerminateOrchestration {
            id,
            instance_id: instance(t.instance_id)?,
            reason: text(t.reason),
            recurse: t.recurse,
        },
        A::SendEntityMessage(m) => entity_message(
            id,
            m.entity_message_type.ok_or(ConvertError::MissingOneof(
                "sendEntityMessage.EntityMessageType",
            ))?,
        )?,
        A::RewindOrchestration(r) => {
            return Ok(Decision::Rewind {
                id,
                new_history: events(r.new_history)?,
            })
        }
    };
    Ok(Decision::Action(action))
}

/// Nested events, each converted; the error names the failing one's position.
fn events(list: Vec<proto::HistoryEvent>) -> Result<Vec<HistoryEvent>, ConvertError> {
    list.into_iter()
        .enumerate()
        .map(|(index, e)| {
            event_from_proto(e).map_err(|e| ConvertError::Event {
                index,
                source: Box::new(e),
            })
        })
        .collect()
}

fn complete(id: TaskId, c: proto::CompleteOrchestrationAction) -> Result<Action, ConvertError> {
    let status = match status_from_proto(c.orchestration_status) {
        Some(
            s @ (RuntimeStatus::Completed
            | RuntimeStatus::Failed
            | RuntimeStatus::Terminated
            | RuntimeStatus::ContinuedAsNew),
        ) => s,
        _ => return Err(ConvertError::BadStatus(c.orchestration_status)),
    };
    Ok(Action::CompleteOrchestration {
        id,
        status,
        result: text(c.result),
        failure: c.failure_details.map(failure_from_proto),
        carryover_events: events(c.carryover_events)?,
    })
}

fn entity_message(id: TaskId, m: M) -> Result<Action, ConvertError> {
    Ok(match m {
        M::EntityOperationSignaled(s) => Action::SignalEntity {
            id,
            target: entity(s.target_instance_id)?,
            request_id: s.request_id,
            operation: s.operation,
            input: text(s.input),
            scheduled_time: s.scheduled_time.as_ref().map(millis),
        },
        M::EntityOperationCalled(c) => Action::CallEntity {
            id,
            target: entity(c.target_instance_id)?,
            request_id: c.request_id,
            operation: c.operation,
            input: text(c.input),
        },
        M::EntityLockRequested(l) => Action::LockEntities {
            id,
            lock_set: l
                .lock_set
                .into_iter()
                .map(|e| entity(Some(e)))
                .collect::<Result<_, _>>()?,
            critical_section_id: l.critical_section_id,
        },
        M::EntityUnlockSent(u) => Action::UnlockEntity {
            id,
            target: entity(u.target_instance_id)?,
            critical_section_id: u.critical_section_id,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::timestamp;
    use perdure_types::orchestration::{EventKind, FailureDetails};
    use perdure_types::InstanceId;

    fn act(id: TaskId, t: A) -> Result<Decision, ActionError> {
        action_from_proto(proto::OrchestratorAction {
            id,
            orchestrator_action_type: Some(t),
        })
    }

    fn ok(id: TaskId, t: A) -> Action {
        match act(id, t).unwrap() {
            Decision::Action(a) => a,
            other => panic!("{other:?}"),
        }
    }

    fn iid(s: &str) -> InstanceId {
        InstanceId::new(s).unwrap()
    }

    #[test]
    fn schedule_task_timer_sub_orchestration_send_event_and_terminate() {
        assert_eq!(
            ok(
                1,
                A::ScheduleTask(proto::ScheduleTaskAction {
                    name: "SayHello".into(),
                    input: Some("\"Tokyo\"".into()),
                    version: Some("2".into()),
                    ..Default::default()
                })
            ),
            Action::ScheduleTask {
                id: 1,
                name: "SayHello".into(),
                input: Some("\"Tokyo\"".into())
            }
        );
        assert_eq!(
            ok(
                2,
                A::CreateTimer(proto::CreateTimerAction {
                    fire_at: Some(timestamp(5_000))
                })
            ),
            Action::CreateTimer {
                id: 2,
                fire_at: 5_000
            }
        );
        assert_eq!(
            ok(
                3,
                A::CreateSubOrchestration(proto::CreateSubOrchestrationAction {
                    instance_id: "abc:0003".into(),
                    name: "Child".into(),
                    input: Some(String::new()),
                    ..Default::default()
                })
            ),
            Action::CreateSubOrchestration {
                id: 3,
                name: "Child".into(),
                instance_id: iid("abc:0003"),
                input: None
            }
        );
        assert_eq!(
            ok(
                4,
                A::SendEvent(proto::SendEventAction {
                    instance: Some(proto::OrchestrationInstance {
                        instance_id: "other".into(),
                        execution_id: None
                    }),
                    name: "Go".into(),
                    data: Some("1".into())
                })
            ),
            Action::SendEvent {
                id: 4,
                instance_id: iid("other"),
                name: "Go".into(),
                data: Some("1".into())
            }
        );
        assert_eq!(
            ok(
                5,
                A::TerminateOrchestration(proto::TerminateOrchestrationAction {
                    instance_id: "other".into(),
                    reason: Some("\"r\"".into()),
                    recurse: true
                })
            ),
            Action::TerminateOrchestration {
                id: 5,
                instance_id: iid("other"),
                reason: Some("\"r\"".into()),
                recurse: true
            }
        );
    }

    #[test]
    fn complete_orchestration_keeps_its_failure_and_carried_over_events() {
        let raised = proto::HistoryEvent {
            event_id: -1,
            timestamp: Some(timestamp(7)),
            event_type: Some(proto::history_event::EventType::EventRaised(
                proto::EventRaisedEvent {
                    name: "e".into(),
                    input: Some("1".into()),
                },
            )),
        };
        let a = ok(
            6,
            A::CompleteOrchestration(proto::CompleteOrchestrationAction {
                orchestration_status: proto::OrchestrationStatus::ContinuedAsNew as i32,
                result: Some("2".into()),
                carryover_events: vec![raised],
                failure_details: Some(proto::TaskFailureDetails {
                    error_type: "E".into(),
                    error_message: "m".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        );
        assert_eq!(
            a,
            Action::CompleteOrchestration {
                id: 6,
                status: RuntimeStatus::ContinuedAsNew,
                result: Some("2".into()),
                failure: Some(FailureDetails::new("E", "m")),
                carryover_events: vec![HistoryEvent::new(
                    7,
                    EventKind::EventRaised {
                        name: "e".into(),
                        input: Some("1".into())
                    }
                )],
            }
        );
        let running = act(
            7,
            A::CompleteOrchestration(proto::CompleteOrchestrationAction {
                orchestration_status: proto::OrchestrationStatus::Running as i32,
                ..Default::default()
            }),
        );
        assert_eq!(
            running,
            Err(ActionError {
                id: 7,
                reason: ConvertError::BadStatus(0)
            })
        );
    }

    fn entity_msg(id: TaskId, m: M) -> Result<Decision, ActionError> {
        act(
            id,
            A::SendEntityMessage(proto::SendEntityMessageAction {
                entity_message_type: Some(m),
            }),
        )
    }

    #[test]
    fn the_four_entity_messages_become_signal_call_lock_and_unlock() {
        let signal = entity_msg(
            1,
            M::EntityOperationSignaled(proto::EntityOperationSignaledEvent {
                request_id: "r1".into(),
                operation: "add".into(),
                scheduled_time: Some(timestamp(9_000)),
                input: Some("1".into()),
                target_instance_id: Some("@counter@a".into()),
            }),
        );
        assert_eq!(
            signal.unwrap(),
            Decision::Action(Action::SignalEntity {
                id: 1,
                request_id: "r1".into(),
                target: "@counter@a".into(),
                operation: "add".into(),
                input: Some("1".into()),
                scheduled_time: Some(9_000)
            })
        );
        let call = entity_msg(
            2,
            M::EntityOperationCalled(proto::EntityOperationCalledEvent {
                request_id: "r2".into(),
                operation: "get".into(),
                parent_instance_id: Some("me".into()),
                target_instance_id: Some("@counter@a".into()),
                ..Default::default()
            }),
        );
        assert_eq!(
            call.unwrap(),
            Decision::Action(Action::CallEntity {
                id: 2,
                request_id: "r2".into(),
                target: "@counter@a".into(),
                operation: "get".into(),
                input: None
            })
        );
        let lock = entity_msg(
            3,
            M::EntityLockRequested(proto::EntityLockRequestedEvent {
                critical_section_id: "cs".into(),
                lock_set: vec!["@counter@a".into(), "@counter@b".into()],
                position: 0,
                parent_instance_id: Some("me".into()),
            }),
        );
        assert_eq!(
            lock.unwrap(),
            Decision::Action(Action::LockEntities {
                id: 3,
                critical_section_id: "cs".into(),
                lock_set: vec!["@counter@a".into(), "@counter@b".into()]
            })
        );
        let unlock = entity_msg(
            4,
            M::EntityUnlockSent(proto::EntityUnlockSentEvent {
                critical_section_id: "cs".into(),
                parent_instance_id: Some("me".into()),
                target_instance_id: Some("@counter@b".into()),
            }),
        );
        assert_eq!(
            unlock.unwrap(),
            Decision::Action(Action::UnlockEntity {
                id: 4,
                critical_section_id: "cs".into(),
                target: "@counter@b".into()
            })
        );
    }

    #[test]
    fn rewind_is_a_decision_of_its_own() {
        let d = act(
            -1,
            A::RewindOrchestration(proto::RewindOrchestrationAction {
                new_history: vec![proto::HistoryEvent {
                    event_id: -1,
                    timestamp: Some(timestamp(1)),
                    event_type: Some(proto::history_event::EventType::OrchestratorStarted(
                        proto::OrchestratorStartedEvent {},
                    )),
                }],
            }),
        );
        assert_eq!(
            d.unwrap(),
            Decision::Rewind {
                id: -1,
                new_history: vec![HistoryEvent::new(1, EventKind::OrchestratorStarted)]
            }
        );
    }

    #[test]
    fn an_action_perdure_cannot_take_is_an_error_naming_its_id() {
        let none = action_from_proto(proto::OrchestratorAction {
            id: 9,
            orchestrator_action_type: None,
        })
        .unwrap_err();
        assert_eq!(none.id, 9);
        assert!(none.to_string().contains("action 9"), "{none}");
        let bad = entity_msg(
            10,
            M::EntityOperationSignaled(proto::EntityOperationSignaledEvent {
                target_instance_id: Some("counter/a".into()),
                ..Default::default()
            }),
        )
        .unwrap_err();
        assert_eq!(bad.id, 10);
        assert!(
            matches!(bad.reason, ConvertError::BadEntityId { .. }),
            "{bad}"
        );
        let empty = act(
            11,
            A::SendEntityMessage(proto::SendEntityMessageAction {
                entity_message_type: None,
            }),
        )
        .unwrap_err();
        assert_eq!(empty.id, 11);
        let bad_carry = act(
            12,
            A::CompleteOrchestration(proto::CompleteOrchestrationAction {
                orchestration_status: proto::OrchestrationStatus::Completed as i32,
                carryover_events: vec![proto::HistoryEvent::default()],
                ..Default::default()
            }),
        )
        .unwrap_err();
        assert_eq!(
            bad_carry.reason,
            ConvertError::Event {
                index: 0,
                source: Box::new(ConvertError::MissingOneof("eventType"))
            }
        );
    }
}
