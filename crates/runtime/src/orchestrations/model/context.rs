//! [`OrchestrationContext`]: everything an orchestrator does goes through it, so each decision is
//! recorded in the history and replays to the same result.

use super::error::{OrchestrationError, TaskError};
use super::guid::deterministic_guid;
use super::payload;
use super::retry::{self, RetryPolicy};
use super::state::{self, Shared, State};
use super::task::Task;
use perdure_types::command::Millis;
use perdure_types::orchestration::Action;
use perdure_types::{EntityId, InstanceId};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::fmt;
use std::sync::Arc;

/// What an orchestrator sees and does: its identity and input, a deterministic clock and GUIDs,
/// and the calls that make decisions (activities, timers, sub-orchestrations, events, entities).
///
/// Cheap to clone; every clone is the same context. Calls that start something return a
/// [`Task`] to await; one-way calls (`signal_entity`, `send_event`, ...) return at once and fail
/// only when their input does not serialize.
#[derive(Clone)]
pub struct OrchestrationContext {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for OrchestrationContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrchestrationContext")
            .field("instance_id", &self.shared.instance_id)
            .field("execution_id", &self.shared.execution_id)
            .finish_non_exhaustive()
    }
}

/// A value that does not serialize fails the task that would carry it (retrying cannot help).
fn serialization_failure(e: serde_json::Error) -> TaskError {
    TaskError::new("SerializationError", e.to_string()).non_retriable()
}

impl OrchestrationContext {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The instance's id.
    pub fn instance_id(&self) -> &InstanceId {
        &self.shared.instance_id
    }

    /// The execution's id (new for each start and each continue-as-new).
    pub fn execution_id(&self) -> &str {
        &self.shared.execution_id
    }

    /// The orchestrator's name, as the instance was started with.
    pub fn name(&self) -> String {
        self.shared.lock().name.clone()
    }

    /// The input as `T` (no input is JSON `null`).
    pub fn input<T: DeserializeOwned>(&self) -> Result<T, OrchestrationError> {
        let text = self.shared.lock().input.clone();
        let v = payload::decode(text.as_deref())?;
        Ok(serde_json::from_value(v)?)
    }

    /// Whether the code is being replayed from the history (its decisions were made before):
    /// useful to log only once.
    pub fn is_replaying(&self) -> bool {
        self.shared.lock().replaying
    }

    /// The orchestration's clock, in milliseconds since the epoch: the start time of the turn
    /// being run (the latest `OrchestratorStarted`), the same on every replay. Never read the
    /// system clock in an orchestrator.
    pub fn current_time(&self) -> Millis {
        self.shared.lock().now
    }

    /// A new GUID (UUID text), the same on every replay: derived from the instance, the
    /// execution and how many GUIDs the execution made before.
    pub fn new_guid(&self) -> String {
        self.guid(&mut self.shared.lock())
    }

    /// [`new_guid`](Self::new_guid) with the state locked.
    fn guid(&self, st: &mut State) -> String {
        let n = st.next_guid_number();
        deterministic_guid(
            self.shared.instance_id.as_str(),
            &self.shared.execution_id,
            n,
        )
    }

    /// The execution's history so far, in events: with [`history_bytes`](Self::history_bytes),
    /// a hint to continue as new before the history grows too large. The same live and on
    /// replay: the events applied, plus one per decision made (instead of the event that records
    /// it), without the `OrchestratorCompleted` markers.
    pub fn history_events(&self) -> u64 {
        self.shared.lock().history_events
    }

    /// The encoded size of those events, in bytes (a decision counts as its encoded size).
    pub fn history_bytes(&self) -> u64 {
        self.shared.lock().history_bytes
    }

    /// A task already failed with `e` (no decision is made).
    fn failed(&self, e: TaskError) -> Task {
        let slot = self.shared.lock().resolved_slot(Err(e));
        Task::new(self.shared.clone(), slot)
    }

    // ---- activities ----

    /// Runs activity `name` with `input`; the task resolves to its result or its failure.
    pub fn call_activity(&self, name: impl Into<String>, input: impl Serialize) -> Task {
        match payload::encode(&input) {
            Ok(input) => self.schedule_activity(name.into(), input),
            Err(e) => self.failed(serialization_failure(e)),
        }
    }

    /// Runs activity `name`, retried by `policy`: each attempt is an activity task and each wait
    /// a durable timer. The task resolves to the first success, or to the last failure.
    pub fn call_activity_with_retry(
        &self,
        name: impl Into<String>,
        input: impl Serialize,
        policy: RetryPolicy,
    ) -> Task {
        let name = name.into();
        match payload::encode(&input) {
            Ok(input) => self.with_retry(policy, move |ctx| {
                ctx.schedule_activity(name.clone(), input.clone())
            }),
            Err(e) => self.failed(serialization_failure(e)),
        }
    }

