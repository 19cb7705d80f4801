//! The outbox table: messages for other partitions (`Send`), numbered gap-free per destination
//! and kept until the destination acknowledges them (`AckOutbox`).

use super::txn::Txn;
use super::{keys, PartitionState};
use crate::Result;
use perdure_types::command::OpResult;
use perdure_types::PartitionId;

/// `Op::Send`: appends a message for `dest` under that destination's next sequence number.
pub(super) fn send(txn: &mut Txn<'_>, dest: PartitionId, message: &[u8]) -> Result<OpResult> {
    let seq = txn.next_u64(&keys::outbox_last(dest))?;
    txn.put(keys::outbox(dest, seq), message.to_vec());
    Ok(OpResult::Sent(seq))
}

/// `Op::AckOutbox`: drops the messages for `dest` numbered up to `upto` (all of them for
/// `u64::MAX`).
pub(super) fn ack(txn: &mut Txn<'_>, dest: PartitionId, upto: u64) -> Result<OpResult> {
    let start = keys::outbox_prefix(dest);
    let end = if upto == u64::MAX {
        keys::prefix_end(&start)
    } else {
        keys::outbox(dest, upto + 1)
    };
    txn.del_range(&start, &end)?;
    Ok(OpResult::Done)
}

/// Read access to a partition's outbox (see [`PartitionState::outbox`]).
#[derive(Debug, Clone, Copy)]
pub struct OutboxTable<'a> {
    pub(super) state: &'a PartitionState,
}

impl OutboxTable<'_> {
    /// The oldest pending outbox messages over all destinations: `(dest, seq, message)` in
    /// (destination, sequence) order, at most `limit`.
    pub fn pending(&self, limit: usize) -> Result<Vec<(PartitionId, u64, Vec<u8>)>> {
        let mut out = Vec::new();
        for kv in self.state.tree.scan_prefix(keys::OUTBOX_ALL).take(limit) {
            let (k, v) = kv.map_err(|e| self.state.sled_err(e))?;
            if let Some((dest, seq)) = keys::outbox_of(&k) {
                out.push((dest, seq, v.to_vec()));
            }
        }
        Ok(out)
    }

    /// Outbox messages for `dest` with sequence numbers above `after`, at most `limit`.
    pub fn to(&self, dest: PartitionId, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        let prefix = keys::outbox_prefix(dest);
        let mut out = Vec::new();
        for kv in self
            .state
            .tree
            .range(keys::outbox(dest, after.saturating_add(1))..keys::prefix_end(&prefix))
            .take(limit)
        {
            let (k, v) = kv.map_err(|e| self.state.sled_err(e))?;
            out.push((keys::outbox_seq_of(&prefix, &k), v.to_vec()));
        }
        Ok(out)
    }

    /// Messages waiting in this partition's outbox (not yet acknowledged by their destination),
    /// counted up to `cap`.
    pub fn depth(&self, cap: usize) -> usize {
        self.state
            .tree
            .scan_prefix(keys::OUTBOX_ALL)
            .keys()
            .take(cap)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{apply, state};
    use perdure_types::command::{Op, OpResult};

    #[test]
    fn outbox_is_gap_free_per_destination_and_acks_drop_a_prefix() {
        let (st, _d) = state();
        let r = apply(
            &st,
            1,
            vec![
                Op::Send {
                    dest: 3,
                    message: b"x".to_vec(),
                },
                Op::Send {
                    dest: 4,
                    message: b"y".to_vec(),
                },
                Op::Send {
                    dest: 3,
                    message: b"z".to_vec(),
                },
            ],
        );
        assert_eq!(
            r,
            vec![OpResult::Sent(1), OpResult::Sent(1), OpResult::Sent(2)]
        );
        assert_eq!(
            st.outbox().to(3, 0, 10).unwrap(),
            vec![(1, b"x".to_vec()), (2, b"z".to_vec())]
        );
        assert_eq!(
            st.outbox().pending(10).unwrap(),
            vec![
                (3, 1, b"x".to_vec()),
                (3, 2, b"z".to_vec()),
                (4, 1, b"y".to_vec())
            ]
        );
        apply(&st, 2, vec![Op::AckOutbox { dest: 3, upto: 1 }]);
        assert_eq!(st.outbox().to(3, 0, 10).unwrap(), vec![(2, b"z".to_vec())]);
        assert_eq!(st.outbox().to(4, 0, 10).unwrap().len(), 1);
    }
}
