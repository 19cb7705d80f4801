//! The remembered-ids table: idempotency ids per target (`RememberId`), each with an expiry, an
//! index by expiry that `ExpireIds` walks to forget them, and how many are remembered (the
//! runtime bounds it, `entities.max_idempotency_keys`).

use super::txn::Txn;
use super::{keys, PartitionState};
use crate::Result;
use perdure_types::command::{Millis, OpResult};
use perdure_types::Target;

/// Whether the batch (or the tree below it) already remembers `id` for `target`: the apply loop
/// asks before applying a command.
pub(super) fn seen(txn: &Txn<'_>, target: &Target, id: &str) -> Result<bool> {
    Ok(txn.get(&keys::id(target, id))?.is_some())
}

/// `Op::RememberId`: remembers `id` for `target` until `expires_at`; `Duplicate` (and nothing
/// written) if it is remembered already.
pub(super) fn remember(
    txn: &mut Txn<'_>,
    target: &Target,
    id: &str,
    expires_at: Millis,
) -> Result<OpResult> {
    let k = keys::id(target, id);
    if txn.get(&k)?.is_some() {
        return Ok(OpResult::Duplicate);
    }
    txn.put(k, expires_at.to_be_bytes().to_vec());
    txn.put(keys::id_by_expiry(expires_at, target, id), Vec::new());
    txn.next_u64(keys::IDS_COUNT)?;
    Ok(OpResult::Done)
}

/// `Op::ExpireIds`: forgets at most `limit` ids that expired before `now`, earliest first.
pub(super) fn expire(txn: &mut Txn<'_>, now: Millis, limit: usize) -> Result<OpResult> {
    let end = keys::ids_expiring_before(now);
    let expired = txn.keys(keys::IDS_BY_EXPIRY_START, &end, limit)?;
    if expired.is_empty() {
        return Ok(OpResult::Done);
    }
    let count = txn.get_u64(keys::IDS_COUNT)?;
    txn.put_u64(keys::IDS_COUNT, count.saturating_sub(expired.len() as u64));
    for k in expired {
        txn.del(keys::id_of_expiry_key(&k));
        txn.del(k);
    }
    Ok(OpResult::Done)
}

/// Read access to a partition's remembered idempotency ids (see [`PartitionState::ids`]).
#[derive(Debug, Clone, Copy)]
pub struct IdsTable<'a> {
    pub(super) state: &'a PartitionState,
}

impl IdsTable<'_> {
    /// Whether an idempotency id is remembered for a target.
    pub fn remembers(&self, target: &Target, id: &str) -> Result<bool> {
        self.state.tree.contains_key(&keys::id(target, id))
    }

    /// How many idempotency ids the partition remembers (a counter kept by every apply).
    pub fn count(&self) -> Result<u64> {
        Ok(self
            .state
            .tree
            .get(keys::IDS_COUNT)?
            .map(|v| keys::u64_of(&v))
            .unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{apply, state, t};
    use perdure_types::command::{Op, OpResult};

    #[test]
    fn a_remembered_id_skips_the_rest_of_the_command() {
        let (st, _d) = state();
        let cmd = |n: u8| {
            vec![
                Op::RememberId {
                    target: t("a"),
                    id: "req-1".into(),
                    expires_at: 1000,
                },
                Op::Enqueue {
                    target: t("a"),
                    message: vec![n],
                },
            ]
        };
        assert_eq!(
            apply(&st, 1, cmd(1)),
            vec![OpResult::Done, OpResult::Enqueued(1)]
        );
        assert_eq!(
            apply(&st, 2, cmd(2)),
            vec![OpResult::Duplicate, OpResult::Skipped]
        );
        assert_eq!(st.inbox().messages(&t("a")).unwrap().len(), 1);
        // a new id before a seen one is not remembered either: the command applies nothing
        let mixed = vec![
            Op::RememberId {
                target: t("a"),
                id: "req-new".into(),
                expires_at: 1000,
            },
            Op::RememberId {
                target: t("a"),
                id: "req-1".into(),
                expires_at: 1000,
            },
            Op::Enqueue {
                target: t("a"),
                message: vec![9],
            },
        ];
        assert_eq!(
            apply(&st, 20, mixed),
            vec![OpResult::Skipped, OpResult::Duplicate, OpResult::Skipped]
        );
        assert!(!st.ids().remembers(&t("a"), "req-new").unwrap());
        assert_eq!(st.inbox().messages(&t("a")).unwrap().len(), 1);
        // expiry forgets it; the same id is then new again
        apply(
            &st,
            3,
            vec![Op::ExpireIds {
                now: 999,
                limit: 10,
            }],
        );
        assert!(st.ids().remembers(&t("a"), "req-1").unwrap());
        assert_eq!(
            st.ids().count().unwrap(),
            1,
            "the duplicates counted nothing"
        );
        apply(
            &st,
            4,
            vec![Op::ExpireIds {
                now: 1001,
                limit: 10,
            }],
        );
        assert!(!st.ids().remembers(&t("a"), "req-1").unwrap());
        assert_eq!(st.ids().count().unwrap(), 0, "expiry uncounts");
        assert_eq!(
            apply(&st, 5, cmd(3)),
            vec![OpResult::Done, OpResult::Enqueued(2)]
        );
        assert_eq!(st.ids().count().unwrap(), 1);
    }
}
