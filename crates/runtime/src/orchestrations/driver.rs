//! A live orchestrator: the model's [`Executor`] wrapped with what the runtime decides itself
//! while feeding it events: suspension (events that arrive while an instance is suspended are
//! recorded in its history but fed to the orchestrator only once it is resumed, as the Durable
//! Task SDKs do), termination (the execution ends at once, whatever the code waits for), the
//! sub-orchestrations still open (a recursive terminate reaches them) and the critical sections
//! not released yet (the turn that ends the execution releases them).
//!
//! The same feeding runs on a replayed history and on a turn's new events, so a driver rebuilt
//! after a failover reaches exactly the state the live one had. The events recording the
//! orchestrator's own decisions are written by the turn, not fed back: the instance hands them
//! to [`Driver::committed`] once its turn commits, so what is tracked is what the history holds.

use super::model::{Executor, OrchestratorFn};
use perdure_types::orchestration::{EventKind, HistoryEvent, TaskId, TurnOutput};
use perdure_types::InstanceId;
use std::collections::{BTreeMap, BTreeSet};

/// What feeding a turn's events decided.
#[derive(Debug, Default)]
pub(crate) struct Fed {
    /// The orchestrator's new decisions (none when terminated or suspended throughout).
    pub output: TurnOutput,
    /// A terminate request was taken: the execution ends now, with this reason.
    pub terminated: Option<(Option<String>, bool)>,
}

/// A live orchestrator of one execution.
pub(crate) struct Driver {
    /// The Rust orchestrator; `None`: a remote worker computes the turns (`remote/`), from
    /// `history`.
    exec: Option<Executor>,
    /// A remote orchestrator's committed history (what each dispatch sends as past events).
    history: Vec<HistoryEvent>,
    /// Suspended: events other than resume and terminate are held.
    suspended: bool,
    /// Events held while suspended, fed on resume.
    held: Vec<HistoryEvent>,
    /// Sub-orchestrations started and not finished, by task id.
    open_children: BTreeMap<TaskId, InstanceId>,
    /// Critical sections requested and not wholly released.
    locks: Locks,
    /// The custom status the orchestrator last set.
    custom_status: Option<String>,
    /// Decisions a replay found the history does not record yet (the rest of a wide turn whose
    /// last commands were lost with a leadership; a rewound execution's next step): handed out
    /// by the next run.
    unrecorded: Vec<perdure_types::orchestration::Action>,
}

impl Driver {
    /// A driver of execution `execution_id` of instance `instance`.
    pub fn new(orchestrator: OrchestratorFn, instance: InstanceId, execution_id: String) -> Self {
        Self::with(Some(Executor::new(orchestrator, instance, execution_id)))
    }

    fn with(exec: Option<Executor>) -> Self {
        Self {
            exec,
            history: Vec::new(),
            suspended: false,
            held: Vec::new(),
            open_children: BTreeMap::new(),
            locks: Locks::default(),
            custom_status: None,
            unrecorded: Vec::new(),
        }
    }

    /// A driver of an orchestrator that remote workers run: it tracks what the history says
    /// (suspension, open sub-orchestrations and critical sections) and keeps the history for
    /// the dispatches; the worker's replay engine holds events back while suspended itself.
    pub fn remote() -> Self {
        Self::with(None)
    }

    /// Whether a remote worker computes the turns.
    pub fn is_remote(&self) -> bool {
        self.exec.is_none()
    }

    /// A remote orchestrator's committed history.
    pub fn history(&self) -> &[HistoryEvent] {
        &self.history
    }

    /// A remote orchestrator's turn committed `events` (everything it appended).
    pub fn appended(&mut self, events: &[HistoryEvent]) {
        if self.exec.is_none() {
            self.history.extend_from_slice(events);
        }
    }

    /// Drops the suspend and resume events that change nothing (a resume while not suspended, a
    /// suspend while suspended): replay engines such as the Durable Task SDKs fail an
    /// orchestration that sees them, and they must not enter the history either.
    pub fn drop_idle_lifecycle(&self, events: &mut Vec<HistoryEvent>) {
        let mut suspended = self.suspended;
        events.retain(|e| match e.kind {
            EventKind::ExecutionSuspended { .. } => !std::mem::replace(&mut suspended, true),
            EventKind::ExecutionResumed { .. } => std::mem::replace(&mut suspended, false),
            _ => true,
        });
    }

    /// A remote worker answered the turn: its custom status is the orchestrator's now.
    pub fn answered(&mut self, custom_status: Option<String>) {
        self.custom_status = custom_status;
    }

