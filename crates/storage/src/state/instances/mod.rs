//! The instances table: orchestration instances (`StartInstance`, `CompleteTurn`,
//! `CompleteActivity`, `PurgeInstance`, `PurgeFinished`). Per instance: its status record, the
//! current execution's history (one event per key, appended by turns), its pending activity work
//! items, references to its durable timers (so they are cancelled and dropped with it) and, once
//! finished, its place in the index by completion time that retention walks.
//!
//! An instance's inbox is the inbox table's (target [`Target::Instance`]) and its timers are
//! the timers table's: this file writes them through those tables' functions.
//!
//! Time comes only from the ops (the records and events they carry), never from the clock: every
//! replica applies the same ops to the same state and reaches the same answer.

use super::txn::Txn;
use super::{inbox, keys, timers};
use crate::Result;
use perdure_types::command::{Millis, Op, OpResult, Restart, Rewind, Turn};
use perdure_types::message::Message;
use perdure_types::orchestration::{
    EventKind, HistoryEvent, InstanceRecord, ReusePolicy, RuntimeStatus, TaskId,
};
use perdure_types::{InstanceId, Target};
use std::collections::HashMap;

mod fence;
mod table;
pub(in crate::state) use fence::turns_fit;
use fence::Fence;
pub use table::InstancesTable;

/// A task id as stored in keys; `None` for a negative one, which no key holds.
fn task_key(task: TaskId) -> Option<u32> {
    u32::try_from(task).ok()
}

/// The inbox (or timer) message carrying `event` for execution `execution_id`.
fn event_message(execution_id: &str, event: &HistoryEvent) -> Vec<u8> {
    Message::InstanceEvent {
        execution_id: Some(execution_id.to_string()),
        event: event.clone(),
    }
    .encode()
}

/// When a finished instance counts as finished (its place in the finished index).
fn finished_at(record: &InstanceRecord) -> Millis {
    record.completed_at.unwrap_or(record.updated_at)
}

/// The execution id a continue-as-new starts; `None` when its `started` is not an
/// `ExecutionStarted` event.
fn next_execution(restart: &Restart) -> Option<&str> {
    match &restart.started.kind {
        EventKind::ExecutionStarted { execution_id, .. } => Some(execution_id),
        _ => None,
    }
}

/// An instance's record as the batch sees it.
fn read_record(txn: &Txn<'_>, id: &InstanceId) -> Result<Option<InstanceRecord>> {
    txn.get(&keys::instance(id))?
        .map(|v| txn.decode(&v))
        .transpose()
}

/// Drops the current execution's history.
fn drop_history(txn: &mut Txn<'_>, id: &InstanceId) -> Result<()> {
    let prefix = keys::instance_history_prefix(id);
    txn.del_range(&prefix, &keys::prefix_end(&prefix))
}

/// Drops every work item.
fn drop_work(txn: &mut Txn<'_>, id: &InstanceId) -> Result<()> {
    let prefix = keys::instance_work_prefix(id);
    txn.del_range(&prefix, &keys::prefix_end(&prefix))
}

/// Removes the timer a reference points to, and the reference (a missing one is fine).
fn cancel_timer(txn: &mut Txn<'_>, ref_key: Vec<u8>) -> Result<()> {
    if let Some(v) = txn.get(&ref_key)? {
        let (due, timer): (Millis, u64) = txn.decode(&v)?;
        timers::remove(txn, due, timer);
        txn.del(ref_key);
    }
    Ok(())
}

/// Removes every timer of the instance, and their references.
fn drop_timers(txn: &mut Txn<'_>, id: &InstanceId) -> Result<()> {
    let prefix = keys::instance_timer_prefix(id);
    for k in txn.keys(&prefix, &keys::prefix_end(&prefix), usize::MAX)? {
        cancel_timer(txn, k)?;
    }
    Ok(())
}

/// Drops everything of an instance but its record: history, work items, timers, inbox and its
/// entry in the finished index.
fn drop_instance(txn: &mut Txn<'_>, old: &InstanceRecord) -> Result<()> {
    let id = &old.instance_id;
    drop_history(txn, id)?;
    drop_work(txn, id)?;
    drop_timers(txn, id)?;
    inbox::dequeue(txn, &Target::Instance(id.clone()), u64::MAX)?;
    if old.status.is_terminal() {
        txn.del(keys::instance_finished(finished_at(old), id));
    }
    Ok(())
}

/// `Op::StartInstance`: writes the record (history counters and turns at 0: the partition's
/// facts) and puts `started` in the instance's inbox, or in a timer at a scheduled start later
/// than its creation. An existing instance is replaced (everything of it dropped first) when
/// the policy replaces its status; otherwise the start answers `Duplicate` (the policy ignores
/// a start over an unfinished instance) or `Refused` with its status, and changes nothing.
pub(super) fn start(
    txn: &mut Txn<'_>,
    record: &InstanceRecord,
    started: &HistoryEvent,
    policy: &ReusePolicy,
) -> Result<OpResult> {
    let id = &record.instance_id;
    if let Some(old) = read_record(txn, id)? {
        if policy.replaces(old.status) {
            drop_instance(txn, &old)?;
        } else if policy.ignore_if_running && !old.status.is_terminal() {
            return Ok(OpResult::Duplicate);
        } else {
            return Ok(OpResult::Refused(old.status));
        }
    }
    let mut new = record.clone();
    new.history_events = 0;
    new.history_bytes = 0;
    new.turns = 0;
    let v = txn.encode(&new)?;
    txn.put(keys::instance(id), v);
    let message = event_message(&new.execution_id, started);
    let target = Target::Instance(id.clone());
    match new.scheduled_start {
        Some(at) if at > new.created_at => {
            // the message names the execution: a replaced instance's start is dropped by its
            // turn, so it needs no reference to be cancelled by
            timers::add(txn, at, &target, &message)?;
        }
        _ => {
            inbox::enqueue(txn, &target, &message)?;
        }
    }
    Ok(OpResult::Done)
}

