//! A backend in memory, for the model's tests: it runs turns of one execution through an
//! [`Executor`], answers the decisions (runs activities and sub-orchestrations, fires timers,
//! answers entity calls and locks) and records the history as a real backend does: each turn is
//! `OrchestratorStarted`, the turn's new events, one event per decision (with `event_id` = the
//! decision's task id), `OrchestratorCompleted`.

use super::super::{ActivityContext, Executor, OrchestrationRegistry};
use perdure_types::command::Millis;
use perdure_types::orchestration::{
    Action, EventKind, FailureDetails, HistoryEvent, RuntimeStatus, TaskId, TurnOutput,
};
use perdure_types::InstanceId;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The clock the driver starts at.
pub(super) const T0: Millis = 1_700_000_000_000;

/// An entity in the driver: `(target, operation, input) -> result`.
pub(super) type EntityFn = Box<dyn FnMut(&str, &str, Value) -> Result<Value, FailureDetails>>;

/// One turn: what was fed and what came back.
#[derive(Debug, Clone)]
pub(super) struct Turn {
    /// `OrchestratorStarted` and the new events.
    pub(super) new_events: Vec<HistoryEvent>,
    /// What the executor handed out.
    pub(super) output: TurnOutput,
    /// The history's length after the turn.
    pub(super) history_len: usize,
}

/// One execution and its backend.
pub(super) struct Driver {
    pub(super) reg: OrchestrationRegistry,
    pub(super) name: String,
    pub(super) instance: InstanceId,
    pub(super) execution: String,
    pub(super) exec: Executor,
    pub(super) now: Millis,
    pub(super) history: Vec<HistoryEvent>,
    pub(super) turns: Vec<Turn>,
    /// Events for the next turn.
    pub(super) inbox: Vec<HistoryEvent>,
    /// Timers not fired: task id -> due.
    pub(super) timers: BTreeMap<TaskId, Millis>,
    /// Run activities at once (else they wait in `activities`).
    pub(super) run_activities: bool,
    /// Activities not run: `(task id, name, input)`.
    pub(super) activities: Vec<(TaskId, String, Option<String>)>,
    pub(super) entity: EntityFn,
}

impl Driver {
    /// A driver whose first turn will start `name` with `input` (not run yet).
    pub(super) fn new(
        reg: OrchestrationRegistry,
        name: &str,
        instance: &str,
        input: Value,
    ) -> Self {
        let instance = InstanceId::new(instance).unwrap();
        let exec = reg
            .executor(name, instance.clone(), "exec-1".into())
            .unwrap();
        let mut d = Self {
            reg,
            name: name.to_string(),
            instance,
            execution: "exec-1".into(),
            exec,
            now: T0,
            history: Vec::new(),
            turns: Vec::new(),
            inbox: Vec::new(),
            timers: BTreeMap::new(),
            run_activities: true,
            activities: Vec::new(),
            entity: Box::new(|target, op, input| Ok(json!([target, op, input]))),
        };
        d.push_start(input.to_string().into(), Vec::new());
        d
    }

    fn push_start(&mut self, input: Option<String>, carryover: Vec<HistoryEvent>) {
        let input = input.filter(|i| i != "null");
        self.inbox.push(HistoryEvent::new(
            self.now,
            EventKind::ExecutionStarted {
                name: self.name.clone(),
                version: None,
                input,
                parent: None,
                scheduled_start: None,
                execution_id: self.execution.clone(),
            },
        ));
        self.inbox.extend(carryover);
    }

    /// Queues an external event for the next turn.
    pub(super) fn raise(&mut self, name: &str, data: Value) {
        self.inbox.push(HistoryEvent::new(
            self.now,
            EventKind::EventRaised {
                name: name.into(),
                input: Some(data.to_string()),
            },
        ));
    }

    /// Queues an activity's result for the next turn.
    pub(super) fn complete_activity(&mut self, id: TaskId, result: Value) {
        self.inbox.push(HistoryEvent::new(
            self.now,
            EventKind::TaskCompleted {
                scheduled_id: id,
                result: Some(result.to_string()),
            },
        ));
    }