    /// Whether the instance is suspended.
    pub fn suspended(&self) -> bool {
        self.suspended
    }

    /// The sub-orchestrations started and not finished.
    pub fn open_children(&self) -> impl Iterator<Item = &InstanceId> {
        self.open_children.values()
    }

    /// The critical sections requested and not wholly released, as the history records them.
    pub fn open_locks(&self) -> Vec<OpenLock> {
        self.locks.open()
    }

    /// A turn committed: tracks the decisions it recorded (its own scheduling events).
    pub fn committed(&mut self, decided: &[HistoryEvent]) {
        for e in decided.iter().filter(|e| is_own_decision(e)) {
            self.track(e);
        }
    }

    /// The custom status the orchestrator last set.
    pub fn custom_status(&self) -> Option<&String> {
        self.custom_status.as_ref()
    }

    /// Feeds a stored history (decisions it already records are not handed out again).
    pub fn replay(&mut self, past: &[HistoryEvent]) {
        // decisions the history does not record yet are handed out by the next run
        let fed = self.feed(past, true);
        self.unrecorded.extend(fed.output.actions);
    }

    /// Feeds a turn's new events and returns what the orchestrator decided (first what a
    /// replay found unrecorded).
    pub fn run(&mut self, new: &[HistoryEvent]) -> Fed {
        let mut fed = self.feed(new, false);
        if !self.unrecorded.is_empty() {
            let mut actions = std::mem::take(&mut self.unrecorded);
            actions.append(&mut fed.output.actions);
            fed.output.actions = actions;
        }
        fed
    }

    fn feed(&mut self, events: &[HistoryEvent], past: bool) -> Fed {
        if self.exec.is_none() {
            return self.feed_remote(events, past);
        }
        let mut fed = Fed::default();
        let mut run: Vec<HistoryEvent> = Vec::new();
        for e in events {
            self.track(e);
            match &e.kind {
                EventKind::ExecutionTerminated { reason, recurse } => {
                    self.flush(&mut run, past, &mut fed);
                    fed.terminated = Some((reason.clone(), *recurse));
                    return fed;
                }
                EventKind::ExecutionSuspended { .. } => {
                    self.flush(&mut run, past, &mut fed);
                    self.suspended = true;
                }
                EventKind::ExecutionResumed { .. } => {
                    self.suspended = false;
                    run.append(&mut self.held);
                }
                _ if self.suspended && !is_own_decision(e) => self.held.push(e.clone()),
                _ => run.push(e.clone()),
            }
        }
        self.flush(&mut run, past, &mut fed);
        fed
    }

    /// A remote orchestrator's feeding: the events are tracked (and a replay's kept as the
    /// history); what to decide is the worker's, so the output stays empty.
    fn feed_remote(&mut self, events: &[HistoryEvent], past: bool) -> Fed {
        let mut fed = Fed::default();
        if past {
            self.history.extend_from_slice(events);
        }
        for e in events {
            self.track(e);
            match &e.kind {
                EventKind::ExecutionTerminated { reason, recurse } => {
                    fed.terminated = Some((reason.clone(), *recurse));
                    if !past {
                        return fed;
                    }
                }
                EventKind::ExecutionSuspended { .. } => self.suspended = true,
                EventKind::ExecutionResumed { .. } => self.suspended = false,
                _ => {}
            }
        }
        fed.output.custom_status = self.custom_status.clone();
        fed
    }

    fn flush(&mut self, run: &mut Vec<HistoryEvent>, past: bool, fed: &mut Fed) {
        if run.is_empty() {
            return;
        }
        let Some(exec) = self.exec.as_mut() else {
            return;
        };
        let out = if past {
            exec.apply_past(run)
        } else {
            exec.apply(run)
        };
        run.clear();
        if out.custom_status.is_some() {
            self.custom_status = out.custom_status.clone();
        }
        fed.output.actions.extend(out.actions);
        fed.output.custom_status = self.custom_status.clone();
    }

    /// Keeps the sets of open sub-orchestrations and critical sections current.
    fn track(&mut self, e: &HistoryEvent) {
        self.locks.track(e);
        match &e.kind {
            EventKind::SubOrchestrationCreated { instance_id, .. } => {
                self.open_children.insert(e.event_id, instance_id.clone());
            }
            EventKind::SubOrchestrationCompleted { scheduled_id, .. }
            | EventKind::SubOrchestrationFailed { scheduled_id, .. } => {
                self.open_children.remove(scheduled_id);
            }
            _ => {}
        }
    }
}