/// `Op::CompleteTurn`: one turn, whole (see [`Turn`]). The apply loop has checked with
/// [`turns_fit`] that its fence holds; should it not, nothing is written and it answers
/// `Skipped`.
pub(super) fn complete_turn(txn: &mut Txn<'_>, turn: &Turn) -> Result<OpResult> {
    let id = &turn.instance;
    let old = read_record(txn, id)?;
    if !Fence::of(old.as_ref()).holds(txn, turn)? {
        return Ok(OpResult::Skipped);
    }
    let target = Target::Instance(id.clone());
    let mut rec = turn.record.clone();
    rec.instance_id = id.clone();
    rec.execution_id = turn.execution_id.clone();
    rec.history_events = old.as_ref().map_or(0, |o| o.history_events);
    rec.history_bytes = old.as_ref().map_or(0, |o| o.history_bytes);
    rec.turns = old.as_ref().map_or(0, |o| o.turns) + 1;

    for event in &turn.events {
        // the fence bounds the history to the u32 key space
        let seq = u32::try_from(rec.history_events).unwrap_or(u32::MAX);
        let v = event.encode();
        rec.history_bytes += v.len() as u64;
        rec.history_events += 1;
        txn.put(keys::instance_history(id, seq), v);
    }
    if let Some(upto) = turn.consumed_upto {
        inbox::dequeue(txn, &target, upto)?;
    }
    for item in &turn.work_items {
        if let Some(task) = task_key(item.task_id) {
            let v = txn.encode(item)?;
            txn.put(keys::instance_work(id, task), v);
        }
    }
    for task in turn.done_items.iter().filter_map(|t| task_key(*t)) {
        txn.del(keys::instance_work(id, task));
    }
    for (task, due, message) in &turn.timers {
        if let Some(task) = task_key(*task) {
            let k = keys::instance_timer(id, task);
            // a task id is used once per execution: should it not be, the newer timer wins
            cancel_timer(txn, k.clone())?;
            let timer = timers::add(txn, *due, &target, message)?;
            let v = txn.encode(&(*due, timer))?;
            txn.put(k, v);
        }
    }
    for task in turn.cancel_timers.iter().filter_map(|t| task_key(*t)) {
        cancel_timer(txn, keys::instance_timer(id, task))?;
    }
    if let Some(old) = old.as_ref().filter(|o| o.status.is_terminal()) {
        // finished before (a rewind, a late event): indexed again below if still finished
        txn.del(keys::instance_finished(finished_at(old), id));
    }
    if rec.status.is_terminal() {
        drop_work(txn, id)?;
        drop_timers(txn, id)?;
        txn.put(keys::instance_finished(finished_at(&rec), id), Vec::new());
    }
    if let Some(restart) = &turn.restart {
        if let Some(next) = next_execution(restart) {
            drop_history(txn, id)?;
            drop_work(txn, id)?;
            drop_timers(txn, id)?;
            rec.execution_id = next.to_string();
            rec.turns = 0;
            rec.history_events = 0;
            rec.history_bytes = 0;
            // the new execution's start and the events carried over come first: events raised
            // while this turn was in flight arrived after them (Durable Task's order)
            let mut first = vec![event_message(next, &restart.started)];
            first.extend(restart.carryover.iter().map(|e| event_message(next, e)));
            inbox::enqueue_first(txn, &target, &first)?;
        }
    }
    let v = txn.encode(&rec)?;
    txn.put(keys::instance(id), v);
    Ok(OpResult::Done)
}

/// Whether a rewind applies here: the instance runs (failed) the execution it was computed
/// from, at the same turn count.
fn rewind_fits(txn: &Txn<'_>, r: &Rewind) -> Result<bool> {
    Ok(read_record(txn, &r.instance)?.is_some_and(|rec| {
        rec.status == RuntimeStatus::Failed
            && rec.execution_id == r.execution_id
            && rec.turns == r.turns
            && r.history.len() as u64 <= u64::from(u32::MAX)
    }))
}

/// `Op::RewindInstance`: replaces the failed execution's history and record, and adds the work
/// items to run again (see [`Rewind`]). Checked by [`turns_fit`] first; should its fence not
/// hold, nothing is written and it answers `Skipped`.
pub(super) fn rewind(txn: &mut Txn<'_>, r: &Rewind) -> Result<OpResult> {
    if !rewind_fits(txn, r)? {
        return Ok(OpResult::Skipped);
    }
    let id = &r.instance;
    let Some(old) = read_record(txn, id)? else {
        return Ok(OpResult::Skipped);
    };
    drop_history(txn, id)?;
    drop_work(txn, id)?;
    drop_timers(txn, id)?;
    txn.del(keys::instance_finished(finished_at(&old), id));
    let mut rec = r.record.clone();
    rec.instance_id = id.clone();
    rec.execution_id = r.execution_id.clone();
    rec.turns = old.turns + 1;
    rec.history_events = 0;
    rec.history_bytes = 0;
    for (seq, event) in r.history.iter().enumerate() {
        let v = event.encode();
        rec.history_bytes += v.len() as u64;
        rec.history_events += 1;
        txn.put(
            keys::instance_history(id, u32::try_from(seq).unwrap_or(u32::MAX)),
            v,
        );
    }
    for item in &r.work_items {
        if let Some(task) = task_key(item.task_id) {
            let v = txn.encode(item)?;
            txn.put(keys::instance_work(id, task), v);
        }
    }
    if rec.status.is_terminal() {
        txn.put(keys::instance_finished(finished_at(&rec), id), Vec::new());
    }
    let v = txn.encode(&rec)?;
    txn.put(keys::instance(id), v);
    Ok(OpResult::Done)
}