    /// Queues a timer's firing for the next turn (and forgets the timer).
    pub(super) fn fire_timer(&mut self, id: TaskId) {
        let fire_at = self.timers.remove(&id).unwrap();
        self.now = self.now.max(fire_at);
        self.inbox.push(HistoryEvent::new(
            fire_at,
            EventKind::TimerFired {
                timer_id: id,
                fire_at,
            },
        ));
    }

    /// Runs one turn with the inbox; answers its decisions.
    pub(super) fn turn(&mut self) -> TurnOutput {
        self.now += 1;
        let mut new_events = vec![HistoryEvent::new(self.now, EventKind::OrchestratorStarted)];
        new_events.append(&mut self.inbox);
        let output = self.exec.apply(&new_events);
        self.history.extend(new_events.iter().cloned());
        for a in &output.actions {
            self.answer(a);
        }
        self.history.push(HistoryEvent::new(
            self.now,
            EventKind::OrchestratorCompleted,
        ));
        self.turns.push(Turn {
            new_events,
            output: output.clone(),
            history_len: self.history.len(),
        });
        output
    }

    /// Runs turns until the execution ends or waits for something only a test gives (an
    /// external event, an activity held back); fires timers when nothing else is left.
    pub(super) fn run(&mut self) {
        while !self.exec.is_finished() {
            if !self.inbox.is_empty() {
                self.turn();
                continue;
            }
            let Some((&id, _)) = self.timers.iter().min_by_key(|(id, at)| (**at, **id)) else {
                return;
            };
            self.fire_timer(id);
        }
    }

    /// Records a decision's event and answers it.
    fn answer(&mut self, a: &Action) {
        let now = self.now;
        let record = match a.clone() {
            Action::ScheduleTask { id, name, input } => {
                if self.run_activities {
                    let answer = self.run_activity(id, &name, input.as_deref());
                    self.inbox.push(answer);
                } else {
                    self.activities.push((id, name.clone(), input.clone()));
                }
                EventKind::TaskScheduled { name, input }
            }
            Action::CreateTimer { id, fire_at } => {
                self.timers.insert(id, fire_at);
                EventKind::TimerCreated { fire_at }
            }
            Action::CancelTimer { timer_id } => {
                self.timers.remove(&timer_id);
                return; // no history event
            }
            Action::CreateSubOrchestration {
                id,
                name,
                instance_id,
                input,
            } => {
                let mut child = Driver::new(
                    self.reg.clone(),
                    &name,
                    instance_id.as_str(),
                    input
                        .as_deref()
                        .map_or(Value::Null, |i| serde_json::from_str(i).unwrap()),
                );
                child.run();
                let kind = match child.exec.outcome().cloned() {
                    Some(Action::CompleteOrchestration {
                        status: RuntimeStatus::Completed,
                        result,
                        ..
                    }) => EventKind::SubOrchestrationCompleted {
                        scheduled_id: id,
                        result,
                    },
                    Some(Action::CompleteOrchestration {
                        failure: Some(failure),
                        ..
                    }) => EventKind::SubOrchestrationFailed {
                        scheduled_id: id,
                        failure,
                    },
                    other => panic!("the child did not end: {other:?}"),
                };
                self.inbox.push(HistoryEvent::new(now, kind));
                EventKind::SubOrchestrationCreated {
                    name,
                    instance_id,
                    input,
                }
            }
            Action::SendEvent {
                instance_id,
                name,
                data,
                ..
            } => EventKind::EventSent {
                instance_id,
                name,
                input: data,
            },
            Action::SignalEntity {
                request_id,
                target,
                operation,
                input,
                scheduled_time,
                ..
            } => EventKind::EntityOperationSignaled {
                request_id,
                target,
                operation,
                input,
                scheduled_time,
            },
            Action::CallEntity {
                request_id,
                target,
                operation,
                input,
                ..
            } => {
                let arg = input
                    .as_deref()
                    .map_or(Value::Null, |i| serde_json::from_str(i).unwrap());
                let kind = match (self.entity)(&target, &operation, arg) {
                    Ok(v) => EventKind::EntityOperationCompleted {
                        request_id: request_id.clone(),
                        output: Some(v.to_string()),
                    },
                    Err(failure) => EventKind::EntityOperationFailed {
                        request_id: request_id.clone(),
                        failure,
                    },
                };
                self.inbox.push(HistoryEvent::new(now, kind));
                EventKind::EntityOperationCalled {
                    request_id,
                    target,
                    operation,
                    input,
                }
            }
            Action::LockEntities {
                critical_section_id,
                lock_set,
                ..
            } => {
                self.inbox.push(HistoryEvent::new(
                    now,
                    EventKind::EntityLockGranted {
                        critical_section_id: critical_section_id.clone(),
                    },
                ));
                EventKind::EntityLockRequested {
                    critical_section_id,
                    lock_set,
                }
            }
            Action::UnlockEntity {
                critical_section_id,
                target,
                ..
            } => EventKind::EntityUnlockSent {
                critical_section_id,
                target,
            },
            Action::CompleteOrchestration {
                status,
                result,
                failure,
                ..
            } => {
                self.history.push(HistoryEvent::new(
                    now,
                    EventKind::ExecutionCompleted {
                        status,
                        result,
                        failure,
                    },
                ));
                return;
            }
            Action::TerminateOrchestration { .. } => return,
        };
        self.history
            .push(HistoryEvent::scheduled(a.id(), now, record));
    }

