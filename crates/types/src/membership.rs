//! The cluster's membership as the metadata group replicates it.
//!
//! The metadata group is one more Raft group next to the data partitions (its group id is the
//! partition count, one past the last partition). Its state holds one value, [`Membership`], under
//! a reserved entity id; every member holds a copy (as a voter or a learner), so routing and
//! placement read it locally. Changes are proposed by the group's leader only, fenced to its term.

use crate::config::MemberConfig;
use crate::ids::{EntityId, NodeId, PartitionId};
use crate::placement;
use serde::{Deserialize, Serialize};

/// The replicated membership.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// Current members, ordered by node id.
    pub members: Vec<MemberConfig>,
    /// Node ids removed from the cluster; they may not join again (a returning machine takes a
    /// new id and an empty data directory).
    pub removed: Vec<NodeId>,
    /// Whether the founding node has created every partition's group.
    pub bootstrapped: bool,
    /// Bumped by every change.
    pub version: u64,
}

/// Why a membership change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// The node was removed before.
    #[error("node {0} was removed from this cluster and may not join again; start it with a new node_id and an empty data directory")]
    Removed(NodeId),
    /// The node is not a member.
    #[error("node {0} is not a member")]
    NotAMember(NodeId),
    /// Removing would leave fewer members than replicas per partition.
    #[error("removing node {node} would leave {left} members, fewer than the replication factor {rf}; add a node first")]
    TooFew {
        /// The node to remove.
        node: NodeId,
        /// Members that would be left.
        left: usize,
        /// The replication factor.
        rf: u32,
    },
    /// Another member already uses one of the addresses.
    #[error("address {addr} is already used by node {by}")]
    AddressTaken {
        /// The address.
        addr: String,
        /// The member using it.
        by: NodeId,
    },
}

impl Membership {
    /// The reserved entity under which the metadata group stores the membership.
    pub fn entity() -> EntityId {
        EntityId::new("perdure.cluster", "membership").expect("valid reserved id")
    }

    /// Member node ids, ascending.
    pub fn ids(&self) -> Vec<NodeId> {
        self.members.iter().map(|m| m.node_id).collect()
    }

    /// The member `id`, if it is one.
    pub fn member(&self, id: NodeId) -> Option<&MemberConfig> {
        self.members.iter().find(|m| m.node_id == id)
    }

    /// Partition (or metadata group) `group`'s replica set by placement, preferred leader first.
    pub fn replicas(&self, group: PartitionId, rf: u32) -> Vec<NodeId> {
        placement::replicas(group, &self.ids(), rf)
    }

    /// Records the founding members; `None` once there are members (founding is idempotent).
    pub fn found(&self, members: &[MemberConfig]) -> Option<Self> {
        if !self.members.is_empty() {
            return None;
        }
        let mut next = self.clone();
        next.members = members.to_vec();
        next.members.sort_by_key(|m| m.node_id);
        next.version += 1;
        Some(next)
    }

    /// Marks founding done; `None` when it already is.
    pub fn mark_bootstrapped(&self) -> Option<Self> {
        if self.bootstrapped {
            return None;
        }
        let mut next = self.clone();
        next.bootstrapped = true;
        next.version += 1;
        Some(next)
    }

    /// Adds `m` (or updates its addresses); unchanged when it is already a member as given.
    pub fn join(&self, m: MemberConfig) -> Result<Option<Self>, ChangeError> {
        if self.removed.contains(&m.node_id) {
            return Err(ChangeError::Removed(m.node_id));
        }
        if self.member(m.node_id) == Some(&m) {
            return Ok(None);
        }
        for other in self.members.iter().filter(|o| o.node_id != m.node_id) {
            for a in [&m.addr, &m.http_addr] {
                if *a == other.addr || *a == other.http_addr {
                    return Err(ChangeError::AddressTaken {
                        addr: a.clone(),
                        by: other.node_id,
                    });
                }
            }
        }
        let mut next = self.clone();
        next.members.retain(|o| o.node_id != m.node_id);
        next.members.push(m);
        next.members.sort_by_key(|o| o.node_id);
        next.version += 1;
        Ok(Some(next))
    }

    /// Removes member `id`, refusing to go below `rf` members.
    pub fn remove(&self, id: NodeId, rf: u32) -> Result<Self, ChangeError> {
        if self.member(id).is_none() {
            return Err(if self.removed.contains(&id) {
                ChangeError::Removed(id)
            } else {
                ChangeError::NotAMember(id)
            });
        }
        let left = self.members.len() - 1;
        if (left as u32) < rf {
            return Err(ChangeError::TooFew { node: id, left, rf });
        }
        let mut next = self.clone();
        next.members.retain(|m| m.node_id != id);
        next.removed.push(id);
        next.removed.sort_unstable();
        next.version += 1;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: NodeId) -> MemberConfig {
        MemberConfig {
            node_id: id,
            addr: format!("127.0.0.{id}:7171"),
            http_addr: format!("127.0.0.{id}:7071"),
        }
    }

    #[test]
    fn founding_happens_once() {
        let s = Membership::default().found(&[m(3), m(1), m(2)]).unwrap();
        assert_eq!(s.ids(), vec![1, 2, 3]);
        assert_eq!(s.version, 1);
        assert_eq!(s.found(&[m(9)]), None, "a second founding changes nothing");
        let done = s.mark_bootstrapped().unwrap();
        assert!(done.bootstrapped);
        assert_eq!(done.version, 2);
        assert_eq!(done.mark_bootstrapped(), None);
    }

    #[test]
    fn join_and_remove() {
        let s = Membership {
            members: vec![m(1), m(2), m(3)],
            ..Default::default()
        };
        assert_eq!(
            s.join(m(2)).unwrap(),
            None,
            "an unchanged member is a no-op"
        );
        let s4 = s.join(m(4)).unwrap().unwrap();
        assert_eq!(s4.ids(), vec![1, 2, 3, 4]);
        assert_eq!(s4.version, 1);
        let mut clash = m(5);
        clash.addr = m(1).addr;
        assert!(matches!(
            s4.join(clash),
            Err(ChangeError::AddressTaken { by: 1, .. })
        ));
        let s3 = s4.remove(2, 3).unwrap();
        assert_eq!(s3.ids(), vec![1, 3, 4]);
        assert_eq!(s3.removed, vec![2]);
        assert!(matches!(
            s3.remove(1, 3),
            Err(ChangeError::TooFew { left: 2, .. })
        ));
        assert_eq!(s3.join(m(2)), Err(ChangeError::Removed(2)));
        assert_eq!(s3.remove(2, 1).unwrap_err(), ChangeError::Removed(2));
        assert_eq!(s3.remove(9, 1).unwrap_err(), ChangeError::NotAMember(9));
    }
}
