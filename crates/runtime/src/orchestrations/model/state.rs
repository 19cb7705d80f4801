//! The state an orchestration's context, its tasks and its executor share (one per execution):
//! the decisions made so far, the tasks ("slots") waiting for their results, the external
//! events ([`Mailbox`]), and the small futures the context runs beside the orchestrator (retry
//! loops). Those futures await single tasks only: a group (`when_all`, `when_any`) wakes
//! nobody but the orchestrator.
//!
//! Nothing here relies on std wakers: the executor polls with a no-op waker. Instead, resolving
//! a slot is O(1) for whoever waits on it: a `when_all` group's pending counter drops, a
//! `when_any` group records its first finisher, a retry loop is queued to be polled.

use super::determinism::{mismatch_message, Shape};
use super::error::TaskError;
use super::mailbox::Mailbox;
use futures::future::BoxFuture;
use perdure_types::command::Millis;
use perdure_types::orchestration::{Action, HistoryEvent, RuntimeStatus, TaskId};
use perdure_types::InstanceId;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Waker};

/// A task's place in [`State::slots`].
pub(crate) type SlotId = usize;

/// What a task resolves to.
pub(crate) type Outcome = Result<Value, TaskError>;

/// One execution's identity and its shared state.
pub(crate) struct Shared {
    /// The instance.
    pub(crate) instance_id: InstanceId,
    /// The execution.
    pub(crate) execution_id: String,
    state: Mutex<State>,
}

impl Shared {
    /// The state of a new execution.
    pub(crate) fn new(instance_id: InstanceId, execution_id: String) -> Self {
        Self {
            instance_id,
            execution_id,
            state: Mutex::new(State::default()),
        }
    }

    /// The state. Never held across user code, so a panic in an orchestrator cannot leave it
    /// half-changed; a poisoned lock is taken as is.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Who waits on a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listener {
    /// A `when_all` group.
    All(usize),
    /// A `when_any` group, and the slot's index in it.
    Any(usize, usize),
    /// A spawned future (a retry loop).
    Spawned(usize),
}

/// A task: its result once known, and who waits for it.
#[derive(Debug, Default)]
struct Slot {
    result: Option<Outcome>,
    /// When it resolved, in resolution order (history order): `when_any` ties.
    seq: u64,
    listeners: Vec<Listener>,
    /// The timer's task id, for a timer.
    timer: Option<TaskId>,
    /// A cancelled timer: it never resolves.
    cancelled: bool,
}

/// A `when_all` or `when_any` over slots.
#[derive(Debug)]
enum Group {
    All { pending: usize },
    Any { first: Option<usize> },
}

/// A decision made by the code: how it compares with the history, where it waits in `unsent`,
/// and the slot its completion resolves.
#[derive(Debug)]
struct Decision {
    shape: Option<Shape>,
    order: u64,
    slot: Option<SlotId>,
}

/// A future run beside the orchestrator.
struct Spawned {
    fut: Option<BoxFuture<'static, ()>>,
    queued: bool,
}

/// The mutable state of one execution.
#[derive(Default)]
pub(crate) struct State {
    /// The orchestrator's name (from `ExecutionStarted`).
    pub(crate) name: String,
    /// The input (JSON text).
    pub(crate) input: Option<String>,
    /// The events being applied are past events.
    pub(crate) replaying: bool,
    /// The timestamp of the latest `OrchestratorStarted`.
    pub(crate) now: Millis,
    /// The custom status (JSON text).
    pub(crate) custom_status: Option<String>,
    /// The new input, once the code asked to continue as new.
    pub(crate) continue_as_new: Option<Option<String>>,
    /// The open critical section: its id and its entities.
    pub(crate) lock: Option<(String, Vec<String>)>,
    /// The history's size so far, in events (see [`State::count`]).
    pub(crate) history_events: u64,
    /// And in encoded bytes.
    pub(crate) history_bytes: u64,
    guid_counter: u64,
    /// By task id.
    decisions: Vec<Decision>,
    /// Decisions not handed out and not found in the history, in the order made.
    unsent: BTreeMap<u64, Action>,
    next_order: u64,
    slots: Vec<Slot>,
    next_seq: u64,
    /// Entity calls and lock requests, by request id / critical section id.
    by_request: HashMap<String, SlotId>,
    /// External events and the waits for them.
    mailbox: Mailbox,
    groups: Vec<Group>,
    spawned: Vec<Spawned>,
    /// Spawned futures to poll (a slot they wait for resolved).
    ready: VecDeque<usize>,
    /// The spawned future being polled (`None`: the orchestrator).
    poller: Option<usize>,
}

impl State {
    // ---- decisions ----

