//! History events both ways: perdure's [`HistoryEvent`] (every [`EventKind`]) and the
//! protocol's `HistoryEvent` (its `eventType` oneof). `eventId` and the timestamp (milliseconds,
//! stored verbatim) carry over unchanged; entity events keep their target (`targetInstanceId`),
//! which the SDK parses on replay.

use super::{
    failure_from_proto, failure_to_proto, millis, status_from_proto, status_to_proto, text,
    timestamp, ConvertError,
};
use crate::proto;
use crate::proto::history_event::EventType as E;
use perdure_types::orchestration::{EventKind, HistoryEvent, ParentInstance};
use perdure_types::{EntityId, InstanceId};

/// `@name@key`, validated, in its canonical form (name lower-cased).
pub(crate) fn entity(id: Option<String>) -> Result<String, ConvertError> {
    let id = text(id).ok_or(ConvertError::MissingField("targetInstanceId"))?;
    EntityId::from_canonical(&id)
        .map(|e| e.canonical())
        .map_err(|source| ConvertError::BadEntityId { id, source })
}

/// A valid instance id.
pub(crate) fn instance(id: String) -> Result<InstanceId, ConvertError> {
    InstanceId::new(&id).map_err(|source| ConvertError::BadInstanceId { id, source })
}

fn instance_ref(id: &str, execution: Option<&str>) -> proto::OrchestrationInstance {
    proto::OrchestrationInstance {
        instance_id: id.to_string(),
        execution_id: execution.map(str::to_string),
    }
}

/// An event of instance `instance_id` as the protocol's (the instance id fills
/// `executionStarted.orchestrationInstance`).
pub fn event_to_proto(e: &HistoryEvent, instance_id: &str) -> proto::HistoryEvent {
    proto::HistoryEvent {
        event_id: e.event_id,
        timestamp: Some(timestamp(e.timestamp)),
        event_type: Some(kind_to_proto(&e.kind, instance_id)),
    }
}

