//! The cluster as one node sees it (`GET /cluster`): members, whether they answer, and every
//! partition's replicas, voters and leader, described by the members that host it.

use crate::ctx::{group_view, GroupView};
use crate::Partitions;
use perdure_types::config::MemberConfig;
use perdure_types::{NodeId, PartitionId};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One member as this node sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberStatus {
    /// Its node id.
    pub node_id: NodeId,
    /// Its peer address.
    pub addr: String,
    /// Its HTTP address.
    pub http_addr: String,
    /// Whether it answered just now (always true for this node).
    pub up: bool,
    /// What went wrong when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Partitions it leads (as it says).
    pub leading: usize,
    /// Replica-set changes it completed as a leader since it started.
    pub moves: u64,
}

/// One partition as this node sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionStatus {
    /// The partition.
    pub partition: PartitionId,
    /// Its replica set by placement over the current members, preferred leader first.
    pub replicas: Vec<NodeId>,
    /// The voters of its group now (differs from `replicas` while replicas move).
    pub voters: Vec<NodeId>,
    /// Learners of its group now (new replicas catching up).
    pub learners: Vec<NodeId>,
    /// Its leader, if known.
    pub leader: Option<NodeId>,
    /// This node's role in its group (`-` when it does not host it).
    pub role: String,
    /// The current term.
    pub term: u64,
    /// Last log index here.
    pub last_log_index: Option<u64>,
    /// Last applied index here.
    pub applied_index: Option<u64>,
}

/// The cluster as this node sees it (`GET /cluster`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// This node.
    pub node_id: NodeId,
    /// The membership version (0 in single-node mode or before founding).
    pub membership_version: u64,
    /// Node ids removed from the cluster.
    pub removed: Vec<NodeId>,
    /// Members (this node alone in single-node mode).
    pub members: Vec<MemberStatus>,
    /// The metadata group, which holds the membership.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<PartitionStatus>,
    /// Every partition.
    pub partitions: Vec<PartitionStatus>,
}

impl Partitions {
    /// The cluster as this node sees it; members are asked (bounded by a short timeout) and
    /// partitions this node does not host are described by the members that do.
    pub async fn status(&self) -> ClusterStatus {
        let me = self.node_id();
        let Some(ctx) = self.ctx() else {
            return ClusterStatus {
                node_id: me,
                membership_version: 0,
                removed: Vec::new(),
                members: vec![MemberStatus {
                    node_id: me,
                    addr: String::new(),
                    http_addr: String::new(),
                    up: true,
                    error: None,
                    leading: self.leading(),
                    moves: 0,
                }],
                metadata: None,
                partitions: (0..self.count())
                    .map(|p| self.local_status(p, vec![me], None))
                    .collect(),
            };
        };
        let m = ctx.membership();
        let listed: Vec<MemberConfig> = if m.members.is_empty() {
            ctx.seeds.clone()
        } else {
            m.members.clone()
        };
        let mut answers = ctx
            .ask_infos(listed.iter().map(|m| m.node_id), Duration::from_millis(500))
            .await;
        // per group: the best view (the leader's own, else the highest term)
        let groups = self.count() as usize + 1;
        let mut views: Vec<Option<((bool, u64), GroupView)>> = vec![None; groups];
        let mut members = Vec::new();
        for member in listed {
            let got = match answers.iter().position(|(n, _)| *n == member.node_id) {
                Some(i) => answers.swap_remove(i).1,
                None => Err("not asked".into()),
            };
            let (up, error, leading, moves) = match &got {
                Ok(info) => {
                    for (p, v) in info.views.iter().enumerate() {
                        let (Some(v), Some(slot)) = (v, views.get_mut(p)) else {
                            continue;
                        };
                        let rank = (v.leader == Some(info.node_id), v.term);
                        if slot.as_ref().is_none_or(|(r, _)| rank > *r) {
                            *slot = Some((rank, v.clone()));
                        }
                    }
                    let leading = info.views[..groups.min(info.views.len()) - 1]
                        .iter()
                        .flatten()
                        .filter(|v| v.leader == Some(info.node_id))
                        .count();
                    (true, None, leading, info.moves)
                }
                Err(e) => (false, Some(e.clone()), 0, 0),
            };
            members.push(MemberStatus {
                node_id: member.node_id,
                addr: member.addr,
                http_addr: member.http_addr,
                up,
                error,
                leading,
                moves,
            });
        }
        let partitions = (0..self.count())
            .map(|p| {
                let view = views[p as usize].take().map(|(_, v)| v);
                self.local_status(p, ctx.replicas(p), view)
            })
            .collect();
        let meta = ctx.partitions();
        let meta_view = views[meta as usize].take().map(|(_, v)| v);
        ClusterStatus {
            node_id: me,
            membership_version: m.version,
            removed: m.removed.clone(),
            members,
            metadata: Some(self.local_status(meta, ctx.replicas(meta), meta_view)),
            partitions,
        }
    }

