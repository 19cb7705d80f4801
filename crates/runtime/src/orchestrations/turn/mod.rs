//! Planning one turn: a driver's decisions and the turn's events turned into ONE command (the
//! instance's `CompleteTurn` and the messages it sends), and what to do once it commits.
//!
//! Pure: no I/O, no clock (the time comes in), so every rule here is unit-tested.
//!
//! Critical sections: a `LockEntities` decision becomes `EntityLockRequested` and the lock
//! request to the first entity of the sorted set (the entities pass it on); an `UnlockEntity`
//! becomes `EntityUnlockSent` and a release. The turn that ends the execution (completed,
//! failed, terminated, continued as new) also releases every critical section still open, so a
//! finished execution never leaves an entity locked. A section not yet granted is released by
//! one release sent to its first entity and passed along the set behind the request, so it
//! never overtakes the request on the way (see `Message::EntityUnlock`).

use super::driver::OpenLock;
use perdure_types::command::{Millis, Op, Restart, Turn, WorkItem};
use perdure_types::message::Message;
use perdure_types::orchestration::{
    Action, EventKind, FailureDetails, HistoryEvent, InstanceRecord, ParentInstance, RuntimeStatus,
    TaskId,
};
use perdure_types::{EntityId, InstanceId, Target};
use std::collections::BTreeMap;

/// The limits a turn is checked against (`[orchestrations]`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_history_events: u64,
    pub max_history_bytes: u64,
    pub max_payload_bytes: u64,
}

/// What a turn starts from.
pub(crate) struct TurnInput<'a> {
    /// The record as committed.
    pub record: &'a InstanceRecord,
    /// The partition count (where messages go).
    pub partitions: u32,
    /// The turn's time.
    pub now: Millis,
    /// Events appended before the decisions (OrchestratorStarted, inbox events, results).
    pub events: Vec<HistoryEvent>,
    /// Inbox messages consumed.
    pub consumed_upto: Option<u64>,
    /// Activity results recorded (their work items are removed).
    pub done_items: Vec<TaskId>,
    /// The orchestrator's decisions taken into this command.
    pub actions: Vec<Action>,
    /// The custom status after the turn.
    pub custom_status: Option<String>,
    /// A terminate taken by this turn: (reason, recurse).
    pub terminated: Option<(Option<String>, bool)>,
    /// The sub-orchestrations still open (a recursive terminate reaches them).
    pub open_children: Vec<InstanceId>,
    /// The critical sections still open as committed (the turn that ends the execution
    /// releases them).
    pub locks: Vec<OpenLock>,
    /// Whether the instance is suspended after the turn.
    pub suspended: bool,
    /// Whether more decisions of this turn follow in later commands.
    pub more: bool,
    /// A new execution id (used only by a continue-as-new).
    pub new_execution_id: String,
    /// Fail the execution with this instead of taking decisions (an unknown orchestrator, a
    /// step that kept crashing).
    pub fail: Option<FailureDetails>,
}

/// A planned turn.
#[derive(Debug)]
pub(crate) struct Planned {
    /// The command: the instance's turn and the messages it sends.
    pub ops: Vec<Op>,
    /// Activities to run once it commits.
    pub dispatch: Vec<WorkItem>,
    /// The record after it.
    pub record: InstanceRecord,
    /// Events appended (for the counters kept in memory).
    pub appended: u64,
    /// Their encoded bytes.
    pub appended_bytes: u64,
    /// Whether it put messages in the outbox / scheduled timers.
    pub sent: bool,
    pub timers: bool,
    /// The events recording the decisions it took (for the driver once it commits).
    pub decided: Vec<HistoryEvent>,
}

mod check;
mod locks;
use check::check_action;
use locks::{acquisition_order, release, release_along, release_rest};

fn send(partitions: u32, target: Target, message: Message) -> Op {
    Op::Send {
        dest: target.partition(partitions),
        target,
        message: message.encode(),
    }
}

fn instance_event(execution_id: Option<String>, event: HistoryEvent) -> Message {
    Message::InstanceEvent {
        execution_id,
        event,
    }
}

