//! The stream-ingestion tables: per-entity marks (`SourceMark`) on the partitions of the
//! entities records are applied to, and checkpoints and dead letters (`SourceCheckpoint`,
//! `ForgetSource`) on the home partition of each source partition.
//!
//! A mark is the highest position of one source partition whose record an entity applied; it is
//! written in the same command as the entity's new state, and a command whose mark does not
//! rise applies nothing (a record is applied at most once, even when a deposed consumer and its
//! successor overlap). A checkpoint only rises too.

use super::txn::Txn;
use super::{keys, PartitionState};
use crate::Result;
use perdure_types::command::{OpResult, SourceCheckpoint};
use perdure_types::subscription::{CheckpointState, DeadLetter, MAX_DEAD_LETTERS};
use perdure_types::EntityId;

/// Whether `entity` already applied `source` up to `position` (a `SourceMark` that would not
/// rise): its whole command is a duplicate.
pub(super) fn marked(
    txn: &Txn<'_>,
    entity: &EntityId,
    source: &str,
    position: u64,
) -> Result<bool> {
    Ok(txn.get_u64(&keys::mark(entity, source))? >= position)
}

/// `Op::SourceMark` (after the duplicate pre-check).
pub(super) fn mark(txn: &mut Txn<'_>, entity: &EntityId, source: &str, position: u64) -> OpResult {
    txn.put_u64(&keys::mark(entity, source), position);
    OpResult::Done
}

/// `Op::SourceCheckpoint`: a higher checkpoint with its counts and dead letters; a lower or
/// equal one changes nothing.
pub(super) fn checkpoint(txn: &mut Txn<'_>, c: &SourceCheckpoint) -> Result<OpResult> {
    let key = keys::checkpoint(&c.source);
    let stored = txn.get(&key)?;
    let exists = stored.is_some();
    let mut st: CheckpointState = match stored {
        Some(v) => txn.decode(&v)?,
        None => CheckpointState::default(),
    };
    if exists && c.position <= st.position {
        return Ok(OpResult::Duplicate);
    }
    st.position = c.position;
    st.applied += c.applied;
    st.failed += c.failed;
    st.dead_lettered += c.dead.len() as u64;
    st.at_ms = c.at_ms;
    st.incarnation.clone_from(&c.incarnation);
    let v = txn.encode(&st)?;
    txn.put(key, v);
    if !c.dead.is_empty() {
        for d in &c.dead {
            let v = txn.encode(d)?;
            txn.put(keys::dead_letter(&c.source, d.position), v);
        }
        // the oldest go first past the bound
        let prefix = keys::dead_letters_prefix(&c.source);
        let end = keys::prefix_end(&prefix);
        let all = txn.keys(&prefix, &end, usize::MAX)?;
        let over = all.len().saturating_sub(MAX_DEAD_LETTERS);
        for k in all.into_iter().take(over) {
            txn.del(k);
        }
    }
    Ok(OpResult::Done)
}

/// `Op::ForgetSource`: the checkpoint and dead letters of `source` go.
pub(super) fn forget(txn: &mut Txn<'_>, source: &str) -> Result<OpResult> {
    let mut n = 0;
    let key = keys::checkpoint(source);
    if txn.get(&key)?.is_some() {
        txn.del(key);
        n += 1;
    }
    let prefix = keys::dead_letters_prefix(source);
    let dead = txn.keys(&prefix, &keys::prefix_end(&prefix), usize::MAX)?;
    n += dead.len() as u64;
    for k in dead {
        txn.del(k);
    }
    Ok(OpResult::Count(n))
}

/// Read access to a partition's ingestion state (see [`PartitionState::ingest`]).
#[derive(Debug, Clone, Copy)]
pub struct IngestTable<'a> {
    pub(super) state: &'a PartitionState,
}

