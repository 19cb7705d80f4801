//! The timers table: messages scheduled for a time (`ScheduleTimer`, `RemoveTimer`), ordered by
//! due time.

use super::txn::Txn;
use super::{keys, PartitionState};
use crate::Result;
use perdure_types::command::{Millis, OpResult};
use perdure_types::Target;

/// A scheduled message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    /// When it is due.
    pub due: Millis,
    /// Its id.
    pub id: u64,
    /// Its receiver.
    pub target: Target,
    /// The message.
    pub message: Vec<u8>,
}

/// `Op::ScheduleTimer`: schedules a message for `target` at `due` under the partition's next
/// timer id.
pub(super) fn schedule(
    txn: &mut Txn<'_>,
    due: Millis,
    target: &Target,
    message: &[u8],
) -> Result<OpResult> {
    Ok(OpResult::Scheduled(add(txn, due, target, message)?))
}

/// Schedules a message for `target` at `due` and returns the new timer's id (for tables that
/// keep a reference to their timers).
pub(super) fn add(txn: &mut Txn<'_>, due: Millis, target: &Target, message: &[u8]) -> Result<u64> {
    let id = txn.next_u64(keys::TIMER_SEQ)?;
    let v = txn.encode(&(target, message))?;
    txn.put(keys::timer(due, id), v);
    Ok(id)
}

/// `Op::RemoveTimer`: removes a timer (fired or cancelled).
pub(super) fn remove(txn: &mut Txn<'_>, due: Millis, id: u64) -> OpResult {
    txn.del(keys::timer(due, id));
    OpResult::Done
}

/// Read access to a partition's timers (see [`PartitionState::timers`]).
#[derive(Debug, Clone, Copy)]
pub struct TimersTable<'a> {
    pub(super) state: &'a PartitionState,
}

impl TimersTable<'_> {
    /// Timers due at or before `now`, earliest first, at most `limit`.
    pub fn due(&self, now: Millis, limit: usize) -> Result<Vec<Timer>> {
        let mut out = Vec::new();
        let end = keys::timer(now.saturating_add(1), 0);
        for (k, v) in self.state.tree.range(keys::TIMERS_ALL, &end, limit)? {
            let (target, message): (Target, Vec<u8>) = self.state.decode(&v)?;
            let (due, id) = keys::timer_of(&k);
            out.push(Timer {
                due,
                id,
                target,
                message,
            });
        }
        Ok(out)
    }

    /// The due time of the earliest timer, if any.
    pub fn next_due(&self) -> Result<Option<Millis>> {
        Ok(self
            .state
            .tree
            .scan_prefix(keys::TIMERS_ALL, 1)?
            .pop()
            .map(|(k, _)| keys::timer_due_of(&k)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{apply, state, t};
    use perdure_types::command::{Op, OpResult};

    #[test]
    fn timers_come_due_in_time_order() {
        let (st, _d) = state();
        let r = apply(
            &st,
            1,
            vec![
                Op::ScheduleTimer {
                    due: 500,
                    target: t("a"),
                    message: b"late".to_vec(),
                },
                Op::ScheduleTimer {
                    due: 100,
                    target: t("b"),
                    message: b"early".to_vec(),
                },
            ],
        );
        assert_eq!(r, vec![OpResult::Scheduled(1), OpResult::Scheduled(2)]);
        assert_eq!(st.timers().next_due().unwrap(), Some(100));
        let due = st.timers().due(200, 10).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(
            (due[0].due, due[0].id, due[0].message.as_slice()),
            (100, 2, &b"early"[..])
        );
        assert_eq!(st.timers().due(500, 10).unwrap().len(), 2);
        apply(&st, 2, vec![Op::RemoveTimer { due: 100, id: 2 }]);
        assert_eq!(st.timers().due(1000, 10).unwrap().len(), 1);
    }
}
