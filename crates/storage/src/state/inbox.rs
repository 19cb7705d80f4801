//! The inbox table: messages waiting for an entity (`Enqueue`, `Dequeue`, `DequeueSeqs`),
//! including those that arrive from other partitions (`Receive`), and the per-source received
//! mark that lets each of those in exactly once.
//!
//! The received mark lives here, not beside the outbox: it is the receiving end's state, only
//! ever read and written together with an inbox write (`Receive` = check the mark, advance it,
//! enqueue), while the outbox table is the sending end and never reads it. Keeping both in one
//! file keeps `Receive` one arm that calls no other table.

use super::txn::Txn;
use super::{keys, PartitionState};
use crate::Result;
use perdure_types::command::OpResult;
use perdure_types::{PartitionId, Target};

/// `Op::Enqueue`: appends a message to a target's inbox under the partition's next inbox
/// number.
pub(super) fn enqueue(txn: &mut Txn<'_>, target: &Target, message: &[u8]) -> Result<OpResult> {
    let seq = txn.next_u64(keys::INBOX_SEQ)?;
    txn.put(keys::inbox(target, seq), message.to_vec());
    Ok(OpResult::Enqueued(seq))
}

/// Most waiting messages [`enqueue_first`] moves behind the new ones.
const MOVE_LIMIT: usize = 10_000;

/// Enqueues `messages` ahead of what waits in the target's inbox: the waiting messages (up to
/// 10,000 of them) are taken out and enqueued again after `messages`, in their order.
pub(super) fn enqueue_first(
    txn: &mut Txn<'_>,
    target: &Target,
    messages: &[Vec<u8>],
) -> Result<()> {
    let start = keys::inbox_prefix(target);
    let end = keys::prefix_end(&start);
    let mut waiting = Vec::new();
    for k in txn.keys(&start, &end, MOVE_LIMIT)? {
        if let Some(v) = txn.get(&k)? {
            waiting.push(v);
        }
        txn.del(k);
    }
    for m in messages.iter().chain(waiting.iter()) {
        enqueue(txn, target, m)?;
    }
    Ok(())
}

/// `Op::Dequeue`: drops a target's inbox messages numbered up to `upto` (all of them for
/// `u64::MAX`).
pub(super) fn dequeue(txn: &mut Txn<'_>, target: &Target, upto: u64) -> Result<OpResult> {
    let start = keys::inbox_prefix(target);
    let end = if upto == u64::MAX {
        keys::prefix_end(&start)
    } else {
        keys::inbox(target, upto + 1)
    };
    txn.del_range(&start, &end)?;
    Ok(OpResult::Done)
}

/// `Op::DequeueSeqs`: drops the given inbox messages of a target (those it does not hold are
/// ignored).
pub(super) fn dequeue_seqs(txn: &mut Txn<'_>, target: &Target, seqs: &[u64]) -> OpResult {
    for &seq in seqs {
        txn.del(keys::inbox(target, seq));
    }
    OpResult::Done
}

/// `Op::Receive`: enqueues message `seq` from partition `source` if it is the next one from
/// there; a repeat is a `Duplicate`, a skip ahead a `Gap`, and neither changes anything.
pub(super) fn receive(
    txn: &mut Txn<'_>,
    source: PartitionId,
    seq: u64,
    target: &Target,
    message: &[u8],
) -> Result<OpResult> {
    let k = keys::received(source);
    let have = txn.get_u64(&k)?;
    if seq <= have {
        Ok(OpResult::Duplicate)
    } else if seq > have + 1 {
        Ok(OpResult::Gap { expected: have + 1 })
    } else {
        txn.put_u64(&k, seq);
        enqueue(txn, target, message)
    }
}

/// Read access to a partition's inboxes (see [`PartitionState::inbox`]).
#[derive(Debug, Clone, Copy)]
pub struct InboxTable<'a> {
    pub(super) state: &'a PartitionState,
}

