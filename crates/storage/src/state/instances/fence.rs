//! Whether a turn applies: its fence (the execution id and turn count it was computed for, or
//! the creation of a missing record) against the stored record, and the pre-check that makes a
//! command with a turn that does not fit apply nothing at all (its sends included).

use super::*;

/// Why a turn can never apply, whatever the state: a task id no key can hold, or a restart
/// that does not start an execution.
fn malformed(turn: &Turn) -> Option<&'static str> {
    if turn
        .work_items
        .iter()
        .any(|w| task_key(w.task_id).is_none())
    {
        return Some("a work item with a negative task id");
    }
    if turn.timers.iter().any(|(t, _, _)| task_key(*t).is_none()) {
        return Some("a timer with a negative task id");
    }
    if turn
        .restart
        .as_ref()
        .is_some_and(|r| next_execution(r).is_none())
    {
        return Some("a restart whose first event is not ExecutionStarted");
    }
    None
}

/// What a turn's fence reads of one instance: as the batch holds it, or as the earlier turns of
/// the same command leave it (while [`turns_fit`] checks a command before it applies).
pub(super) struct Fence {
    /// The record's execution id and turn count; `None` without a record.
    current: Option<(String, u64)>,
    /// Events in the current execution's history.
    history_events: u64,
    /// Work items added (`true`) or removed (`false`) by earlier turns of the command.
    work: HashMap<u32, bool>,
    /// Every stored work item was dropped by an earlier turn of the command (a terminal status
    /// or a restart).
    work_dropped: bool,
}

impl Fence {
    /// The instance as the batch holds it.
    pub(super) fn load(txn: &Txn<'_>, id: &InstanceId) -> Result<Self> {
        Ok(Self::of(read_record(txn, id)?.as_ref()))
    }

    /// The instance whose record is `r`.
    pub(super) fn of(r: Option<&InstanceRecord>) -> Self {
        Self {
            history_events: r.map_or(0, |r| r.history_events),
            current: r.map(|r| (r.execution_id.clone(), r.turns)),
            work: HashMap::new(),
            work_dropped: false,
        }
    }

    pub(super) fn has_work(&self, txn: &Txn<'_>, id: &InstanceId, task: TaskId) -> Result<bool> {
        let Some(task) = task_key(task) else {
            return Ok(false);
        };
        if let Some(present) = self.work.get(&task) {
            return Ok(*present);
        }
        Ok(!self.work_dropped && txn.get(&keys::instance_work(id, task))?.is_some())
    }

    /// Whether `turn` applies here: computed for this execution and turn count (or creating
    /// the instance at turn 0), every work item it completes still there, its history within
    /// the key space.
    pub(super) fn holds(&self, txn: &Txn<'_>, turn: &Turn) -> Result<bool> {
        let current = match &self.current {
            Some((execution, turns)) => *execution == turn.execution_id && *turns == turn.turns,
            None => turn.turns == 0,
        };
        if !current
            || self.history_events + turn.events.len() as u64 > u64::from(u32::MAX) + 1
            || malformed(turn).is_some()
        {
            return Ok(false);
        }
        for task in &turn.done_items {
            if !self.has_work(txn, &turn.instance, *task)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The instance as `turn` (which holds) leaves it: mirrors [`complete_turn`].
    pub(super) fn after(mut self, turn: &Turn) -> Self {
        for w in &turn.work_items {
            if let Some(t) = task_key(w.task_id) {
                self.work.insert(t, true);
            }
        }
        for d in &turn.done_items {
            if let Some(t) = task_key(*d) {
                self.work.insert(t, false);
            }
        }
        let restart = turn.restart.as_ref().and_then(next_execution);
        if turn.record.status.is_terminal() || restart.is_some() {
            self.work.clear();
            self.work_dropped = true;
        }
        self.current = Some(match restart {
            Some(next) => (next.to_string(), 0),
            None => (turn.execution_id.clone(), turn.turns + 1),
        });
        self.history_events = match restart {
            Some(_) => 0,
            None => self.history_events + turn.events.len() as u64,
        };
        self
    }
}

/// Whether every `CompleteTurn` of `ops` holds its fence, following the command's earlier turns
/// of the same instance. The apply loop asks before applying a command: a turn that does not hold
/// travels with the sends and dequeues computed from it, so its whole command applies nothing.
/// (Other instance ops of the same command are not followed: the runtime never puts one before
/// a turn; should it, the turn still re-checks its fence when it applies.)
pub(in crate::state) fn turns_fit(txn: &Txn<'_>, ops: &[Op]) -> Result<bool> {
    for op in ops {
        if let Op::RewindInstance(r) = op {
            if !rewind_fits(txn, r)? {
                tracing::debug!(instance = %r.instance, "a rewind's fence does not hold");
                return Ok(false);
            }
        }
    }
    if !ops.iter().any(|op| matches!(op, Op::CompleteTurn(_))) {
        return Ok(true);
    }
    let mut seen: HashMap<&InstanceId, Fence> = HashMap::new();
    for op in ops {
        let Op::CompleteTurn(turn) = op else {
            continue;
        };
        if let Some(why) = malformed(turn) {
            tracing::warn!(instance = %turn.instance, why, "a malformed turn");
            return Ok(false);
        }
        let fence = match seen.remove(&turn.instance) {
            Some(f) => f,
            None => Fence::load(txn, &turn.instance)?,
        };
        if !fence.holds(txn, turn)? {
            tracing::debug!(
                instance = %turn.instance,
                execution = %turn.execution_id,
                turns = turn.turns,
                "a turn's fence does not hold"
            );
            return Ok(false);
        }
        seen.insert(&turn.instance, fence.after(turn));
    }
    Ok(true)
}
