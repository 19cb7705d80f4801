//! The entity locks table: which orchestration critical section holds an entity (`LockEntity`,
//! `UnlockEntity`). The entity runtime reads an entity's lock when it activates the entity and
//! changes it in the same command as the batch that takes or frees it, so the lock survives
//! leader changes and restarts exactly as the entity's state does.

use super::txn::Txn;
use super::{keys, PartitionState};
use crate::Result;
use perdure_types::command::{LockHolder, OpResult};
use perdure_types::EntityId;

/// `Op::LockEntity`: `holder` holds `entity` (replacing any lock it had).
pub(super) fn lock(txn: &mut Txn<'_>, entity: &EntityId, holder: &LockHolder) -> Result<OpResult> {
    let v = txn.encode(holder)?;
    txn.put(keys::entity_lock(entity), v);
    Ok(OpResult::Done)
}

/// `Op::UnlockEntity`: `entity` is free.
pub(super) fn unlock(txn: &mut Txn<'_>, entity: &EntityId) -> OpResult {
    txn.del(keys::entity_lock(entity));
    OpResult::Done
}

/// Read access to a partition's entity locks (see [`PartitionState::locks`]).
#[derive(Debug, Clone, Copy)]
pub struct LocksTable<'a> {
    pub(super) state: &'a PartitionState,
}

impl LocksTable<'_> {
    /// Who holds `entity`'s lock, if anyone.
    pub fn get(&self, entity: &EntityId) -> Result<Option<LockHolder>> {
        match self.state.tree.get(&keys::entity_lock(entity))? {
            Some(v) => Ok(Some(self.state.decode(&v)?)),
            None => Ok(None),
        }
    }

    /// The locked entities (canonical ids) and their holders, in key order, at most `limit`.
    pub fn list(&self, limit: usize) -> Result<Vec<(String, LockHolder)>> {
        self.state
            .tree
            .scan_prefix(keys::LOCKS_ALL, limit)?
            .into_iter()
            .map(|(k, v)| Ok((keys::entity_lock_of(&k), self.state.decode(&v)?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{apply, e, state};
    use perdure_types::command::{LockHolder, Op, OpResult};
    use perdure_types::InstanceId;

    fn holder(cs: &str) -> LockHolder {
        LockHolder {
            instance: InstanceId::new("transfer-1").unwrap(),
            execution_id: "x1".into(),
            critical_section_id: cs.into(),
        }
    }

    #[test]
    fn a_lock_is_taken_replaced_and_freed_per_entity() {
        let (st, _d) = state();
        assert_eq!(st.locks().get(&e("a")).unwrap(), None);
        let r = apply(
            &st,
            1,
            vec![
                Op::LockEntity {
                    entity: e("a"),
                    holder: holder("cs1"),
                },
                Op::LockEntity {
                    entity: e("b"),
                    holder: holder("cs1"),
                },
            ],
        );
        assert_eq!(r, vec![OpResult::Done, OpResult::Done]);
        assert_eq!(st.locks().get(&e("a")).unwrap(), Some(holder("cs1")));
        // an entity whose key extends another's has no lock of its own
        assert_eq!(st.locks().get(&e("a0")).unwrap(), None);
        assert_eq!(
            st.locks().list(10).unwrap(),
            vec![
                ("@t@a".to_string(), holder("cs1")),
                ("@t@b".to_string(), holder("cs1"))
            ]
        );
        // freed and taken again in one command: the last op wins
        apply(
            &st,
            2,
            vec![
                Op::UnlockEntity { entity: e("a") },
                Op::LockEntity {
                    entity: e("a"),
                    holder: holder("cs2"),
                },
                Op::UnlockEntity { entity: e("b") },
            ],
        );
        assert_eq!(st.locks().get(&e("a")).unwrap(), Some(holder("cs2")));
        assert_eq!(st.locks().get(&e("b")).unwrap(), None);
        // freeing a free entity changes nothing
        assert_eq!(
            apply(&st, 3, vec![Op::UnlockEntity { entity: e("b") }]),
            vec![OpResult::Done]
        );
        assert_eq!(st.locks().list(10).unwrap().len(), 1);
    }
}
