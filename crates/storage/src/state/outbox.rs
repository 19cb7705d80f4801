//! The outbox table: messages for other partitions (`Send`), numbered gap-free per destination
//! and kept until the destination acknowledges them (`AckOutbox`).

use super::txn::Txn;
use super::{keys, PartitionState};
use crate::Result;
use perdure_types::command::OpResult;
use perdure_types::{PartitionId, Target};

/// A message waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The destination partition.
    pub dest: PartitionId,
    /// Its sequence number for that destination.
    pub seq: u64,
    /// The receiver.
    pub target: Target,
    /// The message.
    pub message: Vec<u8>,
}

/// `Op::Send`: appends a message for `target` on `dest` under that destination's next sequence
/// number; the target is stored beside the message, so delivery never decodes the message.
pub(super) fn send(
    txn: &mut Txn<'_>,
    dest: PartitionId,
    target: &Target,
    message: &[u8],
) -> Result<OpResult> {
    let seq = txn.next_u64(&keys::outbox_last(dest))?;
    let v = txn.encode(&(target, message))?;
    txn.put(keys::outbox(dest, seq), v);
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
    /// The oldest pending outbox messages over all destinations, in (destination, sequence)
    /// order, at most `limit`.
    pub fn pending(&self, limit: usize) -> Result<Vec<Outgoing>> {
        let mut out = Vec::new();
        for (k, v) in self.state.tree.scan_prefix(keys::OUTBOX_ALL, limit)? {
            if let Some((dest, seq)) = keys::outbox_of(&k) {
                let (target, message): (Target, Vec<u8>) = self.state.decode(&v)?;
                out.push(Outgoing {
                    dest,
                    seq,
                    target,
                    message,
                });
            }
        }
        Ok(out)
    }

    /// Outbox messages for `dest` with sequence numbers above `after`, at most `limit`:
    /// `(seq, target, message)`.
    pub fn to(
        &self,
        dest: PartitionId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Target, Vec<u8>)>> {
        let prefix = keys::outbox_prefix(dest);
        let mut out = Vec::new();
        let start = keys::outbox(dest, after.saturating_add(1));
        for (k, v) in self
            .state
            .tree
            .range(&start, &keys::prefix_end(&prefix), limit)?
        {
            let (target, message): (Target, Vec<u8>) = self.state.decode(&v)?;
            out.push((keys::outbox_seq_of(&prefix, &k), target, message));
        }
        Ok(out)
    }

    /// Messages waiting in this partition's outbox (not yet acknowledged by their destination),
    /// counted up to `cap`.
    pub fn depth(&self, cap: usize) -> usize {
        self.state
            .tree
            .count_prefix(keys::OUTBOX_ALL, cap)
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{apply, state, t};
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
                    target: t("x"),
                    message: b"x".to_vec(),
                },
                Op::Send {
                    dest: 4,
                    target: t("y"),
                    message: b"y".to_vec(),
                },
                Op::Send {
                    dest: 3,
                    target: t("z"),
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
            vec![(1, t("x"), b"x".to_vec()), (2, t("z"), b"z".to_vec())]
        );
        let pending: Vec<_> = st
            .outbox()
            .pending(10)
            .unwrap()
            .into_iter()
            .map(|o| (o.dest, o.seq, o.target, o.message))
            .collect();
        // each message comes back with its target, without decoding the message
        assert_eq!(
            pending,
            vec![
                (3, 1, t("x"), b"x".to_vec()),
                (3, 2, t("z"), b"z".to_vec()),
                (4, 1, t("y"), b"y".to_vec())
            ]
        );
        apply(&st, 2, vec![Op::AckOutbox { dest: 3, upto: 1 }]);
        assert_eq!(
            st.outbox().to(3, 0, 10).unwrap(),
            vec![(2, t("z"), b"z".to_vec())]
        );
        assert_eq!(st.outbox().to(4, 0, 10).unwrap().len(), 1);
    }
}