    fn schedule_activity(&self, name: String, input: Option<String>) -> Task {
        let mut st = self.shared.lock();
        let slot = st.new_slot();
        st.decide(Some(slot), |id| Action::ScheduleTask { id, name, input });
        drop(st);
        Task::new(self.shared.clone(), slot)
    }

    /// Runs `attempt` under `policy` beside the orchestrator; the returned task resolves with
    /// the outcome.
    fn with_retry(
        &self,
        policy: RetryPolicy,
        attempt: impl Fn(&OrchestrationContext) -> Task + Send + 'static,
    ) -> Task {
        let slot = self.shared.lock().new_slot();
        let fut = retry::run(self.clone(), policy, attempt, slot);
        state::spawn(&self.shared, Box::pin(fut));
        Task::new(self.shared.clone(), slot)
    }

    // ---- sub-orchestrations ----

    /// Starts orchestrator `name` as a child instance and waits for its output. Without an
    /// `instance_id`, the child's id is `{this instance}:{task id, 4 hex digits}`, as Durable
    /// Task derives it (deterministic).
    pub fn call_sub_orchestration(
        &self,
        name: impl Into<String>,
        instance_id: Option<String>,
        input: impl Serialize,
    ) -> Task {
        match payload::encode(&input) {
            Ok(input) => self.start_sub_orchestration(name.into(), instance_id.as_deref(), input),
            Err(e) => self.failed(serialization_failure(e)),
        }
    }

    /// [`call_sub_orchestration`](Self::call_sub_orchestration), retried by `policy` (each
    /// attempt without an `instance_id` is a child with an id of its own).
    pub fn call_sub_orchestration_with_retry(
        &self,
        name: impl Into<String>,
        instance_id: Option<String>,
        input: impl Serialize,
        policy: RetryPolicy,
    ) -> Task {
        let name = name.into();
        match payload::encode(&input) {
            Ok(input) => self.with_retry(policy, move |ctx| {
                ctx.start_sub_orchestration(name.clone(), instance_id.as_deref(), input.clone())
            }),
            Err(e) => self.failed(serialization_failure(e)),
        }
    }

    fn start_sub_orchestration(
        &self,
        name: String,
        instance_id: Option<&str>,
        input: Option<String>,
    ) -> Task {
        let mut st = self.shared.lock();
        let child = match instance_id {
            Some(id) => id.to_string(),
            None => format!("{}:{:04x}", self.shared.instance_id, st.next_task_id()),
        };
        let child = match InstanceId::new(&child) {
            Ok(c) => c,
            Err(e) => {
                drop(st);
                let msg = format!("sub-orchestration instance id {child:?}: {e}");
                return self.failed(TaskError::new("InvalidInstanceId", msg).non_retriable());
            }
        };
        let slot = st.new_slot();
        st.decide(Some(slot), |id| Action::CreateSubOrchestration {
            id,
            name,
            instance_id: child,
            input,
        });
        drop(st);
        Task::new(self.shared.clone(), slot)
    }

    // ---- timers ----

    /// A durable timer firing at `fire_at` (milliseconds since the epoch); resolves to `null`.
    pub fn create_timer(&self, fire_at: Millis) -> Task {
        let mut st = self.shared.lock();
        let slot = st.new_slot();
        let id = st.decide(Some(slot), |id| Action::CreateTimer { id, fire_at });
        st.set_timer(slot, id);
        drop(st);
        Task::new(self.shared.clone(), slot)
    }

    /// A durable timer firing `ms` after [`current_time`](Self::current_time).
    pub fn sleep(&self, ms: u64) -> Task {
        self.create_timer(self.current_time().saturating_add(ms))
    }

    /// Cancels a timer that has not fired (a `CancelTimer` decision): its task never completes,
    /// so do not await it afterwards. `false` (and nothing done) if `timer` is not a timer of
    /// this orchestration, or it fired or was cancelled already.
    pub fn cancel_timer(&self, timer: &Task) -> bool {
        Arc::ptr_eq(&timer.shared, &self.shared) && self.shared.lock().cancel_timer(timer.slot)
    }

    // ---- external events ----

    /// Waits for the next external event named `name` (case-insensitive); resolves to its data.
    /// An event that arrived before anyone waited for it is kept, and goes to the first wait
    /// for its name (several, in arrival order). No decision is made: waiting is free.
    pub fn wait_for_external_event(&self, name: &str) -> Task {
        let slot = self.shared.lock().wait_event(name);
        Task::new(self.shared.clone(), slot)
    }

    /// Raises event `name` with `data` on another instance.
    pub fn send_event(
        &self,
        instance_id: &str,
        name: impl Into<String>,
        data: impl Serialize,
    ) -> Result<(), OrchestrationError> {
        let receiver = InstanceId::new(instance_id).map_err(|e| {
            OrchestrationError::new(
                "InvalidInstanceId",
                format!("event receiver {instance_id:?}: {e}"),
            )
        })?;
        let data = payload::encode(&data)?;
        let name = name.into();
        self.shared.lock().decide(None, |id| Action::SendEvent {
            id,
            instance_id: receiver,
            name,
            data,
        });
        Ok(())
    }