/// Plans the turn. A decision that cannot be taken (too large, malformed), or a history that
/// would pass its bounds, fails the execution instead, with a failure naming why.
pub(crate) fn plan(mut input: TurnInput<'_>, limits: &Limits) -> Planned {
    let failure = input.fail.clone().or_else(|| {
        input
            .actions
            .iter()
            .find_map(|a| check_action(a, limits).err())
    });
    // the turn's own events go first into the history: moved, not copied
    let events = std::mem::take(&mut input.events);
    let taken = events.len();
    let mut planned = build(&input, events, failure);
    let events = planned.record.history_events + planned.appended;
    let bytes = planned.record.history_bytes + planned.appended_bytes;
    let over = if events > limits.max_history_events {
        Some(format!(
            "the history would hold {events} events, over the limit of {} \
             (orchestrations.max_history_events); use continue-as-new for long-running orchestrations",
            limits.max_history_events
        ))
    } else if bytes > limits.max_history_bytes {
        Some(format!(
            "the history would hold {bytes} bytes, over the limit of {} \
             (orchestrations.max_history_bytes); use continue-as-new for long-running orchestrations",
            limits.max_history_bytes
        ))
    } else {
        None
    };
    if let (Some(why), false) = (over, planned.record.status.is_terminal()) {
        // the same turn's own events (the first ones the plan appended), failing instead
        let mut events = match planned.ops.first_mut() {
            Some(Op::CompleteTurn(t)) => std::mem::take(&mut t.events),
            _ => Vec::new(),
        };
        events.truncate(taken);
        planned = build(
            &input,
            events,
            Some(FailureDetails::new("HistoryTooLarge", why)),
        );
    }
    planned
}