fn kind_to_proto(k: &EventKind, instance_id: &str) -> E {
    match k.clone() {
        EventKind::ExecutionStarted {
            name,
            version,
            input,
            parent,
            scheduled_start,
            execution_id,
        } => E::ExecutionStarted(proto::ExecutionStartedEvent {
            name,
            version,
            input,
            orchestration_instance: Some(instance_ref(instance_id, Some(&execution_id))),
            parent_instance: parent.map(|p| proto::ParentInstanceInfo {
                task_scheduled_id: p.task_id,
                name: Some(p.name),
                version: None,
                orchestration_instance: Some(instance_ref(
                    p.instance_id.as_str(),
                    Some(&p.execution_id),
                )),
            }),
            scheduled_start_timestamp: scheduled_start.map(timestamp),
            ..Default::default()
        }),
        EventKind::ExecutionCompleted {
            status,
            result,
            failure,
        } => E::ExecutionCompleted(proto::ExecutionCompletedEvent {
            orchestration_status: status_to_proto(status) as i32,
            result,
            failure_details: failure.as_ref().map(failure_to_proto),
        }),
        EventKind::ExecutionTerminated { reason, recurse } => {
            E::ExecutionTerminated(proto::ExecutionTerminatedEvent {
                input: reason,
                recurse,
            })
        }
        EventKind::TaskScheduled { name, input } => E::TaskScheduled(proto::TaskScheduledEvent {
            name,
            input,
            ..Default::default()
        }),
        EventKind::TaskCompleted {
            scheduled_id,
            result,
        } => E::TaskCompleted(proto::TaskCompletedEvent {
            task_scheduled_id: scheduled_id,
            result,
        }),
        EventKind::TaskFailed {
            scheduled_id,
            failure,
        } => E::TaskFailed(proto::TaskFailedEvent {
            task_scheduled_id: scheduled_id,
            failure_details: Some(failure_to_proto(&failure)),
        }),
        EventKind::SubOrchestrationCreated {
            name,
            instance_id,
            input,
        } => E::SubOrchestrationInstanceCreated(proto::SubOrchestrationInstanceCreatedEvent {
            instance_id: instance_id.as_str().to_string(),
            name,
            input,
            ..Default::default()
        }),
        EventKind::SubOrchestrationCompleted {
            scheduled_id,
            result,
        } => E::SubOrchestrationInstanceCompleted(proto::SubOrchestrationInstanceCompletedEvent {
            task_scheduled_id: scheduled_id,
            result,
        }),
        EventKind::SubOrchestrationFailed {
            scheduled_id,
            failure,
        } => E::SubOrchestrationInstanceFailed(proto::SubOrchestrationInstanceFailedEvent {
            task_scheduled_id: scheduled_id,
            failure_details: Some(failure_to_proto(&failure)),
        }),
        EventKind::TimerCreated { fire_at } => E::TimerCreated(proto::TimerCreatedEvent {
            fire_at: Some(timestamp(fire_at)),
        }),
        EventKind::TimerFired { timer_id, fire_at } => E::TimerFired(proto::TimerFiredEvent {
            fire_at: Some(timestamp(fire_at)),
            timer_id,
        }),
        EventKind::OrchestratorStarted => {
            E::OrchestratorStarted(proto::OrchestratorStartedEvent {})
        }
        EventKind::OrchestratorCompleted => {
            E::OrchestratorCompleted(proto::OrchestratorCompletedEvent {})
        }
        EventKind::EventSent {
            instance_id,
            name,
            input,
        } => E::EventSent(proto::EventSentEvent {
            instance_id: instance_id.as_str().to_string(),
            name,
            input,
        }),
        EventKind::EventRaised { name, input } => {
            E::EventRaised(proto::EventRaisedEvent { name, input })
        }
        EventKind::ContinueAsNew { input } => E::ContinueAsNew(proto::ContinueAsNewEvent { input }),
        EventKind::ExecutionSuspended { reason } => {
            E::ExecutionSuspended(proto::ExecutionSuspendedEvent { input: reason })
        }
        EventKind::ExecutionResumed { reason } => {
            E::ExecutionResumed(proto::ExecutionResumedEvent { input: reason })
        }
        EventKind::EntityOperationSignaled {
            request_id,
            target,
            operation,
            input,
            scheduled_time,
        } => E::EntityOperationSignaled(proto::EntityOperationSignaledEvent {
            request_id,
            operation,
            scheduled_time: scheduled_time.map(timestamp),
            input,
            target_instance_id: Some(target),
        }),
        EventKind::EntityOperationCalled {
            request_id,
            target,
            operation,
            input,
        } => E::EntityOperationCalled(proto::EntityOperationCalledEvent {
            request_id,
            operation,
            input,
            target_instance_id: Some(target),
            ..Default::default()
        }),
        EventKind::EntityOperationCompleted { request_id, output } => {
            E::EntityOperationCompleted(proto::EntityOperationCompletedEvent { request_id, output })
        }
        EventKind::EntityOperationFailed {
            request_id,
            failure,
        } => E::EntityOperationFailed(proto::EntityOperationFailedEvent {
            request_id,
            failure_details: Some(failure_to_proto(&failure)),
        }),
        EventKind::EntityLockRequested {
            critical_section_id,
            lock_set,
        } => E::EntityLockRequested(proto::EntityLockRequestedEvent {
            critical_section_id,
            lock_set,
            position: 0,
            parent_instance_id: None,
        }),
        EventKind::EntityLockGranted {
            critical_section_id,
        } => E::EntityLockGranted(proto::EntityLockGrantedEvent {
            critical_section_id,
        }),
        EventKind::EntityUnlockSent {
            critical_section_id,
            target,
        } => E::EntityUnlockSent(proto::EntityUnlockSentEvent {
            critical_section_id,
            parent_instance_id: None,
            target_instance_id: Some(target),
        }),
        EventKind::ExecutionRewound { reason } => {
            E::ExecutionRewound(proto::ExecutionRewoundEvent { reason })
        }
    }
}

/// The protocol's event as perdure's (a worker's carried-over events, a rewound history). A
/// missing timestamp reads as 0; `genericEvent` and `historyState` are refused.
pub fn event_from_proto(e: proto::HistoryEvent) -> Result<HistoryEvent, ConvertError> {
    let kind = kind_from_proto(
        e.event_type
            .ok_or(ConvertError::MissingOneof("eventType"))?,
    )?;
    Ok(HistoryEvent {
        event_id: e.event_id,
        timestamp: e.timestamp.as_ref().map_or(0, millis),
        kind,
    })
}

