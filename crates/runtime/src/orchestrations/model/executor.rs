//! The replay engine: feeds an execution's history events, one at a time and in order, to an
//! orchestrator, and collects the decisions it makes.
//!
//! - `ExecutionStarted` creates the orchestrator's future and polls it; `OrchestratorStarted`
//!   sets the clock; a completion (`TaskCompleted`, `TimerFired`, `EventRaised`, ...) resolves a
//!   task, and the code is polled again right after it. Polling after each event, never after a
//!   batch, is what makes `when_any` and `when_all` replay to the same results.
//! - A scheduling event in the history (`TaskScheduled`, `TimerCreated`, ...) must be the
//!   decision the code made with the same task id: that decision is then not handed out (it was,
//!   when first made). Any other decision at that step is nondeterminism, and fails the
//!   execution with error type `NonDeterminism` and a message naming the step.
//!   `ExecutionCompleted` is the record of the code's `CompleteOrchestration`.
//! - A panic in the orchestrator fails the execution (`OrchestratorPanicked`); an `Err` fails it
//!   with the error's details; `Ok(v)` completes it with `v` (JSON text).
//!
//! Past and new events: [`Executor::apply_past`] feeds events of the stored history (the code
//! sees [`is_replaying`](super::OrchestrationContext::is_replaying) = true),
//! [`Executor::apply`] feeds a turn's new events. Both hand out the decisions made and not
//! handed out before, nor found in the history.

use super::context::OrchestrationContext;
use super::determinism::Shape;
use super::error::{OrchestrationError, TaskError};
use super::payload;
use super::registry::OrchestratorFn;
use super::state::{self, Shared};
use futures::future::BoxFuture;
use perdure_types::command::Millis;
use perdure_types::orchestration::{
    Action, EventKind, FailureDetails, HistoryEvent, RuntimeStatus, TaskId, TurnOutput,
};
use perdure_types::InstanceId;
use serde_json::Value;
use std::any::Any;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// One execution of an orchestrator, driven by its history events.
///
/// Keep it alive between turns to avoid replays: [`apply`](Self::apply) each turn's new events.
/// After a restart, build a new one and [`apply_past`](Self::apply_past) the stored history
/// first; it hands out only what the history does not hold yet.
pub struct Executor {
    orchestrator: OrchestratorFn,
    ctx: OrchestrationContext,
    main: Option<BoxFuture<'static, Result<Value, OrchestrationError>>>,
    started: bool,
    /// The task id of the `CompleteOrchestration` decision, once made.
    completion: Option<TaskId>,
    /// Nondeterminism was found: later events are ignored.
    halted: bool,
    /// The completion was handed out or found in the history.
    finished: bool,
    outcome: Option<Action>,
}