    /// Adds one event of `bytes` bytes to the history's size. The size must be the same live
    /// and on replay, where the history also holds the events recording decisions: so each
    /// decision counts when made (as one event, the size of the decision encoded), the events
    /// recording decisions and the `OrchestratorCompleted` markers are not counted when applied,
    /// and every other event counts when applied.
    pub(crate) fn count(&mut self, bytes: usize) {
        self.history_events += 1;
        self.history_bytes += bytes as u64;
    }

    /// The task id the next decision takes.
    pub(crate) fn next_task_id(&self) -> TaskId {
        TaskId::try_from(self.decisions.len()).unwrap_or(TaskId::MAX)
    }

    /// Makes a decision: it takes the next task id, and waits to be handed out (or found in the
    /// history). `slot` is the task its completion resolves.
    pub(crate) fn decide(
        &mut self,
        slot: Option<SlotId>,
        make: impl FnOnce(TaskId) -> Action,
    ) -> TaskId {
        let id = self.next_task_id();
        let action = make(id);
        self.count(perdure_types::codec::encoded_len(&action).unwrap_or(0));
        let order = self.next_order;
        self.next_order += 1;
        self.decisions.push(Decision {
            shape: Shape::of_action(&action),
            order,
            slot,
        });
        self.unsent.insert(order, action);
        id
    }

    /// Compares the history's scheduling event for task `id` with the decision the code made
    /// there; when they are the same step, the decision is not handed out (again). `Err` is the
    /// nondeterminism message.
    pub(crate) fn match_scheduled(&mut self, id: TaskId, recorded: &Shape) -> Result<(), String> {
        let Some(d) = usize::try_from(id).ok().and_then(|i| self.decisions.get(i)) else {
            return Err(mismatch_message(id, recorded, None));
        };
        match &d.shape {
            Some(made) if made.is_recorded_as(recorded) => {}
            made => return Err(mismatch_message(id, recorded, made.as_ref())),
        }
        let order = d.order;
        // the history's request ids win (a reply names them)
        let rekey = match (&d.shape, recorded) {
            (Some(Shape::Call { request_id: a, .. }), Shape::Call { request_id: b, .. })
            | (
                Some(Shape::Lock {
                    critical_section_id: a,
                    ..
                }),
                Shape::Lock {
                    critical_section_id: b,
                    ..
                },
            ) if a != b => Some((a.clone(), b.clone())),
            _ => None,
        };
        if let Some((code_id, history_id)) = rekey {
            if let Some(slot) = self.by_request.remove(&code_id) {
                self.by_request.insert(history_id.clone(), slot);
            }
            if let Some((cs, _)) = self.lock.as_mut().filter(|(cs, _)| *cs == code_id) {
                *cs = history_id;
            }
        }
        self.unsent.remove(&order);
        Ok(())
    }

    /// Takes decision `id` out of the unsent ones (the history holds it): `Some` if it was
    /// there.
    pub(crate) fn take_unsent(&mut self, id: TaskId) -> Option<Action> {
        let order = usize::try_from(id)
            .ok()
            .and_then(|i| self.decisions.get(i))?
            .order;
        self.unsent.remove(&order)
    }

    /// Brings the carried-over events of an unsent continue-as-new (decision `id`) up to date:
    /// events that arrived after the code returned, in the same turn, are carried over too.
    pub(crate) fn refresh_carryover(&mut self, id: TaskId) {
        let Some(order) = usize::try_from(id)
            .ok()
            .and_then(|i| self.decisions.get(i))
            .map(|d| d.order)
        else {
            return;
        };
        let events = self.carryover();
        if let Some(Action::CompleteOrchestration {
            status: RuntimeStatus::ContinuedAsNew,
            carryover_events,
            ..
        }) = self.unsent.get_mut(&order)
        {
            *carryover_events = events;
        }
    }

