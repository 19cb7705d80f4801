//! Test helpers shared by the tables' unit tests: a temporary partition tree and one-command
//! applies.

use super::PartitionState;
use crate::raft_types::{Entry, LogId, StoredMembership};
use openraft::{CommittedLeaderId, EntryPayload};
use perdure_types::command::{Command, Op, OpResult};
use perdure_types::{EntityId, Target};

/// A fresh partition 0 in a temporary file (kept while the directory lives).
pub(super) fn state() -> (PartitionState, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p00000.redb");
    let st = PartitionState::open(0, &path, 8 << 20, Default::default()).unwrap();
    (st, dir)
}

/// Entity `key` of the test entity type `t`.
pub(super) fn e(key: &str) -> EntityId {
    EntityId::new("t", key).unwrap()
}

/// Entity `key` of the test entity type `t`, as a message target.
pub(super) fn t(key: &str) -> Target {
    Target::Entity(e(key))
}

/// Applies one command of `ops` as log entry `index` (term 1) and returns its op results.
pub(super) fn apply(st: &PartitionState, index: u64, ops: Vec<Op>) -> Vec<OpResult> {
    let entry = Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Command::new(ops).into()),
    };
    let mut m = StoredMembership::default();
    let mut r = st.apply(&[entry], &mut m).unwrap();
    assert_eq!(r[0].index, index);
    r.remove(0).results.remove(0)
}