    /// Runs a registered activity to its answer event.
    fn run_activity(&self, id: TaskId, name: &str, input: Option<&str>) -> HistoryEvent {
        let input = input.map_or(Value::Null, |i| serde_json::from_str(i).unwrap());
        let outcome = match self.reg.get_activity(name) {
            Ok(f) => {
                let ctx = ActivityContext::new(self.instance.clone(), id, name.to_string(), 1);
                futures::executor::block_on(f(ctx, input)).map_err(|e| e.details())
            }
            Err(e) => Err(FailureDetails::new("UnknownActivity", e.to_string())),
        };
        let kind = match outcome {
            Ok(v) => EventKind::TaskCompleted {
                scheduled_id: id,
                result: Some(v.to_string()),
            },
            Err(failure) => EventKind::TaskFailed {
                scheduled_id: id,
                failure,
            },
        };
        HistoryEvent::new(self.now, kind)
    }

    /// Starts the next execution after a continue-as-new: the new input and the carried-over
    /// events.
    pub(super) fn continue_as_new(&mut self) {
        let Some(Action::CompleteOrchestration {
            status: RuntimeStatus::ContinuedAsNew,
            result,
            carryover_events,
            ..
        }) = self.exec.outcome().cloned()
        else {
            panic!("not continued as new: {:?}", self.exec.outcome());
        };
        let n: u32 = self.execution["exec-".len()..].parse().unwrap();
        self.execution = format!("exec-{}", n + 1);
        self.exec = self
            .reg
            .executor(&self.name, self.instance.clone(), self.execution.clone())
            .unwrap();
        self.history.clear();
        self.turns.clear();
        self.timers.clear();
        self.push_start(result, carryover_events);
    }

    /// The completion handed out.
    pub(super) fn outcome(&self) -> Action {
        self.exec.outcome().cloned().expect("the execution ended")
    }

    /// The output of a completed execution.
    pub(super) fn result(&self) -> Value {
        match self.outcome() {
            Action::CompleteOrchestration {
                status: RuntimeStatus::Completed,
                result,
                ..
            } => serde_json::from_str(result.as_deref().unwrap_or("null")).unwrap(),
            other => panic!("not completed: {other:?}"),
        }
    }

    /// The failure of a failed execution.
    pub(super) fn failure(&self) -> FailureDetails {
        match self.outcome() {
            Action::CompleteOrchestration {
                status: RuntimeStatus::Failed,
                failure: Some(f),
                ..
            } => f,
            other => panic!("not failed: {other:?}"),
        }
    }

    /// Every decision handed out, in order.
    pub(super) fn actions(&self) -> Vec<Action> {
        self.turns
            .iter()
            .flat_map(|t| t.output.actions.iter().cloned())
            .collect()
    }

    /// A fresh executor of this execution (same code, or `reg`'s).
    pub(super) fn fresh(&self, reg: &OrchestrationRegistry) -> Executor {
        reg.executor(&self.name, self.instance.clone(), self.execution.clone())
            .unwrap()
    }
}