    /// Hands out every unsent decision, in the order made.
    pub(crate) fn drain_unsent(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.unsent).into_values().collect()
    }

    /// Drops every unsent decision (the code no longer matches the history).
    pub(crate) fn clear_unsent(&mut self) {
        self.unsent.clear();
    }

    // ---- tasks ----

    /// A new, unresolved task.
    pub(crate) fn new_slot(&mut self) -> SlotId {
        self.slots.push(Slot::default());
        self.slots.len() - 1
    }

    /// A task that is already resolved (a task the context could not make).
    pub(crate) fn resolved_slot(&mut self, outcome: Outcome) -> SlotId {
        let slot = self.new_slot();
        self.resolve(slot, outcome);
        slot
    }

    /// Resolves a task and tells whoever waits; `false` if it was resolved or cancelled already.
    pub(crate) fn resolve(&mut self, slot: SlotId, outcome: Outcome) -> bool {
        let Some(s) = self.slots.get_mut(slot) else {
            return false;
        };
        if s.result.is_some() || s.cancelled {
            return false;
        }
        s.result = Some(outcome);
        s.seq = self.next_seq;
        self.next_seq += 1;
        for l in std::mem::take(&mut s.listeners) {
            match l {
                Listener::All(g) => {
                    if let Some(Group::All { pending }) = self.groups.get_mut(g) {
                        *pending = pending.saturating_sub(1);
                    }
                }
                Listener::Any(g, i) => {
                    if let Some(Group::Any { first }) = self.groups.get_mut(g) {
                        first.get_or_insert(i);
                    }
                }
                Listener::Spawned(sid) => {
                    if let Some(sp) = self.spawned.get_mut(sid) {
                        if !sp.queued {
                            sp.queued = true;
                            self.ready.push_back(sid);
                        }
                    }
                }
            }
        }
        true
    }

    /// Resolves the task of decision `id` with a completion event (`what`, for the log) if the
    /// decision is of the kind `fits` accepts; `false` (logged) otherwise.
    pub(crate) fn resolve_task(
        &mut self,
        id: TaskId,
        fits: fn(&Shape) -> bool,
        outcome: Outcome,
        what: &str,
    ) -> bool {
        let d = usize::try_from(id).ok().and_then(|i| self.decisions.get(i));
        let slot = d
            .filter(|d| d.shape.as_ref().is_some_and(fits))
            .and_then(|d| d.slot);
        let Some(slot) = slot else {
            tracing::debug!(task_id = id, "{what} for no task of its kind: ignored");
            return false;
        };
        let done = self.resolve(slot, outcome);
        if !done {
            tracing::debug!(
                task_id = id,
                "{what} for a finished or cancelled task: ignored"
            );
        }
        done
    }

    /// Remembers that the reply naming `request_id` resolves `slot`.
    pub(crate) fn expect_reply(&mut self, request_id: String, slot: SlotId) {
        self.by_request.insert(request_id, slot);
    }

    /// Resolves the task waiting for the reply naming `request_id`; `false` (logged) if none.
    pub(crate) fn resolve_request(
        &mut self,
        request_id: &str,
        outcome: Outcome,
        what: &str,
    ) -> bool {
        let Some(&slot) = self.by_request.get(request_id) else {
            tracing::debug!(request_id, "{what} for an unknown request: ignored");
            return false;
        };
        let done = self.resolve(slot, outcome);
        if !done {
            tracing::debug!(request_id, "{what} for a finished request: ignored");
        }
        done
    }

    /// The slot is timer `id`'s.
    pub(crate) fn set_timer(&mut self, slot: SlotId, id: TaskId) {
        if let Some(s) = self.slots.get_mut(slot) {
            s.timer = Some(id);
        }
    }

    /// Cancels a timer that has not fired: it never resolves, and a `CancelTimer` decision is
    /// made (not while replaying: it was handed out when first made; the history has no event
    /// for it). `false` if the slot is no unfired, uncancelled timer.
    pub(crate) fn cancel_timer(&mut self, slot: SlotId) -> bool {
        let Some(s) = self.slots.get_mut(slot) else {
            return false;
        };
        let Some(timer_id) = s.timer.filter(|_| s.result.is_none() && !s.cancelled) else {
            return false;
        };
        s.cancelled = true;
        if !self.replaying {
            let order = self.next_order;
            self.next_order += 1;
            self.unsent.insert(order, Action::CancelTimer { timer_id });
        }
        true
    }

    /// The task's result, if resolved. Unresolved, polled by a spawned future: that future is
    /// polled again when it resolves.
    pub(crate) fn poll_slot(&mut self, slot: SlotId) -> Option<Outcome> {
        let poller = self.poller;
        let s = self.slots.get_mut(slot)?;
        if let Some(r) = &s.result {
            return Some(r.clone());
        }
        if let Some(sid) = poller {
            let l = Listener::Spawned(sid);
            if !s.listeners.contains(&l) {
                s.listeners.push(l);
            }
        }
        None
    }

    /// Whether the task resolved.
    pub(crate) fn is_resolved(&self, slot: SlotId) -> bool {
        self.slots.get(slot).is_some_and(|s| s.result.is_some())
    }

    // ---- when_all / when_any ----

    /// A group that completes when every slot has resolved.
    pub(crate) fn group_all(&mut self, slots: &[SlotId]) -> usize {
        let g = self.groups.len();
        let mut pending = 0;
        for &slot in slots {
            if let Some(s) = self.slots.get_mut(slot).filter(|s| s.result.is_none()) {
                s.listeners.push(Listener::All(g));
                pending += 1;
            }
        }
        self.groups.push(Group::All { pending });
        g
    }

    /// A group that completes when a slot resolves: the one resolved first (in history order)
    /// if some already are.
    pub(crate) fn group_any(&mut self, slots: &[SlotId]) -> usize {
        let g = self.groups.len();
        let first = slots
            .iter()
            .enumerate()
            .filter_map(|(i, &slot)| {
                let s = self.slots.get(slot)?;
                s.result.as_ref().map(|_| (s.seq, i))
            })
            .min()
            .map(|(_, i)| i);
        if first.is_none() {
            for (i, &slot) in slots.iter().enumerate() {
                if let Some(s) = self.slots.get_mut(slot) {
                    s.listeners.push(Listener::Any(g, i));
                }
            }
        }
        self.groups.push(Group::Any { first });
        g
    }

    /// Every slot's result, once the `when_all` group `g` is complete.
    pub(crate) fn all_results(&self, g: usize, slots: &[SlotId]) -> Option<Vec<Outcome>> {
        match self.groups.get(g) {
            Some(Group::All { pending: 0 }) => Some(
                slots
                    .iter()
                    .map(|&slot| {
                        self.slots
                            .get(slot)
                            .and_then(|s| s.result.clone())
                            .unwrap_or_else(|| Err(lost_task()))
                    })
                    .collect(),
            ),
            _ => None,
        }
    }

    /// The first finisher's index and result, once the `when_any` group `g` has one.
    pub(crate) fn any_result(&self, g: usize, slots: &[SlotId]) -> Option<(usize, Outcome)> {
        let Some(Group::Any { first: Some(i) }) = self.groups.get(g) else {
            return None;
        };
        let r = slots
            .get(*i)
            .and_then(|&slot| self.slots.get(slot))
            .and_then(|s| s.result.clone())
            .unwrap_or_else(|| Err(lost_task()));
        Some((*i, r))
    }

    // ---- external events ----

    /// An `EventRaised`: it resolves the oldest wait for its name, or is kept for the next one.
    /// `true` if it resolved a wait.
    pub(crate) fn raise(&mut self, event: &HistoryEvent) -> bool {
        match self.mailbox.deliver(event) {
            Some((slot, outcome)) => self.resolve(slot, outcome),
            None => false,
        }
    }

    /// An `EventRaised` after the code returned: kept for a continue-as-new to carry over.
    pub(crate) fn keep_event(&mut self, event: &HistoryEvent) {
        self.mailbox.keep(event);
    }

    /// A wait for the next event named `name` (case-insensitive): resolved at once by the
    /// oldest event of that name that arrived before anyone waited.
    pub(crate) fn wait_event(&mut self, name: &str) -> SlotId {
        let slot = self.new_slot();
        if let Some(outcome) = self.mailbox.take_or_wait(name, slot) {
            self.resolve(slot, outcome);
        }
        slot
    }

    /// The events received and not consumed, in arrival order (carried over by
    /// continue-as-new).
    pub(crate) fn carryover(&self) -> Vec<HistoryEvent> {
        self.mailbox.kept_events()
    }

    // ---- GUIDs ----

    /// The number of the next GUID.
    pub(crate) fn next_guid_number(&mut self) -> u64 {
        let n = self.guid_counter;
        self.guid_counter += 1;
        n
    }

    // ---- spawned futures ----

    /// The next spawned future to poll.
    pub(crate) fn pop_ready(&mut self) -> Option<usize> {
        self.ready.pop_front()
    }

    /// Whether a spawned future waits to be polled.
    pub(crate) fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }
}

