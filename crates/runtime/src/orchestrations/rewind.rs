//! Planning a rewind of a failed execution (pure: unit-tested).
//!
//! A failure the orchestrator handled (it made decisions after seeing it: a retry's timer, a
//! compensation) stays in the history, or replaying it would not match the code. The failures
//! it did not handle (no decision after them: the ones that made it fail) are taken out with
//! the failed end; their activities become work items again and their sub-orchestrations are
//! started again, so the execution goes on from there.

use perdure_types::command::{Rewind, WorkItem};
use perdure_types::message::Message;
use perdure_types::orchestration::{
    EventKind, HistoryEvent, InstanceRecord, ParentInstance, RuntimeStatus, TaskId,
};
use perdure_types::InstanceId;
use std::collections::HashSet;

/// A planned rewind.
pub(crate) struct Planned {
    /// The op's content.
    pub rewind: Rewind,
    /// The inbox message that makes the instance take a turn (its `ExecutionRewound`).
    pub wake: Message,
    /// Start requests for the failed sub-orchestrations.
    pub restarts: Vec<(InstanceId, Message)>,
}

/// The rewind of `record`'s failed execution, whose history is `history`.
pub(crate) fn plan(
    record: &InstanceRecord,
    history: Vec<HistoryEvent>,
    reason: Option<String>,
    now: u64,
) -> Planned {
    let last_decision = history.iter().rposition(|e| e.kind.is_decision());
    let unhandled = |i: usize| last_decision.is_none_or(|d| i > d);
    let mut failed_tasks: HashSet<TaskId> = HashSet::new();
    let mut failed_children: HashSet<TaskId> = HashSet::new();
    let mut drop = vec![false; history.len()];
    for (i, e) in history.iter().enumerate() {
        match &e.kind {
            EventKind::TaskFailed { scheduled_id, .. } if unhandled(i) => {
                failed_tasks.insert(*scheduled_id);
                drop[i] = true;
            }
            EventKind::SubOrchestrationFailed { scheduled_id, .. } if unhandled(i) => {
                failed_children.insert(*scheduled_id);
                drop[i] = true;
            }
            EventKind::ExecutionCompleted { .. } => drop[i] = true,
            _ => {}
        }
    }
    let mut work_items = Vec::new();
    let mut restarts = Vec::new();
    for e in &history {
        match &e.kind {
            EventKind::TaskScheduled { name, input } if failed_tasks.contains(&e.event_id) => {
                work_items.push(WorkItem {
                    task_id: e.event_id,
                    name: name.clone(),
                    input: input.clone(),
                })
            }
            EventKind::SubOrchestrationCreated {
                name,
                instance_id,
                input,
            } if failed_children.contains(&e.event_id) => {
                let started = HistoryEvent::new(
                    now,
                    EventKind::ExecutionStarted {
                        name: name.clone(),
                        version: None,
                        input: input.clone(),
                        parent: Some(ParentInstance {
                            instance_id: record.instance_id.clone(),
                            execution_id: record.execution_id.clone(),
                            name: record.name.clone(),
                            task_id: e.event_id,
                        }),
                        scheduled_start: None,
                        execution_id: super::api::new_id(),
                    },
                );
                restarts.push((
                    instance_id.clone(),
                    Message::InstanceEvent {
                        execution_id: None,
                        event: started,
                    },
                ));
            }
            _ => {}
        }
    }
    let history: Vec<HistoryEvent> = history
        .into_iter()
        .zip(drop)
        .filter_map(|(e, d)| (!d).then_some(e))
        .collect();
    let mut rec = record.clone();
    rec.status = RuntimeStatus::Running;
    rec.failure = None;
    rec.output = None;
    rec.completed_at = None;
    rec.updated_at = now;
    let wake = Message::InstanceEvent {
        execution_id: Some(record.execution_id.clone()),
        event: HistoryEvent::new(now, EventKind::ExecutionRewound { reason }),
    };
    Planned {
        rewind: Rewind {
            instance: record.instance_id.clone(),
            execution_id: record.execution_id.clone(),
            turns: record.turns,
            record: rec,
            history,
            work_items,
        },
        wake,
        restarts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use perdure_types::orchestration::FailureDetails;

    fn ev(id: i32, kind: EventKind) -> HistoryEvent {
        HistoryEvent::scheduled(id, 1, kind)
    }

    #[test]
    fn only_the_failures_no_decision_followed_are_taken_out() {
        let record = InstanceRecord::pending(
            InstanceId::new("i").unwrap(),
            "O".into(),
            None,
            "e1".into(),
            None,
            None,
            None,
            0,
        );
        let failed = |id| EventKind::TaskFailed {
            scheduled_id: id,
            failure: FailureDetails::new("X", "boom"),
        };
        let sched = |n: &str| EventKind::TaskScheduled {
            name: n.into(),
            input: None,
        };
        let history = vec![
            ev(-1, EventKind::OrchestratorStarted),
            ev(0, sched("A")),
            ev(-1, failed(0)), // handled: a retry timer follows
            ev(1, EventKind::TimerCreated { fire_at: 5 }),
            ev(2, sched("A")),
            ev(-1, failed(2)), // the one that failed it
            ev(
                -1,
                EventKind::ExecutionCompleted {
                    status: RuntimeStatus::Failed,
                    result: None,
                    failure: None,
                },
            ),
        ];
        let p = plan(&record, history, Some("again".into()), 10);
        let kinds: Vec<_> = p.rewind.history.iter().map(|e| e.kind_name()).collect();
        assert_eq!(
            kinds,
            [
                "OrchestratorStarted",
                "TaskScheduled",
                "TaskFailed",
                "TimerCreated",
                "TaskScheduled"
            ]
        );
        assert_eq!(p.rewind.work_items.len(), 1);
        assert_eq!(p.rewind.work_items[0].task_id, 2);
        assert_eq!(p.rewind.record.status, RuntimeStatus::Running);
        assert!(p.restarts.is_empty());
    }
}