/// Events that record the orchestrator's own decisions (written by the turn that made them):
/// never held back by a suspension, since the decisions were made before it.
fn is_own_decision(e: &HistoryEvent) -> bool {
    e.kind.is_decision()
        || matches!(
            e.kind,
            EventKind::OrchestratorStarted
                | EventKind::OrchestratorCompleted
                | EventKind::ExecutionStarted { .. }
        )
}

/// A critical section of the execution not wholly released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OpenLock {
    /// Its id.
    pub critical_section_id: String,
    /// Its entities (canonical), as requested.
    pub lock_set: Vec<String>,
    /// Whether `EntityLockGranted` arrived: every entity of the set holds it.
    pub granted: bool,
    /// The entities released so far (`EntityUnlockSent`).
    pub released: BTreeSet<String>,
}

/// The critical sections of an execution not wholly released, from its history.
#[derive(Debug, Default, Clone)]
pub(crate) struct Locks {
    open: BTreeMap<String, OpenLock>,
}

impl Locks {
    /// The open critical sections of a stored history.
    pub fn from_history(history: &[HistoryEvent]) -> Self {
        let mut l = Self::default();
        for e in history {
            l.track(e);
        }
        l
    }

    /// The open critical sections.
    pub fn open(&self) -> Vec<OpenLock> {
        self.open.values().cloned().collect()
    }

    /// Takes one history event into account (the same event twice changes nothing).
    pub fn track(&mut self, e: &HistoryEvent) {
        match &e.kind {
            EventKind::EntityLockRequested {
                critical_section_id,
                lock_set,
            } => {
                self.open
                    .entry(critical_section_id.clone())
                    .or_insert_with(|| OpenLock {
                        critical_section_id: critical_section_id.clone(),
                        lock_set: lock_set.clone(),
                        granted: false,
                        released: BTreeSet::new(),
                    });
            }
            EventKind::EntityLockGranted {
                critical_section_id,
            } => {
                if let Some(l) = self.open.get_mut(critical_section_id) {
                    l.granted = true;
                }
            }
            EventKind::EntityUnlockSent {
                critical_section_id,
                target,
            } => {
                if let Some(l) = self.open.get_mut(critical_section_id) {
                    l.released.insert(target.clone());
                    if l.lock_set.iter().all(|t| l.released.contains(t)) {
                        self.open.remove(critical_section_id);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resume_while_running_and_a_second_suspend_are_dropped() {
        let d = Driver::remote();
        let kinds = |v: &[HistoryEvent]| v.iter().map(|e| e.kind_name()).collect::<Vec<_>>();
        let mut events = vec![
            ev(EventKind::ExecutionResumed { reason: None }),
            ev(EventKind::ExecutionSuspended { reason: None }),
            ev(EventKind::ExecutionSuspended { reason: None }),
            ev(EventKind::ExecutionResumed { reason: None }),
            ev(EventKind::ExecutionResumed { reason: None }),
        ];
        d.drop_idle_lifecycle(&mut events);
        assert_eq!(kinds(&events), ["ExecutionSuspended", "ExecutionResumed"]);
    }

    fn ev(kind: EventKind) -> HistoryEvent {
        HistoryEvent::new(1, kind)
    }

    #[test]
    fn a_critical_section_is_open_from_its_request_until_every_entity_is_released() {
        let set = vec!["@counter@a".to_string(), "@counter@b".to_string()];
        let requested = ev(EventKind::EntityLockRequested {
            critical_section_id: "cs".into(),
            lock_set: set.clone(),
        });
        let granted = ev(EventKind::EntityLockGranted {
            critical_section_id: "cs".into(),
        });
        let unlock = |t: &str| {
            ev(EventKind::EntityUnlockSent {
                critical_section_id: "cs".into(),
                target: t.into(),
            })
        };
        let mut l = Locks::from_history(std::slice::from_ref(&requested));
        assert_eq!(l.open().len(), 1);
        assert!(!l.open()[0].granted);
        // a grant, twice (fed live, then seen again): the same
        l.track(&granted);
        l.track(&granted);
        l.track(&requested);
        assert!(l.open()[0].granted);
        l.track(&unlock("@counter@a"));
        assert_eq!(
            l.open()[0].released,
            BTreeSet::from(["@counter@a".to_string()])
        );
        l.track(&unlock("@counter@b"));
        assert!(l.open().is_empty());
        // a grant or release of a section it never saw requested: nothing
        l.track(&granted);
        l.track(&unlock("@counter@a"));
        assert!(l.open().is_empty());
    }
}