/// `Op::CompleteActivity`: if the instance still runs that execution and still holds the work
/// item, removes it and puts the result event in the inbox (`Enqueued`); otherwise a late or
/// repeated completion: `Duplicate`, nothing changed.
pub(super) fn complete_activity(
    txn: &mut Txn<'_>,
    instance: &InstanceId,
    execution_id: &str,
    task_id: TaskId,
    event: &HistoryEvent,
) -> Result<OpResult> {
    let Some(task) = task_key(task_id) else {
        return Ok(OpResult::Duplicate);
    };
    if read_record(txn, instance)?.is_none_or(|r| r.execution_id != execution_id) {
        return Ok(OpResult::Duplicate);
    }
    let k = keys::instance_work(instance, task);
    if txn.get(&k)?.is_none() {
        return Ok(OpResult::Duplicate);
    }
    txn.del(k);
    inbox::enqueue(
        txn,
        &Target::Instance(instance.clone()),
        &event_message(execution_id, event),
    )
}

/// `Op::PurgeInstance`: removes a finished instance whole (`Done`); `NotFound` without one,
/// `Refused` with its status when it is not finished.
pub(super) fn purge(txn: &mut Txn<'_>, instance: &InstanceId) -> Result<OpResult> {
    let Some(old) = read_record(txn, instance)? else {
        return Ok(OpResult::NotFound);
    };
    if !old.status.is_terminal() {
        return Ok(OpResult::Refused(old.status));
    }
    drop_instance(txn, &old)?;
    txn.del(keys::instance(instance));
    Ok(OpResult::Done)
}