impl IngestTable<'_> {
    /// `entity`'s marks: source partition and the highest position it applied.
    pub fn marks(&self, entity: &EntityId) -> Result<Vec<(String, u64)>> {
        let prefix = keys::marks_prefix(entity);
        Ok(self
            .state
            .tree
            .scan_prefix(&prefix, usize::MAX)?
            .into_iter()
            .map(|(k, v)| (keys::mark_source_of(&prefix, &k), keys::u64_of(&v)))
            .collect())
    }

    /// The checkpoint of `source`, if one was written.
    pub fn checkpoint(&self, source: &str) -> Result<Option<CheckpointState>> {
        match self.state.tree.get(&keys::checkpoint(source))? {
            Some(v) => Ok(Some(self.state.decode(&v)?)),
            None => Ok(None),
        }
    }

    /// The checkpoints whose source key starts with `prefix` (`NAME#`: one subscription's; `""`:
    /// all), at most `limit`.
    pub fn checkpoints(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, CheckpointState)>> {
        self.state
            .tree
            .scan_prefix(&keys::checkpoints_prefix(prefix), limit)?
            .into_iter()
            .map(|(k, v)| Ok((keys::checkpoint_source_of(&k), self.state.decode(&v)?)))
            .collect()
    }

    /// The dead letters of `source` after position `after`, oldest first, at most `limit`.
    pub fn dead_letters(&self, source: &str, after: u64, limit: usize) -> Result<Vec<DeadLetter>> {
        let prefix = keys::dead_letters_prefix(source);
        let start = keys::dead_letter(source, after.saturating_add(1));
        self.state
            .tree
            .range(&start, &keys::prefix_end(&prefix), limit)?
            .into_iter()
            .map(|(_, v)| self.state.decode(&v))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{apply, e, state};
    use perdure_types::command::{Op, OpResult, SourceCheckpoint};
    use perdure_types::subscription::{DeadLetter, MAX_DEAD_LETTERS};

    fn mark(key: &str, position: u64) -> Op {
        Op::SourceMark {
            entity: e(key),
            source: "s#0:1".into(),
            position,
        }
    }

    #[test]
    fn a_mark_that_does_not_rise_makes_its_command_a_duplicate() {
        let (st, _d) = state();
        let set = |v: &[u8]| Op::SetState {
            entity: e("a"),
            state: v.to_vec(),
        };
        assert_eq!(
            apply(&st, 1, vec![mark("a", 5), set(b"1")]),
            vec![OpResult::Done; 2]
        );
        // the same records again (a deposed consumer, a replay after a crash): nothing applies
        assert_eq!(
            apply(&st, 2, vec![mark("a", 5), set(b"2")]),
            vec![OpResult::Duplicate, OpResult::Skipped]
        );
        assert_eq!(
            apply(&st, 3, vec![mark("a", 3), set(b"3")]),
            vec![OpResult::Duplicate, OpResult::Skipped]
        );
        assert_eq!(st.entities().get(&e("a")).unwrap(), Some(b"1".to_vec()));
        // later records apply; marks are per entity
        assert_eq!(
            apply(&st, 4, vec![mark("a", 6), set(b"4")]),
            vec![OpResult::Done; 2]
        );
        assert_eq!(apply(&st, 5, vec![mark("b", 2)]), vec![OpResult::Done]);
        assert_eq!(
            st.ingest().marks(&e("a")).unwrap(),
            vec![("s#0:1".to_string(), 6)]
        );
        assert_eq!(st.entities().get(&e("a")).unwrap(), Some(b"4".to_vec()));
    }

    fn dead(position: u64) -> DeadLetter {
        DeadLetter {
            partition: 1,
            position,
            reason: "not JSON".into(),
            key: None,
            value: "x".into(),
            at_ms: 1,
        }
    }

    fn cp(position: u64, dead: Vec<DeadLetter>) -> Op {
        Op::SourceCheckpoint(Box::new(SourceCheckpoint {
            source: "s#0:1".into(),
            position,
            applied: 10,
            failed: 1,
            dead,
            incarnation: "i1".into(),
            at_ms: 7,
        }))
    }

    #[test]
    fn checkpoints_only_rise_and_keep_bounded_dead_letters() {
        let (st, _d) = state();
        assert_eq!(
            apply(&st, 1, vec![cp(0, vec![])]),
            vec![OpResult::Done],
            "a first checkpoint at 0 (start: latest on an empty source)"
        );
        assert_eq!(
            apply(&st, 2, vec![cp(10, vec![dead(4), dead(9)])]),
            vec![OpResult::Done]
        );
        assert_eq!(
            apply(&st, 3, vec![cp(10, vec![dead(10)])]),
            vec![OpResult::Duplicate]
        );
        assert_eq!(
            apply(&st, 4, vec![cp(8, vec![])]),
            vec![OpResult::Duplicate]
        );
        let c = st.ingest().checkpoint("s#0:1").unwrap().unwrap();
        assert_eq!(
            (c.position, c.applied, c.failed, c.dead_lettered),
            (10, 20, 2, 2)
        );
        let d = st.ingest().dead_letters("s#0:1", 0, 10).unwrap();
        assert_eq!(d.iter().map(|d| d.position).collect::<Vec<_>>(), vec![4, 9]);
        assert_eq!(st.ingest().dead_letters("s#0:1", 4, 10).unwrap().len(), 1);
        let many: Vec<DeadLetter> = (11..11 + MAX_DEAD_LETTERS as u64 + 5).map(dead).collect();
        apply(&st, 5, vec![cp(2000, many)]);
        let d = st.ingest().dead_letters("s#0:1", 0, usize::MAX).unwrap();
        assert_eq!(d.len(), MAX_DEAD_LETTERS);
        assert_eq!(d[0].position, 16, "the oldest went first (4, 9, 11..=15)");
        assert_eq!(st.ingest().checkpoints("s#", 10).unwrap().len(), 1);
        assert_eq!(st.ingest().checkpoints("t#", 10).unwrap().len(), 0);
        let r = apply(
            &st,
            6,
            vec![Op::ForgetSource {
                source: "s#0:1".into(),
            }],
        );
        assert_eq!(r, vec![OpResult::Count(1 + MAX_DEAD_LETTERS as u64)]);
        assert!(st.ingest().checkpoint("s#0:1").unwrap().is_none());
    }
}
