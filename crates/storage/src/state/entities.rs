//! The entities table: each entity's state (`SetState`, `DeleteState`, `PatchState`), read one
//! at a time or listed by entity name.

use super::txn::Txn;
use super::{keys, PartitionState};
use crate::Result;
use perdure_types::command::{Op, OpResult};
use perdure_types::delta::StateDelta;
use perdure_types::EntityId;
use std::collections::HashMap;

/// `Op::SetState`: replaces an entity's state (creating the entity).
pub(super) fn set(txn: &mut Txn<'_>, entity: &EntityId, state: &[u8]) -> OpResult {
    txn.put(keys::entity(entity), state.to_vec());
    OpResult::Done
}

/// `Op::PatchState`: the delta on the entity's state. The apply loop has checked with
/// [`patches_fit`] that it fits; should it not, nothing is written and it answers `Skipped`.
pub(super) fn patch(txn: &mut Txn<'_>, entity: &EntityId, delta: &StateDelta) -> Result<OpResult> {
    let k = keys::entity(entity);
    let old = txn.get(&k)?.unwrap_or_default();
    Ok(match delta.apply(&old) {
        Ok(new) => {
            txn.put(k, new);
            OpResult::Done
        }
        Err(_) => OpResult::Skipped,
    })
}

/// Whether every `PatchState` of `ops` fits the state it would apply to, following the
/// command's own state ops in order (a state set earlier in the command is the base of a later
/// delta). The apply loop asks before applying a command, so a command with a delta that does
/// not fit applies nothing at all.
pub(super) fn patches_fit(txn: &Txn<'_>, ops: &[Op]) -> Result<bool> {
    if !ops.iter().any(|op| matches!(op, Op::PatchState { .. })) {
        return Ok(true);
    }
    let mut states: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    for op in ops {
        match op {
            Op::SetState { entity, state } => {
                states.insert(keys::entity(entity), state.clone());
            }
            Op::DeleteState { entity } => {
                states.insert(keys::entity(entity), Vec::new());
            }
            Op::PatchState { entity, delta } => {
                let k = keys::entity(entity);
                let old = match states.remove(&k) {
                    Some(s) => s,
                    None => txn.get(&k)?.unwrap_or_default(),
                };
                match delta.apply(&old) {
                    Ok(new) => states.insert(k, new),
                    Err(_) => return Ok(false),
                };
            }
            _ => {}
        }
    }
    Ok(true)
}

/// `Op::DeleteState`: removes an entity's state.
pub(super) fn delete(txn: &mut Txn<'_>, entity: &EntityId) -> OpResult {
    txn.del(keys::entity(entity));
    OpResult::Done
}

/// Read access to a partition's entity states (see [`PartitionState::entities`]).
#[derive(Debug, Clone, Copy)]
pub struct EntitiesTable<'a> {
    pub(super) state: &'a PartitionState,
}

impl EntitiesTable<'_> {
    /// An entity's state.
    pub fn get(&self, entity: &EntityId) -> Result<Option<Vec<u8>>> {
        self.state.tree.get(&keys::entity(entity))
    }

    /// Keys and states of entities named `name`, in key order, after `after`, at most `limit`.
    pub fn list(
        &self,
        name: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        let prefix = keys::entity_prefix(&name.to_ascii_lowercase());
        let start = match after {
            Some(a) => keys::entity_after(&prefix, a),
            None => prefix.clone(),
        };
        let pairs = self
            .state
            .tree
            .range(&start, &keys::prefix_end(&prefix), limit)?;
        Ok(pairs
            .into_iter()
            .map(|(k, v)| (keys::entity_key_of(&prefix, &k), v))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{apply, e, state};
    use perdure_types::command::Op;

    #[test]
    fn state_set_delete_and_applied_position() {
        let (st, _d) = state();
        apply(
            &st,
            1,
            vec![Op::SetState {
                entity: e("a"),
                state: b"1".to_vec(),
            }],
        );
        assert_eq!(st.entities().get(&e("a")).unwrap(), Some(b"1".to_vec()));
        apply(&st, 2, vec![Op::DeleteState { entity: e("a") }]);
        assert_eq!(st.entities().get(&e("a")).unwrap(), None);
        assert_eq!(st.applied().unwrap().0.unwrap().index, 2);
    }

    #[test]
    fn a_delta_applies_on_the_state_it_was_computed_from_and_nothing_otherwise() {
        use perdure_types::command::OpResult;
        use perdure_types::delta::StateDelta;
        let (st, _d) = state();
        let items: Vec<String> = (1..=100).map(|i| i.to_string()).collect();
        let old = format!("[{}]", items.join(",")).into_bytes();
        let mut new = old[..old.len() - 1].to_vec();
        new.extend_from_slice(b",101]");
        let delta = StateDelta::between(&old, &new).unwrap();
        let set = |s: &[u8]| Op::SetState {
            entity: e("l"),
            state: s.to_vec(),
        };
        let patch = Op::PatchState {
            entity: e("l"),
            delta: delta.clone(),
        };
        apply(&st, 1, vec![set(&old)]);
        assert_eq!(apply(&st, 2, vec![patch.clone()]), vec![OpResult::Done]);
        assert_eq!(st.entities().get(&e("l")).unwrap(), Some(new.clone()));
        // applied again, on the new state: the whole command applies nothing, its id included
        let remember = Op::RememberId {
            target: super::super::testkit::t("l"),
            id: "k".into(),
            expires_at: 10,
        };
        let enqueue = Op::Enqueue {
            target: super::super::testkit::t("l"),
            message: b"m".to_vec(),
        };
        assert_eq!(
            apply(&st, 3, vec![remember, patch.clone(), enqueue]),
            vec![OpResult::Skipped; 3]
        );
        assert_eq!(st.entities().get(&e("l")).unwrap(), Some(new.clone()));
        assert!(!st
            .ids()
            .remembers(&super::super::testkit::t("l"), "k")
            .unwrap());
        assert!(st
            .inbox()
            .messages(&super::super::testkit::t("l"))
            .unwrap()
            .is_empty());
        // the base of a delta is the state the command itself set before it
        assert_eq!(
            apply(&st, 4, vec![set(&old), patch]),
            vec![OpResult::Done, OpResult::Done]
        );
        assert_eq!(st.entities().get(&e("l")).unwrap(), Some(new));
    }

    #[test]
    fn listing_pages_through_one_entity_name_in_key_order() {
        let (st, _d) = state();
        let set = |k: &str| Op::SetState {
            entity: e(k),
            state: k.as_bytes().to_vec(),
        };
        let other = Op::SetState {
            entity: perdure_types::EntityId::new("u", "a").unwrap(),
            state: b"u".to_vec(),
        };
        apply(&st, 1, vec![set("b"), set("a"), other, set("a0")]);
        let keys = |after, limit| -> Vec<String> {
            let got = st.entities().list("T", after, limit).unwrap();
            got.into_iter().map(|(k, _)| k).collect()
        };
        assert_eq!(keys(None, 10), ["a", "a0", "b"]);
        assert_eq!(keys(None, 2), ["a", "a0"]);
        assert_eq!(keys(Some("a"), 10), ["a0", "b"]);
        assert_eq!(keys(Some("b"), 10), Vec::<String>::new());
    }
}