impl InboxTable<'_> {
    /// A target's pending inbox messages, oldest first.
    pub fn messages(&self, target: &Target) -> Result<Vec<(u64, Vec<u8>)>> {
        self.first(target, usize::MAX)
    }

    /// A target's oldest `limit` pending inbox messages, oldest first.
    pub fn first(&self, target: &Target, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        let prefix = keys::inbox_prefix(target);
        let pairs = self.state.tree.scan_prefix(&prefix, limit)?;
        Ok(pairs
            .into_iter()
            .map(|(k, v)| (keys::inbox_seq_of(&prefix, &k), v))
            .collect())
    }

    /// Targets with pending inbox messages (each once), in key order, at most `limit`.
    pub fn targets(&self, limit: usize) -> Result<Vec<Target>> {
        let mut out: Vec<Target> = Vec::new();
        let mut start = keys::INBOX_ALL.to_vec();
        while out.len() < limit {
            let Some((k, _)) = self.state.tree.range(&start, keys::INBOX_END, 1)?.pop() else {
                break;
            };
            let Some((canonical, past)) = keys::inbox_owner_of(&k) else {
                break;
            };
            match Target::from_canonical(&canonical) {
                Ok(id) => out.push(id),
                Err(e) => tracing::warn!(key = %canonical, error = %e, "unreadable inbox key"),
            }
            // skip past every message of this target
            start = past;
        }
        Ok(out)
    }

    /// Messages waiting in this partition's entity inboxes, counted up to `cap` (for metrics:
    /// bounded work at scrape time).
    pub fn depth(&self, cap: usize) -> usize {
        self.state
            .tree
            .count_prefix(keys::INBOX_ALL, cap)
            .unwrap_or(0)
    }

    /// Highest sequence number received from `source`.
    pub fn received_upto(&self, source: PartitionId) -> Result<u64> {
        Ok(self
            .state
            .tree
            .get(&keys::received(source))?
            .map(|v| keys::u64_of(&v))
            .unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{apply, state, t};
    use perdure_types::command::{Op, OpResult};

    #[test]
    fn inbox_sequence_numbers_increase_and_dequeue_removes_a_prefix() {
        let (st, _d) = state();
        let r = apply(
            &st,
            1,
            (0..5)
                .map(|i| Op::Enqueue {
                    target: t(if i % 2 == 0 { "a" } else { "b" }),
                    message: vec![i],
                })
                .collect(),
        );
        assert_eq!(r, (1..=5).map(OpResult::Enqueued).collect::<Vec<_>>());
        assert_eq!(
            st.inbox().messages(&t("a")).unwrap(),
            vec![(1, vec![0]), (3, vec![2]), (5, vec![4])]
        );
        // an entity whose key extends another's does not see its messages
        assert!(st.inbox().messages(&t("a0")).unwrap().is_empty());
        apply(
            &st,
            2,
            vec![Op::Dequeue {
                target: t("a"),
                upto: 3,
            }],
        );
        assert_eq!(st.inbox().messages(&t("a")).unwrap(), vec![(5, vec![4])]);
        assert_eq!(st.inbox().messages(&t("b")).unwrap().len(), 2);
        assert_eq!(st.inbox().targets(10).unwrap(), vec![t("a"), t("b")]);
        assert_eq!(st.inbox().targets(1).unwrap(), vec![t("a")]);
    }

    #[test]
    fn dequeue_seqs_removes_exactly_the_messages_named() {
        let (st, _d) = state();
        apply(
            &st,
            1,
            (0..6)
                .map(|i| Op::Enqueue {
                    target: t(if i == 4 { "b" } else { "a" }),
                    message: vec![i],
                })
                .collect(),
        );
        // a's 1, 2, 3, 4, 6; b's 5. Remove 2 and 4 of a (past the held 1), 5 named for a (b's:
        // untouched), 9 (none)
        let r = apply(
            &st,
            2,
            vec![Op::DequeueSeqs {
                target: t("a"),
                seqs: vec![4, 2, 5, 9],
            }],
        );
        assert_eq!(r, vec![OpResult::Done]);
        assert_eq!(
            st.inbox().messages(&t("a")).unwrap(),
            vec![(1, vec![0]), (3, vec![2]), (6, vec![5])]
        );
        assert_eq!(st.inbox().messages(&t("b")).unwrap(), vec![(5, vec![4])]);
        // a prefix removal after it takes what is left below its bound
        apply(
            &st,
            3,
            vec![Op::Dequeue {
                target: t("a"),
                upto: 3,
            }],
        );
        assert_eq!(st.inbox().messages(&t("a")).unwrap(), vec![(6, vec![5])]);
    }

    #[test]
    fn receive_accepts_each_sequence_number_once_and_in_order() {
        let (st, _d) = state();
        let recv = |seq| Op::Receive {
            source: 7,
            seq,
            target: t("a"),
            message: vec![seq as u8],
        };
        let r = apply(&st, 1, vec![recv(1), recv(1), recv(3), recv(2)]);
        assert_eq!(
            r,
            vec![
                OpResult::Enqueued(1),
                OpResult::Duplicate,
                OpResult::Gap { expected: 2 },
                OpResult::Enqueued(2)
            ]
        );
        assert_eq!(st.inbox().received_upto(7).unwrap(), 2);
        assert_eq!(
            st.inbox().messages(&t("a")).unwrap(),
            vec![(1, vec![1]), (2, vec![2])]
        );
    }

    #[test]
    fn an_instance_has_an_inbox_of_its_own_beside_entities() {
        let (st, _d) = state();
        let instance =
            perdure_types::Target::Instance(perdure_types::InstanceId::new("order-1").unwrap());
        apply(
            &st,
            1,
            vec![
                Op::Enqueue {
                    target: instance.clone(),
                    message: b"event".to_vec(),
                },
                Op::Enqueue {
                    target: t("a"),
                    message: b"op".to_vec(),
                },
            ],
        );
        assert_eq!(
            st.inbox().messages(&instance).unwrap(),
            vec![(1, b"event".to_vec())]
        );
        assert_eq!(
            st.inbox().messages(&t("a")).unwrap(),
            vec![(2, b"op".to_vec())]
        );
        // entities (`@...`) sort before instances; each target once
        assert_eq!(st.inbox().targets(10).unwrap(), vec![t("a"), instance]);
    }
}