/// A slot that should hold a result holds none (never expected).
fn lost_task() -> TaskError {
    TaskError::new("Internal", "a finished task has no result")
}

/// Runs `fut` beside the orchestrator: polled once now (so the decisions it makes take their
/// task ids where the code asked for it), then whenever a task it waits for resolves.
pub(crate) fn spawn(shared: &Shared, fut: BoxFuture<'static, ()>) {
    let sid = {
        let mut st = shared.lock();
        st.spawned.push(Spawned {
            fut: Some(fut),
            queued: false,
        });
        st.spawned.len() - 1
    };
    poll_spawned(shared, sid);
}

/// Polls spawned future `sid` (if not finished). A panic propagates to the caller.
pub(crate) fn poll_spawned(shared: &Shared, sid: usize) {
    let (fut, previous) = {
        let mut st = shared.lock();
        let fut = st.spawned.get_mut(sid).and_then(|sp| {
            sp.queued = false;
            sp.fut.take()
        });
        let previous = st.poller.replace(sid);
        (fut, previous)
    };
    let pending = fut.map(|mut fut| {
        let mut cx = Context::from_waker(Waker::noop());
        fut.as_mut().poll(&mut cx).is_pending().then_some(fut)
    });
    let mut st = shared.lock();
    st.poller = previous;
    if let (Some(Some(fut)), Some(sp)) = (pending, st.spawned.get_mut(sid)) {
        sp.fut = Some(fut);
    }
}