/// `Op::PurgeFinished`: purges the instances that finished before `before`, oldest first,
/// walking at most `limit` entries of the finished index; answers `Count` with how many were
/// purged. An entry that no longer stands for a finished instance is dropped uncounted.
pub(super) fn purge_finished(txn: &mut Txn<'_>, before: Millis, limit: usize) -> Result<OpResult> {
    let end = keys::instances_finished_before(before);
    let mut purged = 0;
    for k in txn.keys(keys::INSTANCES_FINISHED_ALL, &end, limit)? {
        let id = keys::instance_finished_of(&k).and_then(|(_, id)| InstanceId::new(&id).ok());
        let current = match &id {
            Some(id) => read_record(txn, id)?.filter(|r| {
                r.status.is_terminal() && keys::instance_finished(finished_at(r), id) == k
            }),
            None => None,
        };
        match (id, current) {
            (Some(id), Some(_)) => {
                if purge(txn, &id)? == OpResult::Done {
                    purged += 1;
                }
            }
            _ => {
                tracing::warn!(key = ?k, "a stale entry in the finished instances index: dropped");
                txn.del(k);
            }
        }
    }
    Ok(OpResult::Count(purged))
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{apply, t};
    use super::super::PartitionState;
    use perdure_types::command::{Op, OpResult, Restart, Turn, WorkItem};
    use perdure_types::message::Message;
    use perdure_types::orchestration::{
        EventKind, HistoryEvent, InstanceRecord, ReusePolicy, RuntimeStatus,
    };
    use perdure_types::{InstanceId, Target};

    fn iid(id: &str) -> InstanceId {
        InstanceId::new(id).unwrap()
    }

    fn target(id: &str) -> Target {
        Target::Instance(iid(id))
    }

    /// Applies one command of `ops` as the next log entry.
    fn run(st: &PartitionState, ops: Vec<Op>) -> Vec<OpResult> {
        let next = st.applied().unwrap().0.map_or(1, |l| l.index + 1);
        apply(st, next, ops)
    }

    fn started(execution: &str, at: u64) -> HistoryEvent {
        HistoryEvent::new(
            at,
            EventKind::ExecutionStarted {
                name: "Order".into(),
                version: None,
                input: None,
                parent: None,
                scheduled_start: None,
                execution_id: execution.into(),
            },
        )
    }

    fn pending(id: &str, execution: &str, now: u64) -> InstanceRecord {
        InstanceRecord::pending(
            iid(id),
            "Order".into(),
            None,
            execution.into(),
            None,
            None,
            None,
            now,
        )
    }

    fn start_with(id: &str, execution: &str, now: u64, policy: ReusePolicy) -> Op {
        Op::StartInstance {
            record: Box::new(pending(id, execution, now)),
            started: Box::new(started(execution, now)),
            policy,
        }
    }

    fn start(id: &str, execution: &str, now: u64) -> Op {
        start_with(id, execution, now, ReusePolicy::default())
    }

    fn raised(name: &str) -> HistoryEvent {
        HistoryEvent::new(
            5,
            EventKind::EventRaised {
                name: name.into(),
                input: None,
            },
        )
    }

    fn raise(id: &str, name: &str) -> Op {
        Op::Enqueue {
            target: target(id),
            message: Message::InstanceEvent {
                execution_id: None,
                event: raised(name),
            }
            .encode(),
        }
    }

    fn work(task: i32) -> WorkItem {
        WorkItem {
            task_id: task,
            name: "Ship".into(),
            input: Some(task.to_string()),
        }
    }

    fn task_done(task: i32) -> HistoryEvent {
        HistoryEvent::new(
            9,
            EventKind::TaskCompleted {
                scheduled_id: task,
                result: None,
            },
        )
    }

    /// The next turn of a stored instance, changing nothing yet but its status (`Running`).
    fn next_turn(st: &PartitionState, id: &str) -> Turn {
        let rec = st.instances().get(&iid(id)).unwrap().unwrap();
        let mut record = rec.clone();
        record.status = RuntimeStatus::Running;
        record.updated_at += 1;
        Turn {
            instance: iid(id),
            execution_id: rec.execution_id,
            turns: rec.turns,
            record,
            events: vec![],
            consumed_upto: None,
            work_items: vec![],
            done_items: vec![],
            timers: vec![],
            cancel_timers: vec![],
            restart: None,
        }
    }

    /// `turn`, ending the execution as `Completed` at `at`.
    fn completing(mut turn: Turn, at: u64) -> Turn {
        turn.record.status = RuntimeStatus::Completed;
        turn.record.completed_at = Some(at);
        turn.record.updated_at = at;
        turn
    }

    fn turn_op(turn: Turn) -> Op {
        Op::CompleteTurn(Box::new(turn))
    }

    /// An instance's inbox: (sequence number, execution id, event).
    fn inbox(st: &PartitionState, id: &str) -> Vec<(u64, Option<String>, HistoryEvent)> {
        st.inbox()
            .messages(&target(id))
            .unwrap()
            .into_iter()
            .map(|(seq, m)| match Message::decode(&m).unwrap() {
                Message::InstanceEvent {
                    execution_id,
                    event,
                } => (seq, execution_id, event),
                other => panic!("not an instance event: {other:?}"),
            })
            .collect()
    }

    fn history(st: &PartitionState, id: &str) -> Vec<HistoryEvent> {
        st.instances().history(&iid(id), 0, usize::MAX).unwrap()
    }

    #[test]
    fn a_start_writes_the_record_and_puts_its_first_event_in_the_inbox() {
        let (st, _d) = super::super::testkit::state();
        let mut record = pending("a", "e1", 10);
        // the partition's facts are not the caller's to set
        record.turns = 7;
        record.history_events = 3;
        let op = Op::StartInstance {
            record: Box::new(record.clone()),
            started: Box::new(started("e1", 10)),
            policy: ReusePolicy::default(),
        };
        assert_eq!(run(&st, vec![op]), vec![OpResult::Done]);
        assert_eq!(
            st.instances().get(&iid("a")).unwrap(),
            Some(pending("a", "e1", 10))
        );
        assert_eq!(
            inbox(&st, "a"),
            vec![(1, Some("e1".to_string()), started("e1", 10))]
        );
        assert_eq!(st.timers().next_due().unwrap(), None);
        assert_eq!(st.instances().get(&iid("b")).unwrap(), None);
    }

    #[test]
    fn a_running_instance_refuses_a_start_and_a_finished_one_is_replaced() {
        let (st, _d) = super::super::testkit::state();
        run(&st, vec![start("a", "e1", 10)]);
        let mut turn = next_turn(&st, "a");
        turn.events = vec![started("e1", 10)];
        turn.consumed_upto = Some(1);
        turn.work_items = vec![work(0)];
        run(&st, vec![turn_op(turn)]);
        let before = st.instances().get(&iid("a")).unwrap();

        // refused by a running instance: nothing changed
        assert_eq!(
            run(&st, vec![start("a", "e2", 20)]),
            vec![OpResult::Refused(RuntimeStatus::Running)]
        );
        assert_eq!(st.instances().get(&iid("a")).unwrap(), before);
        assert_eq!(history(&st, "a").len(), 1);
        assert!(inbox(&st, "a").is_empty());
        assert_eq!(st.instances().work_items(&iid("a")).unwrap(), vec![work(0)]);

        // a policy that ignores starts over running instances: a duplicate, nothing changed
        let ignore = ReusePolicy {
            replaceable: vec![],
            ignore_if_running: true,
        };
        assert_eq!(
            run(&st, vec![start_with("a", "e2", 20, ignore.clone())]),
            vec![OpResult::Duplicate]
        );
        assert_eq!(st.instances().get(&iid("a")).unwrap(), before);

        // finished: the default policy replaces it; the ignoring one still refuses
        let mut turn = completing(next_turn(&st, "a"), 30);
        turn.events = vec![task_done(0)];
        turn.done_items = vec![0];
        run(&st, vec![turn_op(turn)]);
        run(&st, vec![raise("a", "late")]);
        assert_eq!(
            run(&st, vec![start_with("a", "e2", 40, ignore)]),
            vec![OpResult::Refused(RuntimeStatus::Completed)]
        );
        assert_eq!(
            st.instances().finished_before(u64::MAX, 10).unwrap(),
            vec![(30, iid("a"))]
        );
        assert_eq!(run(&st, vec![start("a", "e2", 40)]), vec![OpResult::Done]);
        assert_eq!(
            st.instances().get(&iid("a")).unwrap(),
            Some(pending("a", "e2", 40))
        );
        assert!(history(&st, "a").is_empty(), "the old history is gone");
        assert!(st
            .instances()
            .finished_before(u64::MAX, 10)
            .unwrap()
            .is_empty());
        // the old inbox (the late event) is gone: only the new start waits
        let got = inbox(&st, "a");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1.as_deref(), Some("e2"));
    }

    #[test]
    fn a_scheduled_start_waits_in_a_timer() {
        let (st, _d) = super::super::testkit::state();
        let mut record = pending("a", "e1", 10);
        record.scheduled_start = Some(5_000);
        let op = Op::StartInstance {
            record: Box::new(record),
            started: Box::new(started("e1", 10)),
            policy: ReusePolicy::default(),
        };
        assert_eq!(run(&st, vec![op]), vec![OpResult::Done]);
        assert!(inbox(&st, "a").is_empty());
        let due = st.timers().due(5_000, 10).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].due, &due[0].target), (5_000, &target("a")));
        assert_eq!(
            Message::decode(&due[0].message).unwrap(),
            Message::InstanceEvent {
                execution_id: Some("e1".into()),
                event: started("e1", 10),
            }
        );
        // a scheduled start that is not later than the creation starts at once
        let mut record = pending("b", "e1", 10);
        record.scheduled_start = Some(10);
        let op = Op::StartInstance {
            record: Box::new(record),
            started: Box::new(started("e1", 10)),
            policy: ReusePolicy::default(),
        };
        run(&st, vec![op]);
        assert_eq!(inbox(&st, "b").len(), 1);
    }

    #[test]
    fn a_turn_appends_history_consumes_the_inbox_and_adds_work_and_timers() {
        let (st, _d) = super::super::testkit::state();
        run(&st, vec![start("a", "e1", 10), raise("a", "go")]);
        let events = vec![
            HistoryEvent::new(11, EventKind::OrchestratorStarted),
            started("e1", 10),
            HistoryEvent::scheduled(
                0,
                11,
                EventKind::TaskScheduled {
                    name: "Ship".into(),
                    input: None,
                },
            ),
            HistoryEvent::scheduled(1, 11, EventKind::TimerCreated { fire_at: 500 }),
        ];
        let mut turn = next_turn(&st, "a");
        turn.events = events.clone();
        turn.consumed_upto = Some(1);
        turn.work_items = vec![work(0)];
        turn.timers = vec![(1, 500, b"fire".to_vec())];
        // whatever the turn's record says, the counters are the partition's
        turn.record.history_events = 99;
        turn.record.turns = 99;
        turn.record.custom_status = Some("\"shipping\"".into());
        assert_eq!(run(&st, vec![turn_op(turn)]), vec![OpResult::Done]);

        let rec = st.instances().get(&iid("a")).unwrap().unwrap();
        assert_eq!(rec.status, RuntimeStatus::Running);
        assert_eq!(rec.custom_status.as_deref(), Some("\"shipping\""));
        assert_eq!((rec.history_events, rec.turns), (4, 1));
        assert_eq!(
            rec.history_bytes,
            events.iter().map(|e| e.encode().len() as u64).sum::<u64>()
        );
        assert_eq!(rec.execution_id, "e1");
        assert_eq!(history(&st, "a"), events);
        assert_eq!(
            st.instances().history(&iid("a"), 2, 1).unwrap(),
            vec![events[2].clone()]
        );
        // the start was consumed, the raised event waits
        let got = inbox(&st, "a");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, 2);
        assert_eq!(st.instances().work_items(&iid("a")).unwrap(), vec![work(0)]);
        assert_eq!(
            st.instances().with_work_items(None, 10).unwrap(),
            [iid("a")]
        );
        let due = st.timers().due(1_000, 10).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(
            (due[0].due, &due[0].target, due[0].message.as_slice()),
            (500, &target("a"), &b"fire"[..])
        );

        // the next turn appends after them, completes the work item and cancels the timer
        let mut turn = next_turn(&st, "a");
        turn.events = vec![task_done(0)];
        turn.consumed_upto = Some(2);
        turn.done_items = vec![0];
        turn.cancel_timers = vec![1, 7];
        assert_eq!(run(&st, vec![turn_op(turn)]), vec![OpResult::Done]);
        let rec = st.instances().get(&iid("a")).unwrap().unwrap();
        assert_eq!((rec.history_events, rec.turns), (5, 2));
        assert_eq!(history(&st, "a")[4], task_done(0));
        assert!(inbox(&st, "a").is_empty());
        assert!(st.instances().work_items(&iid("a")).unwrap().is_empty());
        assert!(st.timers().due(u64::MAX, 10).unwrap().is_empty());
    }

    #[test]
    fn a_stale_turn_applies_nothing_not_even_the_sends_beside_it() {
        let (st, _d) = super::super::testkit::state();
        run(&st, vec![start("a", "e1", 10)]);
        let first = next_turn(&st, "a");
        run(&st, vec![turn_op(first.clone())]);
        let rec = st.instances().get(&iid("a")).unwrap();
        let send = Op::Send {
            dest: 2,
            target: t("x"),
            message: b"m".to_vec(),
        };
        let dequeue = Op::Dequeue {
            target: target("a"),
            upto: u64::MAX,
        };
        let mut other_execution = next_turn(&st, "a");
        other_execution.execution_id = "e0".into();
        // a repeat of the first turn (stale count), a turn of another execution
        for stale in [first, other_execution] {
            let mut turn = stale;
            turn.events = vec![raised("x")];
            assert_eq!(
                run(&st, vec![send.clone(), dequeue.clone(), turn_op(turn)]),
                vec![OpResult::Skipped; 3]
            );
            assert!(st.outbox().pending(10).unwrap().is_empty());
            assert_eq!(inbox(&st, "a").len(), 1, "the dequeue did not apply");
            assert_eq!(st.instances().get(&iid("a")).unwrap(), rec);
            assert!(history(&st, "a").is_empty());
        }
        // the current one applies, sends and all
        let mut turn = next_turn(&st, "a");
        turn.consumed_upto = Some(1);
        assert_eq!(
            run(&st, vec![send, turn_op(turn)]),
            vec![OpResult::Sent(1), OpResult::Done]
        );
        assert_eq!(st.outbox().pending(10).unwrap().len(), 1);
    }

    #[test]
    fn a_turn_whose_work_item_is_gone_applies_nothing() {
        let (st, _d) = super::super::testkit::state();
        run(&st, vec![start("a", "e1", 10)]);
        let mut turn = next_turn(&st, "a");
        turn.work_items = vec![work(0)];
        run(&st, vec![turn_op(turn)]);
        // the activity's result arrived another way first
        run(
            &st,
            vec![Op::CompleteActivity {
                instance: iid("a"),
                execution_id: "e1".into(),
                task_id: 0,
                event: Box::new(task_done(0)),
            }],
        );
        let rec = st.instances().get(&iid("a")).unwrap();
        let mut turn = next_turn(&st, "a");
        turn.done_items = vec![0];
        turn.events = vec![task_done(0)];
        assert_eq!(
            run(&st, vec![raise("a", "x"), turn_op(turn)]),
            vec![OpResult::Skipped; 2]
        );
        assert_eq!(st.instances().get(&iid("a")).unwrap(), rec);
        assert_eq!(inbox(&st, "a").len(), 2, "start and result, not the raise");
        // a task id no key can hold: malformed, nothing applies
        let mut turn = next_turn(&st, "a");
        turn.work_items = vec![work(-1)];
        assert_eq!(run(&st, vec![turn_op(turn)]), vec![OpResult::Skipped]);
        let mut turn = next_turn(&st, "a");
        turn.timers = vec![(-2, 500, vec![])];
        assert_eq!(run(&st, vec![turn_op(turn)]), vec![OpResult::Skipped]);
        assert_eq!(st.instances().get(&iid("a")).unwrap(), rec);
    }

    #[test]
    fn turns_of_one_command_fence_on_what_the_earlier_ones_leave() {
        let (st, _d) = super::super::testkit::state();
        run(&st, vec![start("a", "e1", 10)]);
        let mut first = next_turn(&st, "a");
        first.work_items = vec![work(0)];
        let mut second = first.clone();
        second.turns = 1;
        second.work_items = vec![];
        second.done_items = vec![0];
        assert_eq!(
            run(&st, vec![turn_op(first.clone()), turn_op(second)]),
            vec![OpResult::Done; 2]
        );
        let rec = st.instances().get(&iid("a")).unwrap().unwrap();
        assert_eq!(rec.turns, 2);
        assert!(st.instances().work_items(&iid("a")).unwrap().is_empty());
        // the same turn twice in one command: the second is stale, so neither applies
        let mut again = next_turn(&st, "a");
        again.events = vec![raised("x")];
        assert_eq!(
            run(&st, vec![turn_op(again.clone()), turn_op(again)]),
            vec![OpResult::Skipped; 2]
        );
        assert_eq!(st.instances().get(&iid("a")).unwrap().unwrap().turns, 2);
    }

    #[test]
    fn a_first_turn_creates_an_instance_without_a_record() {
        let (st, _d) = super::super::testkit::state();
        let record = pending("child", "c1", 10);
        let turn = |turns| Turn {
            instance: iid("child"),
            execution_id: "c1".into(),
            turns,
            record: record.clone(),
            events: vec![started("c1", 10)],
            consumed_upto: None,
            work_items: vec![],
            done_items: vec![],
            timers: vec![],
            cancel_timers: vec![],
            restart: None,
        };
        assert_eq!(run(&st, vec![turn_op(turn(1))]), vec![OpResult::Skipped]);
        assert_eq!(st.instances().get(&iid("child")).unwrap(), None);
        assert_eq!(run(&st, vec![turn_op(turn(0))]), vec![OpResult::Done]);
        let rec = st.instances().get(&iid("child")).unwrap().unwrap();
        assert_eq!((rec.turns, rec.history_events), (1, 1));
    }

    #[test]
    fn an_activity_completes_once() {
        let (st, _d) = super::super::testkit::state();
        run(&st, vec![start("a", "e1", 10)]);
        let mut turn = next_turn(&st, "a");
        turn.consumed_upto = Some(1);
        turn.work_items = vec![work(0), work(1)];
        run(&st, vec![turn_op(turn)]);
        let complete = |execution: &str, task| Op::CompleteActivity {
            instance: iid("a"),
            execution_id: execution.into(),
            task_id: task,
            event: Box::new(task_done(task)),
        };
        assert_eq!(
            run(&st, vec![complete("e1", 0)]),
            vec![OpResult::Enqueued(2)]
        );
        assert_eq!(
            inbox(&st, "a"),
            vec![(2, Some("e1".to_string()), task_done(0))]
        );
        assert_eq!(st.instances().work_items(&iid("a")).unwrap(), vec![work(1)]);
        // late or repeated: another execution, a removed item, an unknown task or instance
        assert_eq!(run(&st, vec![complete("e1", 0)]), vec![OpResult::Duplicate]);
        assert_eq!(run(&st, vec![complete("e0", 1)]), vec![OpResult::Duplicate]);
        assert_eq!(
            run(&st, vec![complete("e1", -1)]),
            vec![OpResult::Duplicate]
        );
        assert_eq!(
            run(
                &st,
                vec![Op::CompleteActivity {
                    instance: iid("b"),
                    execution_id: "e1".into(),
                    task_id: 1,
                    event: Box::new(task_done(1)),
                }]
            ),
            vec![OpResult::Duplicate]
        );
        assert_eq!(inbox(&st, "a").len(), 1);
        assert_eq!(st.instances().work_items(&iid("a")).unwrap(), vec![work(1)]);
    }

    #[test]
    fn a_finished_instance_drops_its_timers_and_work_and_is_indexed() {
        let (st, _d) = super::super::testkit::state();
        run(&st, vec![start("a", "e1", 10)]);
        let mut turn = next_turn(&st, "a");
        turn.work_items = vec![work(0), work(1)];
        turn.timers = vec![(2, 500, vec![]), (3, 600, vec![])];
        run(&st, vec![turn_op(turn)]);
        assert_eq!(st.timers().due(u64::MAX, 10).unwrap().len(), 2);

        let mut turn = completing(next_turn(&st, "a"), 1_000);
        turn.done_items = vec![0];
        assert_eq!(run(&st, vec![turn_op(turn)]), vec![OpResult::Done]);
        assert!(st.instances().work_items(&iid("a")).unwrap().is_empty());
        assert!(st.instances().with_work_items(None, 10).unwrap().is_empty());
        assert!(st.timers().due(u64::MAX, 10).unwrap().is_empty());
        assert_eq!(
            st.instances().finished_before(1_001, 10).unwrap(),
            vec![(1_000, iid("a"))]
        );
        assert!(st
            .instances()
            .finished_before(1_000, 10)
            .unwrap()
            .is_empty());

        // a later turn (a late event recorded) moves its place in the index, never doubles it
        let mut turn = completing(next_turn(&st, "a"), 1_200);
        turn.events = vec![raised("late")];
        run(&st, vec![turn_op(turn)]);
        assert_eq!(
            st.instances().finished_before(u64::MAX, 10).unwrap(),
            vec![(1_200, iid("a"))]
        );
        // without a completion time, the last update is its finishing time
        let mut turn = completing(next_turn(&st, "a"), 1_300);
        turn.record.completed_at = None;
        run(&st, vec![turn_op(turn)]);
        assert_eq!(
            st.instances().finished_before(u64::MAX, 10).unwrap(),
            vec![(1_300, iid("a"))]
        );
    }

    #[test]
    fn events_raised_while_a_continue_as_new_turn_runs_come_after_the_carried_over_ones() {
        let (st, _d) = super::super::testkit::state();
        run(&st, vec![start("a", "e1", 10), raise("a", "early")]);
        let mut turn = next_turn(&st, "a");
        turn.events = vec![started("e1", 10)];
        turn.consumed_upto = Some(1);
        run(&st, vec![turn_op(turn)]);
        // "late" is raised while the continue-as-new turn (which carries "early" over) runs
        run(&st, vec![raise("a", "late")]);
        let mut turn = next_turn(&st, "a");
        turn.consumed_upto = Some(2);
        turn.record.status = RuntimeStatus::ContinuedAsNew;
        turn.restart = Some(Restart {
            started: started("e2", 20),
            carryover: vec![raised("early")],
        });
        assert_eq!(run(&st, vec![turn_op(turn)]), vec![OpResult::Done]);
        let got: Vec<_> = inbox(&st, "a").into_iter().map(|(_, _, ev)| ev).collect();
        assert_eq!(
            got,
            vec![started("e2", 20), raised("early"), raised("late")]
        );
    }

    #[test]
    fn continue_as_new_resets_the_history_and_starts_the_next_execution() {
        let (st, _d) = super::super::testkit::state();
        run(&st, vec![start("a", "e1", 10), raise("a", "early")]);
        let mut turn = next_turn(&st, "a");
        turn.events = vec![started("e1", 10)];
        turn.consumed_upto = Some(1);
        turn.work_items = vec![work(0)];
        turn.timers = vec![(1, 500, vec![])];
        run(&st, vec![turn_op(turn)]);

        let mut turn = next_turn(&st, "a");
        turn.events = vec![HistoryEvent::new(
            20,
            EventKind::ContinueAsNew {
                input: Some("2".into()),
            },
        )];
        turn.consumed_upto = Some(2);
        turn.record.status = RuntimeStatus::ContinuedAsNew;
        turn.restart = Some(Restart {
            started: started("e2", 20),
            carryover: vec![raised("early")],
        });
        assert_eq!(run(&st, vec![turn_op(turn)]), vec![OpResult::Done]);
        let rec = st.instances().get(&iid("a")).unwrap().unwrap();
        assert_eq!(rec.execution_id, "e2");
        assert_eq!(
            (rec.turns, rec.history_events, rec.history_bytes),
            (0, 0, 0)
        );
        assert_eq!(rec.status, RuntimeStatus::ContinuedAsNew);
        assert!(history(&st, "a").is_empty());
        assert!(st.instances().work_items(&iid("a")).unwrap().is_empty());
        assert!(st.timers().due(u64::MAX, 10).unwrap().is_empty());
        assert!(st
            .instances()
            .finished_before(u64::MAX, 10)
            .unwrap()
            .is_empty());
        let got: Vec<_> = inbox(&st, "a")
            .into_iter()
            .map(|(_, e, ev)| (e, ev))
            .collect();
        assert_eq!(
            got,
            vec![
                (Some("e2".to_string()), started("e2", 20)),
                (Some("e2".to_string()), raised("early")),
            ]
        );
        // the next execution's first turn fences on it
        let turn = next_turn(&st, "a");
        assert_eq!((turn.execution_id.as_str(), turn.turns), ("e2", 0));
        assert_eq!(run(&st, vec![turn_op(turn)]), vec![OpResult::Done]);

        // a restart that does not start an execution is malformed: nothing applies
        let mut turn = next_turn(&st, "a");
        turn.restart = Some(Restart {
            started: raised("x"),
            carryover: vec![],
        });
        assert_eq!(run(&st, vec![turn_op(turn)]), vec![OpResult::Skipped]);
    }

    #[test]
    fn purging_an_instance_removes_everything_of_it() {
        let (st, _d) = super::super::testkit::state();
        let purge = |id: &str| Op::PurgeInstance { instance: iid(id) };
        assert_eq!(run(&st, vec![purge("a")]), vec![OpResult::NotFound]);
        run(&st, vec![start("a", "e1", 10)]);
        assert_eq!(
            run(&st, vec![purge("a")]),
            vec![OpResult::Refused(RuntimeStatus::Pending)]
        );
        let mut turn = next_turn(&st, "a");
        turn.events = vec![started("e1", 10)];
        turn.consumed_upto = Some(1);
        turn.work_items = vec![work(0)];
        turn.timers = vec![(1, 500, vec![])];
        run(&st, vec![turn_op(turn)]);
        assert_eq!(
            run(&st, vec![purge("a")]),
            vec![OpResult::Refused(RuntimeStatus::Running)]
        );
        assert_eq!(history(&st, "a").len(), 1);

        let mut turn = completing(next_turn(&st, "a"), 100);
        turn.events = vec![raised("done")];
        run(&st, vec![turn_op(turn), raise("a", "late")]);
        run(&st, vec![start("b", "e1", 10)]);
        assert_eq!(run(&st, vec![purge("a")]), vec![OpResult::Done]);
        assert_eq!(st.instances().get(&iid("a")).unwrap(), None);
        assert!(history(&st, "a").is_empty());
        assert!(inbox(&st, "a").is_empty());
        assert!(st.instances().work_items(&iid("a")).unwrap().is_empty());
        assert!(st.timers().due(u64::MAX, 10).unwrap().is_empty());
        assert!(st
            .instances()
            .finished_before(u64::MAX, 10)
            .unwrap()
            .is_empty());
        assert_eq!(run(&st, vec![purge("a")]), vec![OpResult::NotFound]);
        // the other instance is untouched
        assert!(st.instances().get(&iid("b")).unwrap().is_some());
        assert_eq!(inbox(&st, "b").len(), 1);
    }

    #[test]
    fn purging_finished_instances_respects_the_cut_off_and_the_limit() {
        let (st, _d) = super::super::testkit::state();
        for (id, at) in [("c", 300), ("a", 100), ("b", 200)] {
            run(&st, vec![start(id, "e1", 10)]);
            run(&st, vec![turn_op(completing(next_turn(&st, id), at))]);
        }
        run(&st, vec![start("r", "e1", 10)]);
        let purge = |before, limit| Op::PurgeFinished { before, limit };
        let exists = |id: &str| st.instances().get(&iid(id)).unwrap().is_some();
        assert_eq!(run(&st, vec![purge(250, 1)]), vec![OpResult::Count(1)]);
        assert!(!exists("a") && exists("b") && exists("c"));
        assert_eq!(run(&st, vec![purge(250, 10)]), vec![OpResult::Count(1)]);
        assert!(!exists("b") && exists("c"));
        assert_eq!(run(&st, vec![purge(250, 10)]), vec![OpResult::Count(0)]);
        assert_eq!(
            run(&st, vec![purge(u64::MAX, 10)]),
            vec![OpResult::Count(1)]
        );
        assert!(!exists("c"));
        assert!(exists("r"), "an unfinished instance stays");
        assert_eq!(st.instances().count(10), 1);
    }

    #[test]
    fn listing_pages_in_id_order_through_a_filter() {
        let (st, _d) = super::super::testkit::state();
        for id in ["d", "b", "a", "c"] {
            run(&st, vec![start(id, "e1", 10)]);
        }
        for id in ["b", "d"] {
            run(&st, vec![turn_op(completing(next_turn(&st, id), 50))]);
        }
        let ids = |r: Vec<InstanceRecord>| -> Vec<String> {
            r.into_iter().map(|r| r.instance_id.to_string()).collect()
        };
        let all = |_: &InstanceRecord| true;
        let (page, next) = st.instances().list(None, 2, all).unwrap();
        assert_eq!(
            (ids(page), next.clone()),
            (vec!["a".into(), "b".into()], Some(iid("b")))
        );
        let (page, next) = st.instances().list(next.as_ref(), 2, all).unwrap();
        assert_eq!((ids(page), next), (vec!["c".into(), "d".into()], None));

        let done = |r: &InstanceRecord| r.status == RuntimeStatus::Completed;
        let (page, next) = st.instances().list(None, 3, done).unwrap();
        assert_eq!(
            (ids(page), next.clone()),
            (vec!["b".into()], Some(iid("c")))
        );
        let (page, next) = st.instances().list(next.as_ref(), 3, done).unwrap();
        assert_eq!((ids(page), next), (vec!["d".into()], None));

        assert_eq!(st.instances().count(10), 4);
        assert_eq!(st.instances().count(3), 3);
        let by_status = st.instances().count_by_status(10).unwrap();
        assert_eq!(
            by_status.into_iter().collect::<Vec<_>>(),
            vec![(RuntimeStatus::Pending, 2), (RuntimeStatus::Completed, 2)]
        );
        let capped: u64 = st.instances().count_by_status(3).unwrap().values().sum();
        assert_eq!(capped, 3);
    }

    #[test]
    fn instances_with_work_items_are_listed_once_each() {
        let (st, _d) = super::super::testkit::state();
        for (id, items) in [
            ("a", vec![0, 1]),
            ("a0", vec![4]),
            ("b", vec![]),
            ("c", vec![2]),
        ] {
            run(&st, vec![start(id, "e1", 10)]);
            let mut turn = next_turn(&st, id);
            turn.work_items = items.into_iter().map(work).collect();
            run(&st, vec![turn_op(turn)]);
        }
        let table = st.instances();
        assert_eq!(
            table.with_work_items(None, 10).unwrap(),
            [iid("a"), iid("a0"), iid("c")]
        );
        assert_eq!(table.with_work_items(None, 1).unwrap(), [iid("a")]);
        assert_eq!(
            table.with_work_items(Some(&iid("a")), 10).unwrap(),
            [iid("a0"), iid("c")]
        );
        assert_eq!(
            table.with_work_items(Some(&iid("a0")), 1).unwrap(),
            [iid("c")]
        );
        assert!(table
            .with_work_items(Some(&iid("c")), 10)
            .unwrap()
            .is_empty());
        assert_eq!(table.work_items(&iid("a")).unwrap(), vec![work(0), work(1)]);
        assert_eq!(table.count_work_items(10), 4);
        assert_eq!(table.count_work_items(3), 3);
        assert_eq!(
            table.count(10),
            4,
            "work items are not counted as instances"
        );
    }
}
