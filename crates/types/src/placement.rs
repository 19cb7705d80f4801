//! Where a partition's replicas live: rendezvous (highest-random-weight) hashing over the members.
//!
//! `score(p, n) = mix64(fnv1a64("p{p}/n{n}"))`; a partition's replicas are the `rf` members with
//! the highest scores, best first; the first is its preferred leader. A member joining takes over
//! only the replica slots where it outscores a current replica, and a member leaving frees only
//! its own slots: the partitions that move are exactly those whose replica set changes, about
//! `rf/members` of them per change. Preferred leaders are spread evenly because every member is
//! equally likely to rank first.
//!
//! Like the key-to-partition function, this is part of the cluster's behaviour: the unit tests pin
//! vectors so it cannot change silently.

use crate::ids::{NodeId, PartitionId};
use crate::partition::{fnv1a64, mix64};

/// The score of node `n` for partition `p`.
pub fn score(p: PartitionId, n: NodeId) -> u64 {
    mix64(fnv1a64(format!("p{p}/n{n}").as_bytes()))
}

/// The replica set of partition `p` among `members`: `min(rf, members)` node ids, best first.
pub fn replicas(p: PartitionId, members: &[NodeId], rf: u32) -> Vec<NodeId> {
    let mut ranked: Vec<(u64, NodeId)> = members.iter().map(|&n| (score(p, n), n)).collect();
    ranked.sort_unstable_by(|a, b| b.cmp(a));
    ranked.dedup_by_key(|x| x.1);
    ranked
        .into_iter()
        .take(rf as usize)
        .map(|(_, n)| n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn three_members_rf3_place_every_partition_everywhere() {
        for p in 0..64 {
            let r: BTreeSet<_> = replicas(p, &[1, 2, 3], 3).into_iter().collect();
            assert_eq!(r, BTreeSet::from([1, 2, 3]));
        }
    }

    #[test]
    fn leaders_are_spread_evenly() {
        let mut first = [0u32; 4];
        for p in 0..1200 {
            first[replicas(p, &[1, 2, 3], 3)[0] as usize] += 1;
        }
        for (n, &count) in first.iter().enumerate().skip(1) {
            assert!(
                (330..470).contains(&count),
                "node {n} prefers {count} of 1200"
            );
        }
    }

    #[test]
    fn a_join_moves_only_the_partitions_whose_replica_set_changes_about_rf_over_n() {
        let before: Vec<_> = (0..1000).map(|p| replicas(p, &[1, 2, 3, 4], 3)).collect();
        let after: Vec<_> = (0..1000)
            .map(|p| replicas(p, &[1, 2, 3, 4, 5], 3))
            .collect();
        let mut moved = 0;
        for (b, a) in before.iter().zip(&after) {
            let b: BTreeSet<_> = b.iter().collect();
            let a: BTreeSet<_> = a.iter().collect();
            let gone = b.difference(&a).count();
            assert!(
                gone <= 1,
                "a join replaces at most one replica of a partition"
            );
            if gone == 1 {
                assert!(a.contains(&5), "only the new node takes a slot");
                moved += 1;
            }
        }
        // ideal: 1000 * 3/5 = 600 partitions gain node 5
        assert!((530..670).contains(&moved), "moved {moved}");
    }

    #[test]
    fn a_removal_moves_only_the_removed_nodes_partitions() {
        for p in 0..500 {
            let b = replicas(p, &[1, 2, 3, 4, 5], 3);
            let a = replicas(p, &[1, 2, 4, 5], 3);
            if !b.contains(&3) {
                assert_eq!(b, a, "partition {p} moved without losing a replica");
            }
        }
    }

    /// Pinned: if this fails, placement changed and existing clusters would move data. Revert.
    #[test]
    fn placement_is_pinned() {
        assert_eq!(replicas(0, &[1, 2, 3, 4, 5], 3), PIN0);
        assert_eq!(replicas(7, &[1, 2, 3, 4, 5], 3), PIN7);
        assert_eq!(score(3, 2), PIN_SCORE);
    }
    // computed once by an independent implementation (Python)
    const PIN0: [u64; 3] = [5, 4, 2];
    const PIN7: [u64; 3] = [1, 2, 3];
    const PIN_SCORE: u64 = 17_930_256_245_440_466_537;
}
