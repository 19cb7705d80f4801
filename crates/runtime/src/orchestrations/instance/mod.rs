//! One live orchestration instance on its partition's leader: a task that runs the instance's
//! turns one at a time.
//!
//! A step reads the instance's record and inbox (and, to rebuild its live orchestrator, its
//! history), feeds the new events to the orchestrator and commits what it decided as ONE command
//! (`turn.rs`), then runs the activities it scheduled. Events that arrive while a turn is in
//! flight wait in the inbox (or, for activity results, in memory) and the next turn takes them
//! all. The live orchestrator stays in memory between turns, so a new event costs no replay;
//! it is rebuilt from the history after a leader change, a fenced turn, or passivation.
//!
//! The instance also keeps the record its last turn committed (the record as the state machine
//! holds it: the apply's counters follow from the turn). Whatever puts a message in an instance's
//! inbox wakes it afterwards (a start, an event, a delivery from the outbox, a rewind, the scan's
//! safety net), so a step that had no [`InstanceMsg::Wake`] since the inbox was last read, and
//! knows its committed record, reads nothing: a turn driven by activity results alone costs no
//! store read. Should the record have changed under it all the same (a start replacing the
//! instance), the turn's fence refuses the command and the instance starts over from a read.
//!
//! Start requests (an `ExecutionStarted` sent by a parent through the outbox, without an
//! execution id) become a `StartInstance` of this instance; events for another execution, or for
//! an instance that does not exist or has finished, are consumed and dropped.

use super::activities;