/// Failure details that must be present.
fn failure(
    f: Option<proto::TaskFailureDetails>,
) -> Result<perdure_types::orchestration::FailureDetails, ConvertError> {
    f.map(failure_from_proto)
        .ok_or(ConvertError::MissingField("failureDetails"))
}

fn kind_from_proto(t: E) -> Result<EventKind, ConvertError> {
    Ok(match t {
        E::ExecutionStarted(s) => {
            let inst = s
                .orchestration_instance
                .ok_or(ConvertError::MissingField("orchestrationInstance"))?;
            let parent = match s.parent_instance {
                None => None,
                Some(p) => {
                    let pi = p.orchestration_instance.ok_or(ConvertError::MissingField(
                        "parentInstance.orchestrationInstance",
                    ))?;
                    Some(ParentInstance {
                        instance_id: instance(pi.instance_id)?,
                        execution_id: pi.execution_id.unwrap_or_default(),
                        name: p.name.unwrap_or_default(),
                        task_id: p.task_scheduled_id,
                    })
                }
            };
            EventKind::ExecutionStarted {
                name: s.name,
                version: text(s.version),
                input: text(s.input),
                parent,
                scheduled_start: s.scheduled_start_timestamp.as_ref().map(millis),
                execution_id: inst.execution_id.unwrap_or_default(),
            }
        }
        E::ExecutionCompleted(c) => EventKind::ExecutionCompleted {
            status: status_from_proto(c.orchestration_status)
                .ok_or(ConvertError::BadStatus(c.orchestration_status))?,
            result: text(c.result),
            failure: c.failure_details.map(failure_from_proto),
        },
        E::ExecutionTerminated(t) => EventKind::ExecutionTerminated {
            reason: text(t.input),
            recurse: t.recurse,
        },
        E::TaskScheduled(t) => EventKind::TaskScheduled {
            name: t.name,
            input: text(t.input),
        },
        E::TaskCompleted(t) => EventKind::TaskCompleted {
            scheduled_id: t.task_scheduled_id,
            result: text(t.result),
        },
        E::TaskFailed(t) => EventKind::TaskFailed {
            scheduled_id: t.task_scheduled_id,
            failure: failure(t.failure_details)?,
        },
        E::SubOrchestrationInstanceCreated(s) => EventKind::SubOrchestrationCreated {
            name: s.name,
            instance_id: instance(s.instance_id)?,
            input: text(s.input),
        },
        E::SubOrchestrationInstanceCompleted(s) => EventKind::SubOrchestrationCompleted {
            scheduled_id: s.task_scheduled_id,
            result: text(s.result),
        },
        E::SubOrchestrationInstanceFailed(s) => EventKind::SubOrchestrationFailed {
            scheduled_id: s.task_scheduled_id,
            failure: failure(s.failure_details)?,
        },
        E::TimerCreated(t) => EventKind::TimerCreated {
            fire_at: millis(&t.fire_at.ok_or(ConvertError::MissingField("fireAt"))?),
        },
        E::TimerFired(t) => EventKind::TimerFired {
            timer_id: t.timer_id,
            fire_at: millis(&t.fire_at.ok_or(ConvertError::MissingField("fireAt"))?),
        },
        E::OrchestratorStarted(_) => EventKind::OrchestratorStarted,
        E::OrchestratorCompleted(_) => EventKind::OrchestratorCompleted,
        E::EventSent(s) => EventKind::EventSent {
            instance_id: instance(s.instance_id)?,
            name: s.name,
            input: text(s.input),
        },
        E::EventRaised(r) => EventKind::EventRaised {
            name: r.name,
            input: text(r.input),
        },
        E::GenericEvent(_) => return Err(ConvertError::UnsupportedEvent("genericEvent")),
        E::HistoryState(_) => return Err(ConvertError::UnsupportedEvent("historyState")),
        E::ContinueAsNew(c) => EventKind::ContinueAsNew {
            input: text(c.input),
        },
        E::ExecutionSuspended(s) => EventKind::ExecutionSuspended {
            reason: text(s.input),
        },
        E::ExecutionResumed(r) => EventKind::ExecutionResumed {
            reason: text(r.input),
        },
        E::EntityOperationSignaled(s) => EventKind::EntityOperationSignaled {
            target: entity(s.target_instance_id)?,
            request_id: s.request_id,
            operation: s.operation,
            input: text(s.input),
            scheduled_time: s.scheduled_time.as_ref().map(millis),
        },
        E::EntityOperationCalled(c) => EventKind::EntityOperationCalled {
            target: entity(c.target_instance_id)?,
            request_id: c.request_id,
            operation: c.operation,
            input: text(c.input),
        },
        E::EntityOperationCompleted(c) => EventKind::EntityOperationCompleted {
            request_id: c.request_id,
            output: text(c.output),
        },
        E::EntityOperationFailed(f) => EventKind::EntityOperationFailed {
            request_id: f.request_id,
            failure: failure(f.failure_details)?,
        },
        E::EntityLockRequested(l) => EventKind::EntityLockRequested {
            lock_set: l
                .lock_set
                .into_iter()
                .map(|id| entity(Some(id)))
                .collect::<Result<_, _>>()?,
            critical_section_id: l.critical_section_id,
        },
        E::EntityLockGranted(g) => EventKind::EntityLockGranted {
            critical_section_id: g.critical_section_id,
        },
        E::EntityUnlockSent(u) => EventKind::EntityUnlockSent {
            target: entity(u.target_instance_id)?,
            critical_section_id: u.critical_section_id,
        },
        E::ExecutionRewound(r) => EventKind::ExecutionRewound {
            reason: text(r.reason),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use perdure_types::orchestration::{FailureDetails, RuntimeStatus};

    fn id(s: &str) -> InstanceId {
        InstanceId::new(s).unwrap()
    }

    /// One event of every kind, with every optional field set.
    fn every_kind() -> Vec<EventKind> {
        let failure = FailureDetails {
            error_type: "builtins.ValueError".into(),
            message: "Kah-BOOOOM!!!".into(),
            stack_trace: Some("trace".into()),
            inner: Some(Box::new(FailureDetails::new("Inner", "below"))),
            non_retriable: true,
        };
        let s = |v: &str| Some(v.to_string());
        vec![
            EventKind::ExecutionStarted {
                name: "Hello".into(),
                version: s("1.0"),
                input: s("\"x\""),
                parent: Some(ParentInstance {
                    instance_id: id("parent"),
                    execution_id: "pe".into(),
                    name: "Parent".into(),
                    task_id: 4,
                }),
                scheduled_start: Some(1_700_000_000_500),
                execution_id: "e1".into(),
            },
            EventKind::ExecutionCompleted {
                status: RuntimeStatus::Failed,
                result: s("1"),
                failure: Some(failure.clone()),
            },
            EventKind::ExecutionTerminated {
                reason: s("\"stop\""),
                recurse: true,
            },
            EventKind::TaskScheduled {
                name: "SayHello".into(),
                input: s("\"Tokyo\""),
            },
            EventKind::TaskCompleted {
                scheduled_id: 1,
                result: s("\"Hello Tokyo\""),
            },
            EventKind::TaskFailed {
                scheduled_id: 2,
                failure: failure.clone(),
            },
            EventKind::SubOrchestrationCreated {
                name: "Child".into(),
                instance_id: id("abc:0001"),
                input: s("3"),
            },
            EventKind::SubOrchestrationCompleted {
                scheduled_id: 3,
                result: s("4"),
            },
            EventKind::SubOrchestrationFailed {
                scheduled_id: 3,
                failure: failure.clone(),
            },
            EventKind::TimerCreated {
                fire_at: 1_700_000_002_000,
            },
            EventKind::TimerFired {
                timer_id: 5,
                fire_at: 1_700_000_002_000,
            },
            EventKind::OrchestratorStarted,
            EventKind::OrchestratorCompleted,
            EventKind::EventSent {
                instance_id: id("other"),
                name: "Go".into(),
                input: s("true"),
            },
            EventKind::EventRaised {
                name: "Approval".into(),
                input: s("true"),
            },
            EventKind::ContinueAsNew { input: s("5") },
            EventKind::ExecutionSuspended { reason: s("why") },
            EventKind::ExecutionResumed {
                reason: s("because"),
            },
            EventKind::EntityOperationSignaled {
                request_id: "r1".into(),
                target: "@counter@a".into(),
                operation: "add".into(),
                input: s("1"),
                scheduled_time: Some(1_700_000_003_000),
            },
            EventKind::EntityOperationCalled {
                request_id: "r2".into(),
                target: "@counter@b".into(),
                operation: "get".into(),
                input: None,
            },
            EventKind::EntityOperationCompleted {
                request_id: "r2".into(),
                output: s("7"),
            },
            EventKind::EntityOperationFailed {
                request_id: "r2".into(),
                failure,
            },
            EventKind::EntityLockRequested {
                critical_section_id: "cs".into(),
                lock_set: vec!["@counter@a".into(), "@counter@b".into()],
            },
            EventKind::EntityLockGranted {
                critical_section_id: "cs".into(),
            },
            EventKind::EntityUnlockSent {
                critical_section_id: "cs".into(),
                target: "@counter@a".into(),
            },
            EventKind::ExecutionRewound { reason: s("again") },
        ]
    }

    #[test]
    fn every_event_kind_round_trips() {
        let kinds = every_kind();
        assert_eq!(kinds.len(), 26, "one of each EventKind");
        for (i, kind) in kinds.into_iter().enumerate() {
            let e = HistoryEvent {
                event_id: i as i32 - 1,
                timestamp: 1_700_000_000_000 + i as u64,
                kind,
            };
            let p = event_to_proto(&e, "me");
            assert_eq!(event_from_proto(p).unwrap(), e, "{}", e.kind_name());
        }
    }

    #[test]
    fn execution_started_names_the_instance_and_its_parent() {
        let e = HistoryEvent::new(0, every_kind().remove(0));
        let Some(E::ExecutionStarted(s)) = event_to_proto(&e, "me").event_type else {
            panic!("not executionStarted");
        };
        let inst = s.orchestration_instance.unwrap();
        assert_eq!(
            (inst.instance_id.as_str(), inst.execution_id.as_deref()),
            ("me", Some("e1"))
        );
        let p = s.parent_instance.unwrap();
        assert_eq!(p.task_scheduled_id, 4);
        assert_eq!(p.name.as_deref(), Some("Parent"));
        let pi = p.orchestration_instance.unwrap();
        assert_eq!(
            (pi.instance_id.as_str(), pi.execution_id.as_deref()),
            ("parent", Some("pe"))
        );
    }

    #[test]
    fn entity_events_keep_their_target_and_empty_strings_read_as_absent() {
        let called = proto::HistoryEvent {
            event_id: 3,
            timestamp: None,
            event_type: Some(E::EntityOperationCalled(
                proto::EntityOperationCalledEvent {
                    request_id: "r".into(),
                    operation: "add".into(),
                    input: Some(String::new()),
                    target_instance_id: Some("@Counter@k".into()),
                    ..Default::default()
                },
            )),
        };
        let e = event_from_proto(called).unwrap();
        assert_eq!(
            e.kind,
            EventKind::EntityOperationCalled {
                request_id: "r".into(),
                target: "@counter@k".into(),
                operation: "add".into(),
                input: None,
            }
        );
        let Some(E::EntityOperationCalled(back)) = event_to_proto(&e, "me").event_type else {
            panic!()
        };
        assert_eq!(back.target_instance_id.as_deref(), Some("@counter@k"));
    }

    #[test]
    fn events_perdure_cannot_place_are_refused() {
        let none = proto::HistoryEvent::default();
        assert_eq!(
            event_from_proto(none),
            Err(ConvertError::MissingOneof("eventType"))
        );
        let generic = proto::HistoryEvent {
            event_type: Some(E::GenericEvent(proto::GenericEvent::default())),
            ..Default::default()
        };
        assert_eq!(
            event_from_proto(generic),
            Err(ConvertError::UnsupportedEvent("genericEvent"))
        );
        let no_target = proto::HistoryEvent {
            event_type: Some(E::EntityUnlockSent(proto::EntityUnlockSentEvent::default())),
            ..Default::default()
        };
        assert_eq!(
            event_from_proto(no_target),
            Err(ConvertError::MissingField("targetInstanceId"))
        );
    }
}