impl fmt::Debug for Executor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Executor")
            .field("instance_id", &self.ctx.shared.instance_id)
            .field("execution_id", &self.ctx.shared.execution_id)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl Executor {
    /// An executor for execution `execution_id` of `instance_id`, running `orchestrator`.
    pub fn new(
        orchestrator: OrchestratorFn,
        instance_id: InstanceId,
        execution_id: String,
    ) -> Self {
        let shared = Arc::new(Shared::new(instance_id, execution_id));
        Self {
            orchestrator,
            ctx: OrchestrationContext::new(shared),
            main: None,
            started: false,
            completion: None,
            halted: false,
            finished: false,
            outcome: None,
        }
    }

    /// Feeds a turn's new events, in order, and returns the decisions not handed out before
    /// (in the order made), with the custom status. A turn's events start with its
    /// `OrchestratorStarted` (its timestamp is the turn's clock).
    pub fn apply(&mut self, events: &[HistoryEvent]) -> TurnOutput {
        self.run(events, false)
    }

    /// Feeds events of the stored history (a replay: the code sees `is_replaying()`), in order.
    /// Returns the decisions neither handed out before nor held by the history: none after a
    /// replay of a complete history. A `CancelTimer` made during a replay is never handed out
    /// again (the history has no event for it).
    pub fn apply_past(&mut self, events: &[HistoryEvent]) -> TurnOutput {
        self.run(events, true)
    }

    /// Whether the execution ended: its `CompleteOrchestration` was handed out, or the history
    /// holds its end (`ExecutionCompleted`).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The `CompleteOrchestration` the code ended with (handed out, or found in the history);
    /// `None` while running, or if the history ended the execution without the code (a
    /// terminate).
    pub fn outcome(&self) -> Option<&Action> {
        self.outcome.as_ref()
    }

    /// The orchestrator's context.
    pub fn context(&self) -> &OrchestrationContext {
        &self.ctx
    }

    fn shared(&self) -> &Shared {
        &self.ctx.shared
    }

    fn run(&mut self, events: &[HistoryEvent], replaying: bool) -> TurnOutput {
        self.shared().lock().replaying = replaying;
        for event in events {
            if self.finished || self.halted {
                break;
            }
            if counts_when_applied(&event.kind) {
                self.shared().lock().count(event.encoded_len());
            }
            if self.step(event) {
                self.poll();
            }
        }
        self.hand_out()
    }

    /// Applies one event; `true` if the code may now progress.
    fn step(&mut self, event: &HistoryEvent) -> bool {
        match &event.kind {
            EventKind::ExecutionStarted { name, input, .. } => {
                return self.start(event.timestamp, name, input.as_deref());
            }
            EventKind::OrchestratorStarted => {
                self.shared().lock().now = event.timestamp;
                return false;
            }
            EventKind::ExecutionCompleted { status, .. } => {
                self.ended_in_history(*status);
                return false;
            }
            _ => {}
        }
        if let Some(recorded) = Shape::of_event(&event.kind) {
            let checked = self
                .shared()
                .lock()
                .match_scheduled(event.event_id, &recorded);
            if let Err(message) = checked {
                self.nondeterminism(message);
            }
            return false;
        }
        if self.completion.is_some() {
            // the code is done: nothing waits, but an event may be carried over
            self.shared().lock().keep_event(event);
            return false;
        }
        let mut st = self.shared().lock();
        match &event.kind {
            EventKind::TaskCompleted {
                scheduled_id,
                result,
            } => st.resolve_task(
                *scheduled_id,
                is_activity,
                payload::decode(result.as_deref()),
                "TaskCompleted",
            ),
            EventKind::TaskFailed {
                scheduled_id,
                failure,
            } => st.resolve_task(*scheduled_id, is_activity, failed(failure), "TaskFailed"),
            EventKind::SubOrchestrationCompleted {
                scheduled_id,
                result,
            } => st.resolve_task(
                *scheduled_id,
                is_sub_orchestration,
                payload::decode(result.as_deref()),
                "SubOrchestrationCompleted",
            ),
            EventKind::SubOrchestrationFailed {
                scheduled_id,
                failure,
            } => st.resolve_task(
                *scheduled_id,
                is_sub_orchestration,
                failed(failure),
                "SubOrchestrationFailed",
            ),
            EventKind::TimerFired { timer_id, .. } => {
                st.resolve_task(*timer_id, is_timer, Ok(Value::Null), "TimerFired")
            }
            EventKind::EventRaised { .. } => st.raise(event),
            EventKind::EntityOperationCompleted { request_id, output } => st.resolve_request(
                request_id,
                payload::decode(output.as_deref()),
                "EntityOperationCompleted",
            ),
            EventKind::EntityOperationFailed {
                request_id,
                failure,
            } => st.resolve_request(request_id, failed(failure), "EntityOperationFailed"),
            EventKind::EntityLockGranted {
                critical_section_id,
            } => st.resolve_request(critical_section_id, Ok(Value::Null), "EntityLockGranted"),
            // suspend, resume, terminate, rewind: the runtime's business
            _ => false,
        }
    }

    /// `ExecutionStarted`: the input, and the orchestrator's first poll.
    fn start(&mut self, timestamp: Millis, name: &str, input: Option<&str>) -> bool {
        if self.started {
            tracing::debug!("a second ExecutionStarted: ignored");
            return false;
        }
        self.started = true;
        {
            let mut st = self.shared().lock();
            st.name = name.to_string();
            st.input = input.map(str::to_string);
            if st.now == 0 {
                st.now = timestamp; // no OrchestratorStarted before it
            }
        }
        let (f, ctx) = (self.orchestrator.clone(), self.ctx.clone());
        match catch_unwind(AssertUnwindSafe(|| f(ctx))) {
            Ok(fut) => {
                self.main = Some(fut);
                true
            }
            Err(panic) => {
                self.panicked(panic);
                false
            }
        }
    }

    /// Polls the retry loops a resolved task woke, then the orchestrator, until neither can
    /// progress.
    fn poll(&mut self) {
        let shared = self.ctx.shared.clone();
        loop {
            if self.main.is_none() {
                return;
            }
            loop {
                let next = shared.lock().pop_ready();
                let Some(sid) = next else { break };
                let polled = catch_unwind(AssertUnwindSafe(|| state::poll_spawned(&shared, sid)));
                if let Err(panic) = polled {
                    self.panicked(panic);
                    return;
                }
            }
            let Some(fut) = self.main.as_mut() else {
                return;
            };
            let mut cx = Context::from_waker(Waker::noop());
            match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut cx))) {
                Ok(Poll::Pending) => {}
                Ok(Poll::Ready(out)) => {
                    self.code_returned(out);
                    return;
                }
                Err(panic) => {
                    self.panicked(panic);
                    return;
                }
            }
            if !shared.lock().has_ready() {
                return;
            }
        }
    }

    /// The orchestrator returned: completed, failed, or continued as new.
    fn code_returned(&mut self, out: Result<Value, OrchestrationError>) {
        let can = self.shared().lock().continue_as_new.take();
        match (out, can) {
            (Ok(_), Some(new_input)) => {
                // the events not consumed; brought up to date when handed out
                let carryover = self.shared().lock().carryover();
                self.complete(RuntimeStatus::ContinuedAsNew, new_input, None, carryover);
            }
            (Ok(v), None) => {
                self.complete(RuntimeStatus::Completed, Some(v.to_string()), None, vec![])
            }
            (Err(e), _) => self.complete(RuntimeStatus::Failed, None, Some(e.details()), vec![]),
        }
    }

    fn panicked(&mut self, panic: Box<dyn Any + Send>) {
        let failure = FailureDetails::new("OrchestratorPanicked", panic_message(&*panic));
        self.complete(RuntimeStatus::Failed, None, Some(failure), vec![]);
    }

    /// The code no longer matches the history: every decision not handed out is dropped and the
    /// execution fails.
    fn nondeterminism(&mut self, message: String) {
        tracing::warn!(
            instance_id = %self.shared().instance_id,
            execution_id = %self.shared().execution_id,
            "{message}"
        );
        self.shared().lock().clear_unsent();
        let failure = FailureDetails::new("NonDeterminism", message);
        self.complete(RuntimeStatus::Failed, None, Some(failure), vec![]);
        self.halted = true;
    }

    /// The `CompleteOrchestration` decision; the code is not polled again.
    fn complete(
        &mut self,
        status: RuntimeStatus,
        result: Option<String>,
        failure: Option<FailureDetails>,
        carryover_events: Vec<HistoryEvent>,
    ) {
        self.main = None;
        let id = self
            .shared()
            .lock()
            .decide(None, |id| Action::CompleteOrchestration {
                id,
                status,
                result,
                failure,
                carryover_events,
            });
        self.completion = Some(id);
    }

    /// `ExecutionCompleted`: the history holds the end of the execution (the code's completion,
    /// or a terminate). Nothing more is handed out.
    fn ended_in_history(&mut self, status: RuntimeStatus) {
        let mut st = self.ctx.shared.lock();
        match self.completion {
            Some(id) => {
                st.refresh_carryover(id);
                if let Some(action) = st.take_unsent(id) {
                    self.outcome = Some(action);
                }
            }
            None => tracing::debug!(
                %status,
                "the history ends the execution before the code did: taken as ended"
            ),
        }
        st.clear_unsent();
        drop(st);
        self.main = None;
        self.finished = true;
    }

    /// The decisions not handed out yet, and the custom status.
    fn hand_out(&mut self) -> TurnOutput {
        let mut st = self.ctx.shared.lock();
        let custom_status = st.custom_status.clone();
        if self.finished {
            return TurnOutput {
                actions: Vec::new(),
                custom_status,
            };
        }
        if let Some(id) = self.completion {
            st.refresh_carryover(id);
        }
        let actions = st.drain_unsent();
        drop(st);
        if let Some(end) = actions
            .iter()
            .rev()
            .find(|a| matches!(a, Action::CompleteOrchestration { .. }))
        {
            self.outcome = Some(end.clone());
            self.finished = true;
        }
        TurnOutput {
            actions,
            custom_status,
        }
    }
}

/// Whether an applied event counts in the history's size: not the events that record decisions
/// (they counted when made) nor the turn markers a live executor never sees.
fn counts_when_applied(kind: &EventKind) -> bool {
    !matches!(
        kind,
        EventKind::OrchestratorCompleted | EventKind::ExecutionCompleted { .. }
    ) && Shape::of_event(kind).is_none()
}

fn is_activity(s: &Shape) -> bool {
    matches!(s, Shape::Activity { .. })
}

fn is_sub_orchestration(s: &Shape) -> bool {
    matches!(s, Shape::SubOrchestration { .. })
}

fn is_timer(s: &Shape) -> bool {
    matches!(s, Shape::Timer)
}

fn failed(failure: &FailureDetails) -> Result<Value, TaskError> {
    Err(TaskError(failure.clone()))
}

/// A panic's message (`panic!` with a literal or a format string).
fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "the orchestrator panicked (no message)".to_string()
    }
}