mod start;
use super::driver::{Driver, Locks};
use super::metrics::OrchestrationMetrics;
use super::turn::{self, Limits, TurnInput};
use super::workload::PartitionRt;
use crate::Error;
use futures::FutureExt;
use perdure_types::command::{event_bytes, Op, OpResult, WorkItem};
use perdure_types::message::Message;
use perdure_types::orchestration::{
    Action, EventKind, FailureDetails, HistoryEvent, InstanceRecord, ParentInstance, ReusePolicy,
    RuntimeStatus, TaskId,
};
use perdure_types::{InstanceId, Target};
use std::collections::{HashSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// A message to an instance's task.
#[derive(Debug)]
pub(crate) enum InstanceMsg {
    /// Look at the inbox.
    Wake,
    /// The partition is over its share of live instances: leave if idle.
    Passivate,
    /// An activity of this node finished.
    ActivityDone {
        execution_id: String,
        task_id: TaskId,
        event: Box<HistoryEvent>,
    },
    /// A client's start of this instance (`Orchestrations::start` on this leader).
    Start(Box<StartMsg>),
}

/// A client's start, run by the instance's task: when no record of the instance exists, the
/// start and the execution's first turn commit as ONE command (a turn that creates its instance,
/// `ExecutionStarted` first in its history); otherwise, or when that turn is fenced out by a
/// record that exists after all, as `StartInstance` under the reuse policy.
#[derive(Debug)]
pub(crate) struct StartMsg {
    pub record: InstanceRecord,
    pub started: HistoryEvent,
    pub policy: ReusePolicy,
    /// The start's result: `Done` (started), `Duplicate` or `Refused(status)`, as
    /// `StartInstance` answers.
    pub reply: oneshot::Sender<Result<OpResult, Error>>,
}

/// The instance's task: steps until idle, then waits for a message (or passivates).
pub(crate) async fn run(
    rt: Arc<PartitionRt>,
    id: InstanceId,
    mut rx: mpsc::UnboundedReceiver<InstanceMsg>,
) {
    let metrics = rt.shared.metrics.clone();
    metrics.live.fetch_add(1, Ordering::Relaxed);
    let idle = Duration::from_millis(rt.shared.config.passivate_after_ms);
    let mut inst = Instance::new(rt.clone(), id.clone());
    let mut evicted = false;
    loop {
        while let Ok(m) = rx.try_recv() {
            evicted |= inst.take(m);
        }
        if evicted {
            evicted = false;
            if inst.can_passivate() && rt.leave_if_idle(&id, &rx) {
                metrics.live.fetch_sub(1, Ordering::Relaxed);
                return;
            }
        }
        let started = Instant::now();
        match AssertUnwindSafe(inst.step()).catch_unwind().await {
            Ok(Ok(true)) => {
                inst.crashes = 0;
                metrics.turn_took(started.elapsed().as_micros() as u64);
                continue;
            }
            Ok(Ok(false)) => inst.crashes = 0,
            Ok(Err(e)) => {
                // unavailability (a leadership changing, a deadline) is not the step's fault
                let counts = !matches!(
                    e.kind(),
                    perdure_types::ErrorKind::Unavailable
                        | perdure_types::ErrorKind::DeadlineExceeded
                );
                if inst.crashed(e.to_string(), counts).await {
                    break;
                }
                continue;
            }
            Err(panic) => {
                let why = format!("panicked: {}", activities::panic_message(&panic));
                if inst.crashed(why, true).await {
                    break;
                }
                continue;
            }
        }
        tokio::select! {
            m = rx.recv() => match m {
                Some(m) => evicted |= inst.take(m),
                None => break,
            },
            _ = tokio::time::sleep(idle), if inst.can_passivate() => {
                if rt.leave_if_idle(&id, &rx) {
                    metrics.live.fetch_sub(1, Ordering::Relaxed);
                    return;
                }
            }
        }
    }
    rt.left(&id);
    metrics.live.fetch_sub(1, Ordering::Relaxed);
}

/// A decoded inbox message: its sequence number, the execution it is for, the event.
struct Incoming {
    seq: u64,
    execution_id: Option<String>,
    event: HistoryEvent,
}

impl Incoming {
    /// An `ExecutionStarted` sent without an execution id: a request to start the instance.
    fn is_start_request(&self) -> bool {
        self.execution_id.is_none() && matches!(self.event.kind, EventKind::ExecutionStarted { .. })
    }
}

struct Instance {
    rt: Arc<PartitionRt>,
    id: InstanceId,
    target: Target,
    /// The live orchestrator, for `exec`, having seen `driver_events` history events.
    driver: Option<Driver>,
    exec: String,
    driver_events: u64,
    /// Decisions handed out and not committed yet (a wide turn commits in several commands).
    pending_actions: VecDeque<Action>,
    /// Activity results not committed yet.
    done: Vec<(TaskId, HistoryEvent)>,
    /// Activities running on this node.
    running: HashSet<TaskId>,
    /// Work items waiting for a slot of this instance.
    queued: VecDeque<WorkItem>,
    /// The instance's record as committed, when this task knows it (its own last turn
    /// committed it, or a read found it and nothing was proposed since); `None`: read it.
    record: Option<InstanceRecord>,
    /// A wake arrived since the inbox was last read (or the last read left messages in it):
    /// the next step reads the inbox.
    inbox_dirty: bool,
    /// Whether the stored work items were looked at since the driver was built.
    items_loaded: bool,
    /// Client starts not run yet.
    starts: VecDeque<StartMsg>,
    /// Steps that failed in a row.
    crashes: u32,
    last_crash: String,
}

impl Instance {
    fn new(rt: Arc<PartitionRt>, id: InstanceId) -> Self {
        Self {
            target: Target::Instance(id.clone()),
            rt,
            id,
            driver: None,
            exec: String::new(),
            driver_events: 0,
            pending_actions: VecDeque::new(),
            done: Vec::new(),
            running: HashSet::new(),
            queued: VecDeque::new(),
            record: None,
            inbox_dirty: true,
            items_loaded: false,
            starts: VecDeque::new(),
            crashes: 0,
            last_crash: String::new(),
        }
    }

    /// Takes a message; true when it asks the instance to leave.
    fn take(&mut self, m: InstanceMsg) -> bool {
        match m {
            InstanceMsg::Passivate => return true,
            InstanceMsg::Wake => self.inbox_dirty = true,
            InstanceMsg::Start(s) => self.starts.push_back(*s),
            InstanceMsg::ActivityDone {
                execution_id,
                task_id,
                event,
            } => {
                if execution_id == self.exec && self.running.remove(&task_id) {
                    self.done.push((task_id, *event));
                }
            }
        }
        false
    }

    fn can_passivate(&self) -> bool {
        self.starts.is_empty()
            && self.running.is_empty()
            && self.done.is_empty()
            && self.queued.is_empty()
            && self.pending_actions.is_empty()
    }

    /// Forgets what is in memory: the next step starts from what is committed (a read).
    fn reset(&mut self) {
        self.driver = None;
        self.record = None;
        self.pending_actions.clear();
        self.items_loaded = false;
    }

    /// Whether the next step can go without a read: it knows the committed record, no wake
    /// came since the inbox was read, and it has its live orchestrator and work items (or the
    /// record says the execution ended).
    fn knows_enough(&self) -> bool {
        !self.inbox_dirty
            && self.record.as_ref().is_some_and(|r| {
                r.status.is_terminal() || (self.driver.is_some() && self.items_loaded)
            })
    }

    /// A step failed: back off; after `orchestrations.max_dispatches` failures in a row the
    /// instance is quarantined (failed with a `PoisonMessage` naming the step): then true, and
    /// its task ends (a later message starts a new one).
    async fn crashed(&mut self, why: String, counts: bool) -> bool {
        if counts {
            self.crashes += 1;
        }
        tracing::warn!(instance = %self.id, crashes = self.crashes, error = %why, "orchestration step failed");
        self.last_crash = why;
        self.reset();
        let backoff = Duration::from_millis((50u64 << self.crashes.clamp(1, 7)).min(5_000));
        tokio::time::sleep(backoff).await;
        if self.crashes >= self.rt.shared.config.max_dispatches {
            let failure = FailureDetails::new(
                super::api::POISON,
                format!(
                    "the instance's turn failed {} times in a row (orchestrations.max_dispatches); last: {}",
                    self.crashes, self.last_crash
                ),
            );
            match self.fail_now(failure).await {
                Ok(true) => {
                    tracing::error!(instance = %self.id, "quarantined: failed as PoisonMessage");
                    return true;
                }
                Ok(false) => return true,
                Err(e) => {
                    tracing::warn!(instance = %self.id, error = %e, "could not quarantine the instance")
                }
            }
        }
        false
    }

    /// Reads the instance and runs one step: a start request, dropping stray messages, or a turn.
    /// `Ok(true)` when something was committed (look again), `Ok(false)` when idle.
    async fn step(&mut self) -> Result<bool, Error> {
        // a client's start first (the test switch below makes turns crash, not starts)
        if let Some(start) = self.starts.pop_front() {
            return self.start(start).await;
        }
        if super::test_hooks::panics(&self.id) {
            panic!(
                "a step of {} panics (PERDURE_TEST_ORCH_PANIC_PREFIX)",
                self.id
            );
        }
        if self.knows_enough() {
            let record = self.record.take();
            return self
                .step_on(record, Vec::new(), Vec::new(), Vec::new())
                .await;
        }
        self.record = None;
        self.inbox_dirty = false;
        let id = self.id.clone();
        let need_history = self.driver.is_none();
        let need_items = !self.items_loaded;
        let inbox_limit = self.rt.shared.config.max_actions_per_turn as usize;
        let (record, inbox, history, items) = self
            .rt
            .leader
            .read(move |s| {
                let t = s.instances();
                let record = t.get(&id)?;
                let inbox = s
                    .inbox()
                    .first(&Target::Instance(id.clone()), inbox_limit)?;
                let live = record.as_ref().filter(|r| !r.status.is_terminal());
                let history = match live {
                    Some(r) if need_history && r.history_events > 0 => {
                        t.history(&id, 0, usize::MAX)?
                    }
                    _ => Vec::new(),
                };
                let items = match live {
                    Some(_) if need_items => t.work_items(&id)?,
                    _ => Vec::new(),
                };
                Ok((record, inbox, history, items))
            })
            .await?;
        if inbox.len() >= inbox_limit {
            // more than one turn takes: look again next step
            self.inbox_dirty = true;
        }
        let incoming = self.decode(inbox);
        self.step_on(record, incoming, history, items).await
    }

    /// A step on what is committed: the record, the inbox messages read (none when nothing was
    /// read), the history (when the live orchestrator is rebuilt) and the stored work items
    /// (when not loaded yet).
    async fn step_on(
        &mut self,
        record: Option<InstanceRecord>,
        incoming: Vec<Incoming>,
        history: Vec<HistoryEvent>,
        items: Vec<WorkItem>,
    ) -> Result<bool, Error> {
        let record = match record {
            Some(r) if !r.status.is_terminal() => r,
            other => return self.not_running(other, incoming).await,
        };
        if let Some(first) = incoming.first().filter(|m| m.is_start_request()) {
            return self.start_request(Some(&record), first).await;
        }
        // the messages before the next start request are this turn's
        let cut = incoming
            .iter()
            .position(Incoming::is_start_request)
            .unwrap_or(incoming.len());
        let consumed_upto = incoming[..cut].last().map(|m| m.seq);
        let mut events: Vec<HistoryEvent> = incoming
            .into_iter()
            .take(cut)
            .filter(|m| {
                m.execution_id
                    .as_ref()
                    .is_none_or(|e| *e == record.execution_id)
            })
            .map(|m| m.event)
            .collect();
        if record.history_events == 0 {
            // the execution's first turn starts with its ExecutionStarted (events raised before
            // a scheduled start wait for it, and come after it)
            match events
                .iter()
                .position(|e| matches!(e.kind, EventKind::ExecutionStarted { .. }))
            {
                Some(i) => {
                    let started = events.remove(i);
                    events.insert(0, started);
                }
                None => return Ok(false),
            }
        }

        if self.driver.is_none()
            || self.exec != record.execution_id
            || self.driver_events != record.history_events
        {
            if self.driver.is_some() {
                // the history is not what this orchestrator saw: start from what is committed
                self.reset();
                return Ok(true);
            }
            self.rebuild(&record, &history);
        }
        if !self.items_loaded {
            self.items_loaded = true;
            for item in items {
                if !self.running.contains(&item.task_id)
                    && !self.done.iter().any(|(t, _)| *t == item.task_id)
                    && !self.queued.iter().any(|q| q.task_id == item.task_id)
                {
                    self.queued.push_back(item);
                }
            }
            self.dispatch();
        }
        let cap = self.rt.shared.config.max_actions_per_turn as usize;
        let now = crate::host::now_ms();
        let mut input = TurnInput {
            record: &record,
            partitions: self.rt.leader.partitions().count(),
            now,
            events: Vec::new(),
            consumed_upto: None,
            done_items: Vec::new(),
            actions: Vec::new(),
            custom_status: None,
            terminated: None,
            open_children: Vec::new(),
            locks: Vec::new(),
            suspended: false,
            more: false,
            new_execution_id: String::new(),
            fail: None,
        };
        let Some(driver) = self.driver.as_mut() else {
            // no orchestrator of that name on this node: the execution fails
            input.locks = Locks::from_history(&history).open();
            input.events = std::iter::once(HistoryEvent::new(now, EventKind::OrchestratorStarted))
                .chain(events)
                .collect();
            input.consumed_upto = consumed_upto;
            input.fail = Some(unknown_orchestrator(&self.rt, &record.name));
            return self.commit(input).await;
        };
        if !self.pending_actions.is_empty() {
            // the rest of a wide turn goes first, alone
            let n = fits(self.pending_actions.iter().map(action_bytes), cap);
            input.actions = self.pending_actions.drain(..n).collect();
            input.more = !self.pending_actions.is_empty();
            input.custom_status = driver.custom_status().cloned();
            input.suspended = driver.suspended();
            input.locks = driver.open_locks();
            return self.commit(input).await;
        }
        let results: Vec<(TaskId, HistoryEvent)> = {
            let n = fits(self.done.iter().map(|(_, e)| event_bytes(e)), cap);
            self.done.drain(..n).collect()
        };
        if events.is_empty() && results.is_empty() {
            if let Some(upto) = consumed_upto {
                // only messages of another execution: consumed, nothing recorded
                self.rt
                    .leader
                    .propose(vec![Op::Dequeue {
                        target: self.target.clone(),
                        upto,
                    }])
                    .await?;
                return Ok(true);
            }
            // nothing to do: the record stays what is committed
            drop(input);
            self.record = Some(record);
            return Ok(false);
        }
        let mut new = Vec::with_capacity(1 + events.len() + results.len());
        new.push(HistoryEvent::new(now, EventKind::OrchestratorStarted));
        new.extend(events);
        input.done_items = results.iter().map(|(t, _)| *t).collect();
        new.extend(results.iter().map(|(_, e)| e.clone()));
        if !results.is_empty() && crate::chaos_bug::duplicate_activity() {
            new.push(results[0].1.clone()); // the injected bug (chaos_bug.rs): a result twice
        }
        let fed = if driver.is_remote() {
            // a remote worker computes the turn: hand it the history and the new events
            driver.drop_idle_lifecycle(&mut new);
            let mut fed = driver.run(&new);
            if fed.terminated.is_none() {
                let shared = &self.rt.shared;
                let max = shared
                    .remote
                    .config()
                    .map_or(u64::MAX, |c| c.max_work_item_bytes);
                let bytes =
                    record.history_bytes + new.iter().map(|e| e.encoded_len() as u64).sum::<u64>();
                if bytes > max {
                    input.fail = Some(FailureDetails::new(
                        "HistoryTooLarge",
                        format!(
                            "the history is about {bytes} bytes, over the {max} bytes a remote worker receives in one work item (grpc.max_work_item_bytes); use continue-as-new for long-running orchestrations"
                        ),
                    ));
                } else {
                    let work = crate::remote::OrchestratorWork {
                        instance_id: self.id.clone(),
                        execution_id: record.execution_id.clone(),
                        name: record.name.clone(),
                        version: record.version.clone(),
                        past: driver.history().to_vec(),
                        new: new.clone(),
                    };
                    match shared
                        .remote
                        .ask(crate::remote::RemoteWork::Orchestrator(work))
                        .await
                    {
                        Ok(crate::remote::Outcome::Orchestrator(out)) => {
                            driver.answered(out.custom_status.clone());
                            fed.output = out;
                        }
                        _ => {
                            // withdrawn (a terminate arrived) or the node stops: nothing was
                            // committed; start over from what is committed
                            self.done.extend(results);
                            self.reset();
                            self.inbox_dirty = true;
                            return Ok(true);
                        }
                    }
                }
            }
            fed
        } else {
            driver.run(&new)
        };
        input.events = new;
        input.consumed_upto = consumed_upto;
        input.custom_status = driver.custom_status().cloned();
        input.suspended = driver.suspended();
        input.open_children = driver.open_children().cloned().collect();
        input.locks = driver.open_locks();
        input.terminated = fed.terminated;
        let mut actions = fed.output.actions;
        let n = fits(actions.iter().map(action_bytes), cap);
        if actions.len() > n {
            self.pending_actions = actions.split_off(n).into();
        }
        input.more = !self.pending_actions.is_empty();
        input.actions = actions;
        let restore = results;
        let r = self.commit(input).await;
        if r.is_err() {
            // not committed: the results are recorded by a later turn
            self.done.extend(restore);
        }
        r
    }

    /// A fresh live orchestrator for the record's execution, replaying its history (for an
    /// orchestrator remote workers run, a driver keeping the history for them).
    fn rebuild(&mut self, record: &InstanceRecord, history: &[HistoryEvent]) {
        self.exec = record.execution_id.clone();
        self.driver_events = record.history_events;
        self.pending_actions.clear();
        self.running.clear();
        self.queued.clear();
        self.done.clear();
        self.items_loaded = false;
        let shared = &self.rt.shared;
        let driver = if shared.remote_orchestrator(&record.name) {
            // the worker replays; the driver keeps the history and the custom status
            let mut d = Driver::remote();
            d.answered(record.custom_status.clone());
            Some(d)
        } else {
            shared
                .registry
                .get_orchestrator(&record.name)
                .ok()
                .cloned()
                .map(|f| Driver::new(f, self.id.clone(), record.execution_id.clone()))
        };
        self.driver = driver.map(|mut d| {
            if !history.is_empty() {
                OrchestrationMetrics::inc(&shared.metrics.replays);
                d.replay(history);
            }
            d
        });
    }

    /// Plans and commits a turn; then runs what it scheduled.
    async fn commit(&mut self, input: TurnInput<'_>) -> Result<bool, Error> {
        self.commit_turn(input).await.map(|_| true)
    }

    /// [`Instance::commit`], answering whether the turn applied (`false`: fenced out, and
    /// everything in memory was forgotten).
    async fn commit_turn(&mut self, mut input: TurnInput<'_>) -> Result<bool, Error> {
        if input.new_execution_id.is_empty() && continues_as_new(&input.actions) {
            input.new_execution_id = super::api::new_id();
        }
        let limits = Limits {
            max_history_events: self.rt.shared.config.max_history_events,
            max_history_bytes: self.rt.shared.config.max_history_bytes,
            max_payload_bytes: self.rt.shared.config.max_payload_bytes,
        };
        let planned = turn::plan(input, &limits);
        // a remote orchestrator's driver keeps the history its dispatches send
        let appended = match (self.driver.as_ref(), planned.ops.first()) {
            (Some(d), Some(Op::CompleteTurn(t))) if d.is_remote() => t.events.clone(),
            _ => Vec::new(),
        };
        let results = self.rt.leader.propose(planned.ops).await?;
        let m = &self.rt.shared.metrics;
        if results.contains(&OpResult::Skipped) {
            // fenced out: computed on a record that is no longer the committed one
            OrchestrationMetrics::inc(&m.turns_fenced);
            self.reset();
            return Ok(false);
        }
        OrchestrationMetrics::inc(&m.turns);
        m.events.fetch_add(planned.appended, Ordering::Relaxed);
        // the record as the apply left it: its counters follow from the turn
        let mut committed = planned.record;
        committed.history_events += planned.appended;
        committed.history_bytes += planned.appended_bytes;
        committed.turns += 1;
        let status = committed.status;
        if status.is_terminal() || status == RuntimeStatus::ContinuedAsNew {
            m.execution_ended(committed.history_events);
        }
        if planned.sent {
            self.rt.leader.outbox_changed();
        }
        if planned.timers {
            self.rt.leader.timers_changed();
        }
        if status.is_terminal() {
            let poisoned = committed
                .failure
                .as_ref()
                .is_some_and(|f| f.error_type == super::api::POISON);
            if poisoned {
                // counted before waiters hear of it
                OrchestrationMetrics::inc(&m.poisoned);
            }
            OrchestrationMetrics::inc(match status {
                RuntimeStatus::Completed => &m.completed,
                RuntimeStatus::Failed => &m.failed,
                _ => &m.terminated,
            });
            self.reset();
            self.running.clear();
            self.queued.clear();
            self.done.clear();
            self.rt.shared.waiters.notify(&self.id, &committed);
            // ended: the next step reads nothing unless woken
            self.record = Some(committed);
            return Ok(true);
        }
        if status == RuntimeStatus::ContinuedAsNew {
            OrchestrationMetrics::inc(&m.continued_as_new);
            self.reset();
            self.running.clear();
            self.queued.clear();
            self.done.clear();
            return Ok(true);
        }
        self.driver_events += planned.appended;
        if let Some(d) = self.driver.as_mut() {
            d.committed(&planned.decided);
            d.appended(&appended);
        }
        self.record = Some(committed);
        self.queued.extend(planned.dispatch);
        self.dispatch();
        Ok(true)
    }

    /// Starts queued work items while this instance has fewer than its share running.
    fn dispatch(&mut self) {
        let cap = self.rt.shared.config.max_actions_per_turn as usize;
        while self.running.len() < cap {
            let Some(item) = self.queued.pop_front() else {
                break;
            };
            let task_id = item.task_id;
            if self.rt.shared.remote_activity(&item.name) {
                // no Rust activity of that name: a remote worker runs it
                self.rt.shared.remote.submit(
                    crate::remote::RemoteWork::Activity(crate::remote::ActivityWork {
                        instance_id: self.id.clone(),
                        execution_id: self.exec.clone(),
                        name: item.name,
                        version: None,
                        input: item.input,
                        task_id,
                    }),
                    Box::new(activities::RemoteAnswer(Arc::downgrade(&self.rt))),
                );
                self.running.insert(task_id);
                continue;
            }
            match activities::start(&self.rt, &self.id, &self.exec, item) {
                Ok(()) => {
                    self.running.insert(task_id);
                }
                Err(failed) => {
                    // refused (an unknown name, an input that is not JSON): failed at once
                    OrchestrationMetrics::inc(&self.rt.shared.metrics.activities_failed);
                    self.done.push((task_id, *failed))
                }
            }
        }
    }

    /// Fails the running execution now (a quarantined instance); false when it was not running.
    async fn fail_now(&mut self, failure: FailureDetails) -> Result<bool, Error> {
        let id = self.id.clone();
        let (record, history) = self
            .rt
            .leader
            .read(move |s| {
                let t = s.instances();
                Ok((t.get(&id)?, t.history(&id, 0, usize::MAX)?))
            })
            .await?;
        let Some(record) = record.filter(|r| !r.status.is_terminal()) else {
            return Ok(false);
        };
        let now = crate::host::now_ms();
        let input = TurnInput {
            record: &record,
            partitions: self.rt.leader.partitions().count(),
            now,
            events: vec![HistoryEvent::new(now, EventKind::OrchestratorStarted)],
            consumed_upto: None,
            done_items: Vec::new(),
            actions: Vec::new(),
            custom_status: record.custom_status.clone(),
            terminated: None,
            open_children: Vec::new(),
            locks: Locks::from_history(&history).open(),
            suspended: false,
            more: false,
            new_execution_id: String::new(),
            fail: Some(failure),
        };
        self.commit(input).await?;
        Ok(true)
    }

    /// Decodes inbox messages; an unreadable one is logged and consumed as if it were an event
    /// of another execution.
    fn decode(&self, inbox: Vec<(u64, Vec<u8>)>) -> Vec<Incoming> {
        inbox
            .into_iter()
            .map(|(seq, bytes)| match Message::decode(&bytes) {
                Ok(Message::InstanceEvent {
                    execution_id,
                    event,
                }) => Incoming {
                    seq,
                    execution_id,
                    event,
                },
                other => {
                    tracing::error!(instance = %self.id, seq, message = ?other.map(|_| "not an instance event"), "unreadable instance message dropped");
                    Incoming {
                        seq,
                        execution_id: Some(String::from("\u{0}unreadable")),
                        event: HistoryEvent::new(0, EventKind::OrchestratorCompleted),
                    }
                }
            })
            .collect()
    }
}

/// What one command of a turn carries at most in decisions or results (besides the count
/// bound, `orchestrations.max_actions_per_turn`): far under the proposal's 32 MiB.
const MAX_TURN_BYTES: usize = 8 << 20;

/// How many of the items weighing `sizes` one command takes: at most `cap`, and no more than
/// [`MAX_TURN_BYTES`] (at least one).
fn fits(sizes: impl Iterator<Item = usize>, cap: usize) -> usize {
    let mut total = 0;
    let mut n = 0;
    for s in sizes.take(cap) {
        if n > 0 && total + s > MAX_TURN_BYTES {
            break;
        }
        total += s;
        n += 1;
    }
    n
}

/// What a decision weighs in a command, about (its payloads).
fn action_bytes(a: &Action) -> usize {
    let len = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    64 + match a {
        Action::ScheduleTask { name, input, .. } => 2 * (name.len() + len(input)),
        Action::CreateSubOrchestration { input, .. }
        | Action::SignalEntity { input, .. }
        | Action::CallEntity { input, .. } => 2 * len(input),
        Action::SendEvent { data, .. } => 2 * len(data),
        Action::CompleteOrchestration { result, .. } => 2 * len(result),
        _ => 0,
    }
}

fn unknown_orchestrator(rt: &PartitionRt, name: &str) -> FailureDetails {
    FailureDetails::new(
        "UnknownOrchestrator",
        format!(
            "no orchestrator {name:?} on this node; known orchestrators: {}",
            rt.shared.registry.orchestrator_names().join(", ")
        ),
    )
}

/// Whether `actions` continue the execution as new (the turn then needs the next execution's
/// id).
fn continues_as_new(actions: &[Action]) -> bool {
    actions.iter().any(|a| {
        matches!(
            a,
            Action::CompleteOrchestration {
                status: RuntimeStatus::ContinuedAsNew,
                ..
            }
        )
    })
}
