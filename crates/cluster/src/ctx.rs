//! [`Ctx`]: what a clustered node's background tasks and peer services share (its groups, the
//! membership as applied here, replica sets by placement, leader hints), and what a group looks
//! like from here ([`GroupView`]).

use crate::barrier::Resumed;
use crate::transport::Peers;
use openraft::{BasicNode, Raft, RaftMetrics};
use perdure_storage::state::PartitionState;
use perdure_storage::TypeConfig;
use perdure_types::config::{ClusterConfig, MemberConfig};
use perdure_types::membership::Membership;
use perdure_types::{codec, NodeId, PartitionId};
use serde::{Deserialize, Serialize};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};
use tokio::sync::watch;

/// One partition as a node that hosts it sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupView {
    /// Its leader, if known.
    pub leader: Option<NodeId>,
    /// The current term.
    pub term: u64,
    /// Voters of the group's current configuration.
    pub voters: Vec<NodeId>,
    /// Learners of the group's current configuration.
    pub learners: Vec<NodeId>,
    /// Whether a configuration change is half done (joint consensus).
    pub joint: bool,
}

/// What a group's metrics say of it.
pub(crate) fn group_view(m: &RaftMetrics<NodeId, BasicNode>) -> GroupView {
    let membership = m.membership_config.membership();
    GroupView {
        leader: m.current_leader,
        term: m.current_term,
        voters: membership.voter_ids().collect(),
        learners: membership.learner_ids().collect(),
        joint: membership.get_joint_config().len() > 1,
    }
}

/// A partition's leader as its hosts report it: (leader, term).
pub(crate) type LeaderHint = Option<(NodeId, u64)>;

/// Everything a node's background tasks share.
#[derive(Clone)]
pub(crate) struct Ctx {
    /// This node.
    pub node_id: NodeId,
    /// Data partitions, then the metadata group at index `partitions`.
    pub rafts: Vec<Raft<TypeConfig>>,
    /// The metadata group's state on this node (the membership is read from it).
    pub meta_state: PartitionState,
    /// The metadata group's leadership resumed after a restart, if any (see
    /// [`Resumed`]).
    pub meta_resumed: Option<Resumed>,
    /// Connections to the other nodes.
    pub peers: Peers,
    /// The members configured at start (founding, or the way into a running cluster).
    pub seeds: Vec<MemberConfig>,
    /// The replication factor.
    pub rf: u32,
    /// The membership as applied here (kept equal to the metadata group's state by membership).
    pub membership: Arc<watch::Sender<Membership>>,
    /// Every group's replica set by placement over the current members (the seeds until the
    /// membership is known), recomputed when it changes.
    pub table: Arc<RwLock<Vec<Vec<NodeId>>>>,
    /// Leaders of partitions this node does not host, as their hosts report them: (leader, term).
    pub hints: Arc<RwLock<Vec<LeaderHint>>>,
    /// Serializes membership changes on the metadata leader.
    pub change_lock: Arc<tokio::sync::Mutex<()>>,
    /// Replica-set changes this node has completed as a leader.
    pub moves: Arc<AtomicU64>,
    /// What formation waits for now (`None` once this node is part of a formed cluster).
    pub formation: Arc<RwLock<Option<String>>>,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl Ctx {
    /// The context of node `node_id` over its groups `rafts` (the data partitions, then the
    /// metadata group, whose state is `meta_state`), before it knows the membership: formation
    /// is starting and the replica sets are placement over the seeds.
    pub fn new(
        node_id: NodeId,
        rafts: Vec<Raft<TypeConfig>>,
        meta_state: PartitionState,
        meta_resumed: Option<Resumed>,
        peers: Peers,
        cluster: &ClusterConfig,
    ) -> Self {
        let partitions = rafts.len() - 1;
        let ctx = Ctx {
            node_id,
            rafts,
            meta_state,
            meta_resumed,
            peers,
            seeds: cluster.members.clone(),
            rf: cluster.replication_factor,
            membership: Arc::new(watch::channel(Default::default()).0),
            hints: Arc::new(RwLock::new(vec![None; partitions])),
            change_lock: Arc::default(),
            moves: Arc::default(),
            table: Arc::default(),
            formation: Arc::new(RwLock::new(Some("cluster formation is starting".into()))),
        };
        ctx.refresh_table();
        ctx
    }

    /// Number of data partitions (the metadata group's id).
    pub fn partitions(&self) -> PartitionId {
        (self.rafts.len() - 1) as PartitionId
    }

    /// The metadata group.
    pub fn meta(&self) -> &Raft<TypeConfig> {
        &self.rafts[self.partitions() as usize]
    }

    /// The membership as applied here.
    pub fn membership(&self) -> Membership {
        self.membership.borrow().clone()
    }

    /// Member ids, or the seeds' before the membership is known here.
    pub fn member_ids(&self) -> Vec<NodeId> {
        let m = self.membership.borrow();
        if m.members.is_empty() {
            self.seeds.iter().map(|s| s.node_id).collect()
        } else {
            m.ids()
        }
    }

    /// Group `g`'s replica set by placement over the current members.
    pub fn replicas(&self, g: PartitionId) -> Vec<NodeId> {
        self.table
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(g as usize)
            .cloned()
            .unwrap_or_default()
    }

    /// Recomputes every group's replica set (after the membership changed).
    pub fn refresh_table(&self) {
        let ids = self.member_ids();
        let table = (0..=self.partitions())
            .map(|g| perdure_types::placement::replicas(g, &ids, self.rf))
            .collect();
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = table;
    }

    /// Reads the membership from the local copy of the metadata group's state.
    pub fn read_local(&self) -> Result<Membership, String> {
        match self
            .meta_state
            .entities()
            .get(&Membership::entity())
            .map_err(|e| e.to_string())?
        {
            None => Ok(Membership::default()),
            Some(bytes) => codec::decode(&bytes).map_err(|e| e.to_string()),
        }
    }

    /// Reads the subscriptions from the local copy of the metadata group's state.
    pub fn read_subscriptions(&self) -> Result<perdure_types::subscription::Subscriptions, String> {
        use perdure_types::subscription::Subscriptions;
        match self
            .meta_state
            .entities()
            .get(&Subscriptions::entity())
            .map_err(|e| e.to_string())?
        {
            None => Ok(Subscriptions::default()),
            Some(bytes) => Subscriptions::decode(&bytes),
        }
    }

    /// Whether this node hosts group `g`: it is a voter or learner of the group's configuration
    /// as known here AND placement over the current members keeps it there. A node that missed
    /// the configuration change removing it (it was down) still finds itself in its stale copy;
    /// placement tells it to ask the hosting members instead. On the request path: no
    /// allocation.
    pub fn hosts(&self, g: PartitionId) -> bool {
        let in_config = self.rafts.get(g as usize).is_some_and(|r| {
            r.metrics()
                .borrow()
                .membership_config
                .membership()
                .get_node(&self.node_id)
                .is_some()
        });
        in_config
            && (g == self.partitions()
                || self
                    .table
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(g as usize)
                    .is_some_and(|r| r.contains(&self.node_id)))
    }

    /// The view of group `g` from here, if this node hosts it.
    pub fn view(&self, g: PartitionId) -> Option<GroupView> {
        if !self.hosts(g) {
            return None;
        }
        Some(group_view(&self.rafts.get(g as usize)?.metrics().borrow()))
    }

    /// Records what formation waits for (`None`: this node is part of a formed cluster).
    pub fn set_formation(&self, what: Option<String>) {
        *self.formation.write().unwrap_or_else(|p| p.into_inner()) = what;
    }
}