    fn local_status(
        &self,
        p: PartitionId,
        replicas: Vec<NodeId>,
        view: Option<GroupView>,
    ) -> PartitionStatus {
        let me = self.node_id();
        let local = self
            .any_group(p)
            .map(|r| r.metrics().borrow().clone())
            .filter(|m| m.membership_config.membership().get_node(&me).is_some());
        let view = match (&local, view) {
            (Some(m), v) if v.is_none() || m.current_leader == Some(me) => group_view(m),
            (_, v) => v.unwrap_or_default(),
        };
        PartitionStatus {
            partition: p,
            replicas,
            voters: view.voters,
            learners: view.learners,
            leader: view.leader,
            role: local
                .as_ref()
                .map_or_else(|| "-".to_string(), |m| format!("{:?}", m.state)),
            term: view.term,
            last_log_index: local.as_ref().and_then(|m| m.last_log_index),
            applied_index: local.and_then(|m| m.last_applied.map(|l| l.index)),
        }
    }
}

/// A group this node is a member of that cannot serve now (see [`Partitions::unservable`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupProblem {
    /// The group: a partition, or the metadata group (numbered after the partitions).
    pub group: PartitionId,
    /// Whether it is the metadata group.
    pub metadata: bool,
    /// Whether its Raft core stopped on an error (a storage failure or a panic): it will not
    /// serve again in this process.
    pub fatal: bool,
    /// What is wrong, for people.
    pub problem: String,
}

impl Partitions {
    /// The groups this node is a voter or learner of that cannot serve now: the Raft core
    /// stopped (a fatal storage error, or shutdown), or no leader is known. Groups not
    /// initialized yet (a cluster still forming) are not listed: readiness waits for formation
    /// separately.
    pub fn unservable(&self) -> Vec<GroupProblem> {
        let me = self.node_id();
        let mut out = Vec::new();
        let mut g = 0;
        while let Some(raft) = self.any_group(g) {
            let m = raft.metrics().borrow().clone();
            let metadata = g == self.count();
            let member = m.membership_config.membership().get_node(&me).is_some();
            let problem = match &m.running_state {
                Err(openraft::error::Fatal::Stopped) => Some((false, "stopped".to_string())),
                Err(e) => Some((true, format!("raft stopped on an error: {e}"))),
                Ok(()) if member && m.current_leader.is_none() => {
                    Some((false, "no leader known".to_string()))
                }
                Ok(()) => None,
            };
            if let Some((fatal, problem)) = problem {
                out.push(GroupProblem {
                    group: g,
                    metadata,
                    fatal,
                    problem,
                });
            }
            g += 1;
        }
        out
    }

    /// The first group whose Raft core stopped on an error (a storage failure such as a full
    /// disk, too many open files or an I/O error, or a panic): this process cannot serve it
    /// again and should stop (fail-stop) so that a supervisor restarts it.
    pub fn fatal(&self) -> Option<GroupProblem> {
        self.unservable().into_iter().find(|p| p.fatal)
    }
}