fn build(
    input: &TurnInput<'_>,
    mut events: Vec<HistoryEvent>,
    failure: Option<FailureDetails>,
) -> Planned {
    let r = input.record;
    let partitions = input.partitions;
    let me = r.instance_id.clone();
    let exec = r.execution_id.clone();
    let now = input.now;
    let mut ops: Vec<Op> = Vec::new();
    let mut work_items = Vec::new();
    let mut timers = Vec::new();
    let mut cancel_timers = Vec::new();
    let mut restart = None;
    let mut record = r.clone();
    record.updated_at = now;
    if matches!(
        record.status,
        RuntimeStatus::Pending | RuntimeStatus::ContinuedAsNew
    ) {
        record.status = RuntimeStatus::Running;
    }
    record.custom_status = input.custom_status.clone();
    let mut end: Option<(RuntimeStatus, Option<String>, Option<FailureDetails>)> = None;
    let mut locks: BTreeMap<String, OpenLock> = input
        .locks
        .iter()
        .map(|l| (l.critical_section_id.clone(), l.clone()))
        .collect();

    if let Some((reason, recurse)) = &input.terminated {
        end = Some((RuntimeStatus::Terminated, reason.clone(), None));
        if *recurse {
            for child in &input.open_children {
                let ev = HistoryEvent::new(
                    now,
                    EventKind::ExecutionTerminated {
                        reason: reason.clone(),
                        recurse: true,
                    },
                );
                ops.push(send(
                    partitions,
                    Target::Instance(child.clone()),
                    instance_event(None, ev),
                ));
            }
        }
    } else if let Some(f) = failure {
        end = Some((RuntimeStatus::Failed, None, Some(f)));
    } else {
        for a in &input.actions {
            let id = a.id();
            match a.clone() {
                Action::ScheduleTask { name, input, .. } => {
                    events.push(HistoryEvent::scheduled(
                        id,
                        now,
                        EventKind::TaskScheduled {
                            name: name.clone(),
                            input: input.clone(),
                        },
                    ));
                    work_items.push(WorkItem {
                        task_id: id,
                        name,
                        input,
                    });
                }
                Action::CreateSubOrchestration {
                    name,
                    instance_id,
                    input,
                    ..
                } => {
                    events.push(HistoryEvent::scheduled(
                        id,
                        now,
                        EventKind::SubOrchestrationCreated {
                            name: name.clone(),
                            instance_id: instance_id.clone(),
                            input: input.clone(),
                        },
                    ));
                    let started = HistoryEvent::new(
                        now,
                        EventKind::ExecutionStarted {
                            name,
                            version: None,
                            input,
                            parent: Some(ParentInstance {
                                instance_id: me.clone(),
                                execution_id: exec.clone(),
                                name: r.name.clone(),
                                task_id: id,
                            }),
                            scheduled_start: None,
                            // the child's execution id: derived, so a replayed decision names
                            // the same one
                            execution_id: format!("{exec}:{id}"),
                        },
                    );
                    // no execution id on the message: a start request, which the child's
                    // partition turns into a start of that instance
                    ops.push(send(
                        partitions,
                        Target::Instance(instance_id),
                        instance_event(None, started),
                    ));
                }
                Action::CreateTimer { fire_at, .. } => {
                    events.push(HistoryEvent::scheduled(
                        id,
                        now,
                        EventKind::TimerCreated { fire_at },
                    ));
                    let fired = HistoryEvent::new(
                        fire_at,
                        EventKind::TimerFired {
                            timer_id: id,
                            fire_at,
                        },
                    );
                    timers.push((
                        id,
                        fire_at,
                        instance_event(Some(exec.clone()), fired).encode(),
                    ));
                }
                Action::CancelTimer { timer_id } => cancel_timers.push(timer_id),
                Action::SendEvent {
                    instance_id,
                    name,
                    data,
                    ..
                } => {
                    events.push(HistoryEvent::scheduled(
                        id,
                        now,
                        EventKind::EventSent {
                            instance_id: instance_id.clone(),
                            name: name.clone(),
                            input: data.clone(),
                        },
                    ));
                    let raised =
                        HistoryEvent::new(now, EventKind::EventRaised { name, input: data });
                    ops.push(send(
                        partitions,
                        Target::Instance(instance_id),
                        instance_event(None, raised),
                    ));
                }
                Action::SignalEntity {
                    request_id,
                    target,
                    operation,
                    input: data,
                    scheduled_time,
                    ..
                } => {
                    events.push(HistoryEvent::scheduled(
                        id,
                        now,
                        EventKind::EntityOperationSignaled {
                            request_id: request_id.clone(),
                            target: target.clone(),
                            operation: operation.clone(),
                            input: data.clone(),
                            scheduled_time,
                        },
                    ));
                    // checked by check_action
                    if let Ok(entity) = EntityId::from_canonical(&target) {
                        let message = Message::EntityRequest {
                            operation,
                            input: data,
                            request_id,
                            reply_to: None,
                            sender: Some((me.clone(), exec.clone())),
                        };
                        let t = Target::Entity(entity);
                        ops.push(match scheduled_time.filter(|&at| at > now) {
                            Some(due) => Op::ScheduleTimer {
                                due,
                                target: t,
                                message: message.encode(),
                            },
                            None => send(partitions, t, message),
                        });
                    }
                }
                Action::CallEntity {
                    request_id,
                    target,
                    operation,
                    input: data,
                    ..
                } => {
                    events.push(HistoryEvent::scheduled(
                        id,
                        now,
                        EventKind::EntityOperationCalled {
                            request_id: request_id.clone(),
                            target: target.clone(),
                            operation: operation.clone(),
                            input: data.clone(),
                        },
                    ));
                    if let Ok(entity) = EntityId::from_canonical(&target) {
                        let message = Message::EntityRequest {
                            operation,
                            input: data,
                            request_id,
                            reply_to: Some((me.clone(), exec.clone())),
                            sender: Some((me.clone(), exec.clone())),
                        };
                        ops.push(send(partitions, Target::Entity(entity), message));
                    }
                }
                Action::LockEntities {
                    critical_section_id,
                    lock_set,
                    ..
                } => {
                    events.push(HistoryEvent::scheduled(
                        id,
                        now,
                        EventKind::EntityLockRequested {
                            critical_section_id: critical_section_id.clone(),
                            lock_set: lock_set.clone(),
                        },
                    ));
                    let order = acquisition_order(&lock_set);
                    // checked by check_action: not empty, every id valid
                    if let Some(Ok(first)) = order.first().map(|t| EntityId::from_canonical(t)) {
                        ops.push(send(
                            partitions,
                            Target::Entity(first),
                            Message::EntityLock {
                                critical_section_id: critical_section_id.clone(),
                                lock_set: order,
                                position: 0,
                                holder: (me.clone(), exec.clone()),
                            },
                        ));
                    }
                    locks
                        .entry(critical_section_id.clone())
                        .or_insert(OpenLock {
                            critical_section_id,
                            lock_set,
                            granted: false,
                            released: Default::default(),
                        });
                }
                Action::UnlockEntity {
                    critical_section_id,
                    target,
                    ..
                } => {
                    events.push(HistoryEvent::scheduled(
                        id,
                        now,
                        EventKind::EntityUnlockSent {
                            critical_section_id: critical_section_id.clone(),
                            target: target.clone(),
                        },
                    ));
                    let op = match locks.get_mut(&critical_section_id) {
                        Some(l) => {
                            let op = if l.granted {
                                release(partitions, &me, &critical_section_id, &target, Vec::new())
                            } else if l.released.is_empty() {
                                // maybe not granted yet: released along the whole set, behind
                                // the request
                                release_along(partitions, &me, l)
                            } else {
                                None // released along the whole set already
                            };
                            l.released.insert(target);
                            if l.lock_set.iter().all(|t| l.released.contains(t)) {
                                locks.remove(&critical_section_id);
                            }
                            op
                        }
                        // a section this execution does not know open: released all the same
                        None => release(partitions, &me, &critical_section_id, &target, Vec::new()),
                    };
                    ops.extend(op);
                }
                Action::TerminateOrchestration {
                    instance_id,
                    reason,
                    recurse,
                    ..
                } => {
                    let ev =
                        HistoryEvent::new(now, EventKind::ExecutionTerminated { reason, recurse });
                    ops.push(send(
                        partitions,
                        Target::Instance(instance_id),
                        instance_event(None, ev),
                    ));
                }
                Action::CompleteOrchestration {
                    status,
                    result,
                    failure,
                    carryover_events,
                    ..
                } => match status {
                    RuntimeStatus::ContinuedAsNew => {
                        let started = HistoryEvent::new(
                            now,
                            EventKind::ExecutionStarted {
                                name: r.name.clone(),
                                version: r.version.clone(),
                                input: result.clone(),
                                parent: r.parent.clone(),
                                scheduled_start: None,
                                execution_id: input.new_execution_id.clone(),
                            },
                        );
                        restart = Some(Restart {
                            started,
                            carryover: carryover_events,
                        });
                        record.status = RuntimeStatus::ContinuedAsNew;
                        record.input = result;
                        record.output = None;
                    }
                    RuntimeStatus::Failed => {
                        end = Some((
                            RuntimeStatus::Failed,
                            result,
                            Some(failure.unwrap_or_else(|| {
                                FailureDetails::new(
                                    "OrchestrationFailed",
                                    "the orchestration failed",
                                )
                            })),
                        ));
                    }
                    other => end = Some((other, result, failure)),
                },
            }
        }
    }

    if end.is_some() || restart.is_some() {
        // the execution ends: nothing it locked stays locked
        for l in locks.values() {
            ops.extend(release_rest(partitions, &me, l));
        }
    }
    if let Some((status, output, failure)) = end {
        events.push(HistoryEvent::new(
            now,
            EventKind::ExecutionCompleted {
                status,
                result: output.clone(),
                failure: failure.clone(),
            },
        ));
        record.status = status;
        record.output = output.clone();
        record.failure = failure.clone();
        record.completed_at = Some(now);
        work_items.clear();
        if let Some(parent) = &r.parent {
            let ev = match status {
                RuntimeStatus::Completed => EventKind::SubOrchestrationCompleted {
                    scheduled_id: parent.task_id,
                    result: output,
                },
                _ => EventKind::SubOrchestrationFailed {
                    scheduled_id: parent.task_id,
                    failure: failure.unwrap_or_else(|| {
                        FailureDetails::new(
                            "Terminated",
                            format!(
                                "sub-orchestration {} was terminated: {}",
                                me,
                                output.as_deref().unwrap_or("no reason given")
                            ),
                        )
                    }),
                },
            };
            ops.push(send(
                partitions,
                Target::Instance(parent.instance_id.clone()),
                instance_event(
                    Some(parent.execution_id.clone()),
                    HistoryEvent::new(now, ev),
                ),
            ));
        }
    } else if input.suspended {
        record.status = RuntimeStatus::Suspended;
    } else if record.status == RuntimeStatus::Suspended {
        record.status = RuntimeStatus::Running;
    }
    if !input.more && restart.is_none() {
        events.push(HistoryEvent::new(now, EventKind::OrchestratorCompleted));
    }

    let appended = events.len() as u64;
    let appended_bytes = events.iter().map(|e| e.encoded_len() as u64).sum();
    let sent = ops.iter().any(|o| matches!(o, Op::Send { .. }));
    let timers_scheduled =
        !timers.is_empty() || ops.iter().any(|o| matches!(o, Op::ScheduleTimer { .. }));
    let dispatch = work_items.clone();
    let decided = events.iter().filter(|e| e.event_id >= 0).cloned().collect();
    let turn = Turn {
        instance: me,
        execution_id: exec,
        turns: r.turns,
        record: record.clone(),
        events,
        consumed_upto: input.consumed_upto,
        work_items,
        done_items: input.done_items.clone(),
        timers,
        cancel_timers,
        restart,
    };
    let mut all = vec![Op::CompleteTurn(Box::new(turn))];
    all.append(&mut ops);
    Planned {
        ops: all,
        dispatch,
        record,
        appended,
        appended_bytes,
        sent,
        timers: timers_scheduled,
        decided,
    }
}

