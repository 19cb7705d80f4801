//! The entities table: each entity's state (`SetState`, `DeleteState`), read one at a time or
//! listed by entity name.

use super::txn::Txn;
use super::{keys, PartitionState};
use crate::Result;
use perdure_types::command::OpResult;
use perdure_types::EntityId;

/// `Op::SetState`: replaces an entity's state (creating the entity).
pub(super) fn set(txn: &mut Txn<'_>, entity: &EntityId, state: &[u8]) -> OpResult {
    txn.put(keys::entity(entity), state.to_vec());
    OpResult::Done
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