    // ---- entities ----

    /// Signals `operation` of `entity` with `input` (one-way).
    pub fn signal_entity(
        &self,
        entity: &EntityId,
        operation: impl Into<String>,
        input: impl Serialize,
    ) -> Result<(), OrchestrationError> {
        self.signal(entity, operation.into(), input, None)
    }

    /// Signals `operation` of `entity`, delivered no earlier than `at` (milliseconds since the
    /// epoch).
    pub fn signal_entity_at(
        &self,
        entity: &EntityId,
        operation: impl Into<String>,
        input: impl Serialize,
        at: Millis,
    ) -> Result<(), OrchestrationError> {
        self.signal(entity, operation.into(), input, Some(at))
    }

    fn signal(
        &self,
        entity: &EntityId,
        operation: String,
        input: impl Serialize,
        scheduled_time: Option<Millis>,
    ) -> Result<(), OrchestrationError> {
        let input = payload::encode(&input)?;
        let request_id = self.new_guid();
        self.shared.lock().decide(None, |id| Action::SignalEntity {
            id,
            request_id,
            target: entity.canonical(),
            operation,
            input,
            scheduled_time,
        });
        Ok(())
    }

    /// Calls `operation` of `entity` with `input`; resolves to the operation's result or its
    /// failure.
    pub fn call_entity(
        &self,
        entity: &EntityId,
        operation: impl Into<String>,
        input: impl Serialize,
    ) -> Task {
        let input = match payload::encode(&input) {
            Ok(i) => i,
            Err(e) => return self.failed(serialization_failure(e)),
        };
        let operation = operation.into();
        let request_id = self.new_guid();
        let mut st = self.shared.lock();
        let slot = st.new_slot();
        st.expect_reply(request_id.clone(), slot);
        st.decide(Some(slot), |id| Action::CallEntity {
            id,
            request_id,
            target: entity.canonical(),
            operation,
            input,
        });
        drop(st);
        Task::new(self.shared.clone(), slot)
    }

    /// Opens a critical section over `entities` (sorted, duplicates dropped); resolves to `null`
    /// once every one is held. While held, only this execution's calls and signals run on them;
    /// everything else sent to them waits and runs after the release (by
    /// [`unlock_entities`](Self::unlock_entities), or when the execution ends, however it ends).
    /// One critical section at a time: a second one (before
    /// [`unlock_entities`](Self::unlock_entities)), or an empty set, fails the task.
    pub fn lock_entities(&self, entities: &[EntityId]) -> Task {
        let mut lock_set: Vec<String> = entities.iter().map(EntityId::canonical).collect();
        lock_set.sort();
        lock_set.dedup();
        if lock_set.is_empty() {
            return self.failed(
                TaskError::new("LockNotAllowed", "a lock needs at least one entity")
                    .non_retriable(),
            );
        }
        let mut st = self.shared.lock();
        if let Some((cs, _)) = &st.lock {
            let msg = format!("critical section {cs} is still open: unlock it first");
            drop(st);
            return self.failed(TaskError::new("LockNotAllowed", msg).non_retriable());
        }
        let critical_section_id = self.guid(&mut st);
        let slot = st.new_slot();
        st.expect_reply(critical_section_id.clone(), slot);
        st.lock = Some((critical_section_id.clone(), lock_set.clone()));
        st.decide(Some(slot), |id| Action::LockEntities {
            id,
            critical_section_id,
            lock_set,
        });
        drop(st);
        Task::new(self.shared.clone(), slot)
    }

    /// Closes the open critical section: one `UnlockEntity` decision per entity of its set.
    /// Nothing happens when none is open.
    pub fn unlock_entities(&self) {
        let mut st = self.shared.lock();
        let Some((critical_section_id, lock_set)) = st.lock.take() else {
            return;
        };
        for target in lock_set {
            let critical_section_id = critical_section_id.clone();
            st.decide(None, |id| Action::UnlockEntity {
                id,
                critical_section_id,
                target,
            });
        }
    }

    // ---- status and continue-as-new ----

    /// Sets the custom status the instance shows (JSON), from this turn on.
    pub fn set_custom_status(&self, value: impl Serialize) -> Result<(), OrchestrationError> {
        let text = serde_json::to_value(&value)?.to_string();
        self.shared.lock().custom_status = Some(text);
        Ok(())
    }

    /// Restarts the instance with `input` and an empty history once the orchestrator returns
    /// (return right away: `return ctx.continue_as_new(next)`; the value returned is ignored).
    /// External events received and not consumed are carried over to the new execution.
    /// Returning an error instead fails the execution.
    pub fn continue_as_new(&self, input: impl Serialize) -> Result<Value, OrchestrationError> {
        let input = payload::encode(&input)?;
        self.shared.lock().continue_as_new = Some(input);
        Ok(Value::Null)
    }
}