#[cfg(test)]
mod plan_tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_history_events: 1_000,
        max_history_bytes: 1 << 20,
        max_payload_bytes: 100,
    };

    fn record(parent: Option<ParentInstance>) -> InstanceRecord {
        let mut r = InstanceRecord::pending(
            InstanceId::new("me").unwrap(),
            "Orch".into(),
            None,
            "exec-1".into(),
            None,
            parent,
            None,
            1,
        );
        r.status = RuntimeStatus::Running;
        r.turns = 3;
        r
    }

    fn input(record: &InstanceRecord, actions: Vec<Action>) -> TurnInput<'_> {
        TurnInput {
            record,
            partitions: 4,
            now: 100,
            events: vec![HistoryEvent::new(100, EventKind::OrchestratorStarted)],
            consumed_upto: Some(7),
            done_items: vec![],
            actions,
            custom_status: None,
            terminated: None,
            open_children: vec![],
            locks: vec![],
            suspended: false,
            more: false,
            new_execution_id: "exec-2".into(),
            fail: None,
        }
    }

    fn turn_of(p: &Planned) -> &Turn {
        match &p.ops[0] {
            Op::CompleteTurn(t) => t,
            other => panic!("not a turn: {other:?}"),
        }
    }

    fn sends(p: &Planned) -> Vec<(Target, Message)> {
        p.ops
            .iter()
            .filter_map(|o| match o {
                Op::Send {
                    target, message, ..
                } => Some((target.clone(), Message::decode(message).unwrap())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn decisions_become_history_events_work_items_and_timers_in_one_command() {
        let r = record(None);
        let p = plan(
            input(
                &r,
                vec![
                    Action::ScheduleTask {
                        id: 0,
                        name: "A".into(),
                        input: Some("1".into()),
                    },
                    Action::CreateTimer {
                        id: 1,
                        fire_at: 500,
                    },
                ],
            ),
            &LIMITS,
        );
        let t = turn_of(&p);
        let kinds: Vec<_> = t.events.iter().map(|e| e.kind_name()).collect();
        assert_eq!(
            kinds,
            [
                "OrchestratorStarted",
                "TaskScheduled",
                "TimerCreated",
                "OrchestratorCompleted"
            ]
        );
        assert_eq!((t.turns, t.consumed_upto), (3, Some(7)));
        assert_eq!(t.work_items.len(), 1);
        assert_eq!(t.timers.len(), 1);
        assert_eq!(p.dispatch.len(), 1);
        assert!(p.timers && !p.sent);
    }

    #[test]
    fn a_payload_over_the_limit_fails_the_execution_naming_the_step() {
        let r = record(None);
        let p = plan(
            input(
                &r,
                vec![Action::ScheduleTask {
                    id: 4,
                    name: "A".into(),
                    input: Some("x".repeat(200)),
                }],
            ),
            &LIMITS,
        );
        assert_eq!(p.record.status, RuntimeStatus::Failed);
        let f = p.record.failure.as_ref().unwrap();
        assert_eq!(f.error_type, "PayloadTooLarge");
        assert!(f.message.contains("step 4"), "{f:?}");
        let t = turn_of(&p);
        assert!(t.work_items.is_empty());
        assert_eq!(
            t.events.last().unwrap().kind_name(),
            "OrchestratorCompleted"
        );
        assert!(t
            .events
            .iter()
            .any(|e| e.kind_name() == "ExecutionCompleted"));
        assert!(!t.events.iter().any(|e| e.kind_name() == "TaskScheduled"));
    }

    #[test]
    fn a_history_past_its_bound_fails_the_execution() {
        let mut r = record(None);
        r.history_events = 999;
        let p = plan(
            input(
                &r,
                vec![Action::ScheduleTask {
                    id: 0,
                    name: "A".into(),
                    input: None,
                }],
            ),
            &LIMITS,
        );
        assert_eq!(p.record.status, RuntimeStatus::Failed);
        let f = p.record.failure.as_ref().unwrap();
        assert_eq!(f.error_type, "HistoryTooLarge");
        assert!(f.message.contains("max_history_events"), "{f:?}");
    }

    #[test]
    fn a_recursive_terminate_reaches_open_children_and_tells_the_parent() {
        let parent = ParentInstance {
            instance_id: InstanceId::new("parent").unwrap(),
            execution_id: "pe".into(),
            name: "P".into(),
            task_id: 9,
        };
        let r = record(Some(parent));
        let mut i = input(&r, vec![]);
        i.terminated = Some((Some("\"stop\"".into()), true));
        i.open_children = vec![InstanceId::new("child").unwrap()];
        let p = plan(i, &LIMITS);
        assert_eq!(p.record.status, RuntimeStatus::Terminated);
        assert_eq!(p.record.output.as_deref(), Some("\"stop\""));
        let s = sends(&p);
        assert_eq!(s.len(), 2);
        assert!(matches!(
            &s[0],
            (Target::Instance(c), Message::InstanceEvent { execution_id: None, event })
                if c.as_str() == "child" && matches!(event.kind, EventKind::ExecutionTerminated { recurse: true, .. })
        ));
        assert!(matches!(
            &s[1],
            (Target::Instance(pi), Message::InstanceEvent { execution_id: Some(e), event })
                if pi.as_str() == "parent" && e == "pe"
                    && matches!(event.kind, EventKind::SubOrchestrationFailed { scheduled_id: 9, .. })
        ));
    }

    #[test]
    fn continue_as_new_restarts_with_the_carried_over_events() {
        let r = record(None);
        let carried = HistoryEvent::new(
            90,
            EventKind::EventRaised {
                name: "x".into(),
                input: None,
            },
        );
        let p = plan(
            input(
                &r,
                vec![Action::CompleteOrchestration {
                    id: 2,
                    status: RuntimeStatus::ContinuedAsNew,
                    result: Some("5".into()),
                    failure: None,
                    carryover_events: vec![carried.clone()],
                }],
            ),
            &LIMITS,
        );
        assert_eq!(p.record.status, RuntimeStatus::ContinuedAsNew);
        let t = turn_of(&p);
        let restart = t.restart.as_ref().unwrap();
        assert_eq!(restart.carryover, vec![carried]);
        assert!(matches!(
            &restart.started.kind,
            EventKind::ExecutionStarted { execution_id, input: Some(i), .. } if execution_id == "exec-2" && i == "5"
        ));
    }

    #[test]
    fn only_the_last_command_of_a_wide_turn_ends_it() {
        let r = record(None);
        let mut i = input(
            &r,
            vec![Action::ScheduleTask {
                id: 0,
                name: "A".into(),
                input: None,
            }],
        );
        i.more = true;
        let p = plan(i, &LIMITS);
        assert!(!turn_of(&p)
            .events
            .iter()
            .any(|e| e.kind_name() == "OrchestratorCompleted"));
    }
}
