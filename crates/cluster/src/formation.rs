//! Forming a cluster from its members' configs, and keeping its leaders spread.
//!
//! - **Bootstrap, once**: each partition's replica set comes from placement over the configured
//!   members. The lowest node id of a replica set initializes that partition's group, and only
//!   after EVERY other member has answered that it holds no such partition: a node whose data
//!   directory was wiped, restarting into a running cluster, finds its peers initialized and
//!   waits to be caught up instead of founding a second cluster. Until all members answer, it
//!   waits (and says so).
//! - **Leader balancing**: each partition's preferred leader is the first of its replica set.
//!   A preferred leader that follows, is caught up, and has seen the partition stable for a
//!   while, calls an election for itself; so leaders spread evenly and move back to a node that
//!   returns. At most one such election per node per round, to keep disruption small.

use crate::raft_net::Dispatcher;
use crate::transport::{self, Handler, Peers, RemoteError, RemoteErrorCode, TransportConfig};
use openraft::{BasicNode, Raft, ServerState};
use perdure_storage::TypeConfig;
use perdure_types::config::MemberConfig;
use perdure_types::{codec, placement, NodeId, PartitionId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Transport request kind: what a node holds.
pub const KIND_CLUSTER_INFO: u16 = 2;

/// A node's answer to [`KIND_CLUSTER_INFO`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterInfo {
    /// The node.
    pub node_id: NodeId,
    /// Per partition: whether its group on that node is initialized.
    pub initialized: Vec<bool>,
}

/// Accepts peers on `listener` until aborted.
pub(crate) fn serve_peers(
    listener: tokio::net::TcpListener,
    config: Arc<TransportConfig>,
    dispatcher: Dispatcher,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let addr = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        tracing::info!(%addr, "listening for peers");
        if let Err(e) = transport::serve(
            listener,
            config,
            Arc::new(dispatcher),
            std::future::pending(),
        )
        .await
        {
            tracing::error!(%addr, error = %e, "peer listener failed");
        }
    })
}

struct InfoService {
    node_id: NodeId,
    rafts: Vec<Raft<TypeConfig>>,
}

impl Handler for InfoService {
    fn handle(
        &self,
        _from: NodeId,
        _kind: u16,
        _body: Vec<u8>,
    ) -> futures::future::BoxFuture<'static, Result<Vec<u8>, RemoteError>> {
        let rafts = self.rafts.clone();
        let node_id = self.node_id;
        Box::pin(async move {
            let mut initialized = Vec::with_capacity(rafts.len());
            for r in &rafts {
                initialized.push(r.is_initialized().await.unwrap_or(true));
            }
            codec::encode(&ClusterInfo {
                node_id,
                initialized,
            })
            .map_err(|e| RemoteError {
                code: RemoteErrorCode::Handler,
                message: e.to_string(),
            })
        })
    }
}

/// Registers the cluster-info service and starts bootstrap and leader balancing.
pub(crate) fn start(
    node_id: NodeId,
    rafts: Vec<Raft<TypeConfig>>,
    peers: Peers,
    dispatcher: &Dispatcher,
    members: Vec<MemberConfig>,
    rf: u32,
) -> Vec<JoinHandle<()>> {
    dispatcher.register(
        KIND_CLUSTER_INFO,
        Arc::new(InfoService {
            node_id,
            rafts: rafts.clone(),
        }),
    );
    vec![
        tokio::spawn(bootstrap(
            node_id,
            rafts.clone(),
            peers,
            members.clone(),
            rf,
        )),
        tokio::spawn(balance_leaders(node_id, rafts, members, rf)),
    ]
}

fn ids(members: &[MemberConfig]) -> Vec<NodeId> {
    members.iter().map(|m| m.node_id).collect()
}

async fn bootstrap(
    node_id: NodeId,
    rafts: Vec<Raft<TypeConfig>>,
    peers: Peers,
    members: Vec<MemberConfig>,
    rf: u32,
) {
    let ids = ids(&members);
    let mut todo: Vec<PartitionId> = Vec::new();
    for (p, raft) in rafts.iter().enumerate() {
        let reps = placement::replicas(p as PartitionId, &ids, rf);
        if reps.iter().min() == Some(&node_id) && !raft.is_initialized().await.unwrap_or(true) {
            todo.push(p as PartitionId);
        }
    }
    if todo.is_empty() {
        return;
    }
    let started = Instant::now();
    let mut said = false;
    loop {
        let mut waiting_for = Vec::new();
        let mut taken: BTreeSet<PartitionId> = BTreeSet::new();
        for &m in ids.iter().filter(|&&m| m != node_id) {
            match peers
                .call::<(), ClusterInfo>(m, KIND_CLUSTER_INFO, &(), None)
                .await
            {
                Ok(info) => taken.extend(
                    todo.iter()
                        .copied()
                        .filter(|&p| info.initialized.get(p as usize).copied().unwrap_or(false)),
                ),
                Err(e) => waiting_for.push(format!("node {m} ({e})")),
            }
        }
        if waiting_for.is_empty() {
            let addr: BTreeMap<NodeId, String> = members
                .iter()
                .map(|m| (m.node_id, m.addr.clone()))
                .collect();
            let mut n = 0;
            for &p in &todo {
                if taken.contains(&p) {
                    continue;
                }
                let raft = &rafts[p as usize];
                if raft.is_initialized().await.unwrap_or(true) {
                    continue;
                }
                let nodes: BTreeMap<NodeId, BasicNode> = placement::replicas(p, &ids, rf)
                    .into_iter()
                    .map(|n| (n, BasicNode::new(&addr[&n])))
                    .collect();
                match raft.initialize(nodes).await {
                    Ok(()) => n += 1,
                    Err(e) => {
                        tracing::warn!(partition = p, error = %e, "initializing the partition group failed")
                    }
                }
            }
            tracing::info!(
                initialized = n,
                already_initialized_elsewhere = taken.len(),
                waited_ms = started.elapsed().as_millis() as u64,
                "cluster bootstrap done"
            );
            return;
        }
        if !said || started.elapsed() > Duration::from_secs(30) {
            tracing::info!(waiting_for = ?waiting_for, "bootstrap waits until every member answers");
            said = true;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn balance_leaders(
    node_id: NodeId,
    rafts: Vec<Raft<TypeConfig>>,
    members: Vec<MemberConfig>,
    rf: u32,
) {
    let ids = ids(&members);
    let preferred: Vec<PartitionId> = (0..rafts.len() as PartitionId)
        .filter(|&p| placement::replicas(p, &ids, rf).first() == Some(&node_id))
        .collect();
    // how long each partition has looked stable (same leader) from here
    let mut stable_since: BTreeMap<PartitionId, (Option<NodeId>, Instant)> = BTreeMap::new();
    loop {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        for &p in &preferred {
            let m = rafts[p as usize].metrics().borrow().clone();
            let entry = stable_since
                .entry(p)
                .or_insert((m.current_leader, Instant::now()));
            if entry.0 != m.current_leader {
                *entry = (m.current_leader, Instant::now());
            }
            let caught_up =
                m.last_log_index.is_some() && m.last_applied.map(|l| l.index) == m.last_log_index;
            if m.state == ServerState::Follower
                && m.current_leader.is_some_and(|l| l != node_id)
                && caught_up
                && entry.1.elapsed() >= Duration::from_secs(3)
            {
                tracing::info!(partition = p, from = ?m.current_leader, "taking back leadership as preferred leader");
                let _ = rafts[p as usize].trigger().elect().await;
                entry.1 = Instant::now();
                break; // one per round
            }
        }
    }
}

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
}

/// One partition as this node sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionStatus {
    /// The partition.
    pub partition: PartitionId,
    /// Its replica set by placement, preferred leader first.
    pub replicas: Vec<NodeId>,
    /// Its leader, if known here.
    pub leader: Option<NodeId>,
    /// This node's role in its group.
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
    /// Members (this node alone in single-node mode).
    pub members: Vec<MemberStatus>,
    /// Every partition.
    pub partitions: Vec<PartitionStatus>,
}

impl crate::Partitions {
    /// The cluster as this node sees it; members are pinged (bounded by a short timeout).
    pub async fn status(&self) -> ClusterStatus {
        let me = self.node_id();
        let members: Vec<MemberConfig> = if self.members().is_empty() {
            Vec::new()
        } else {
            self.members().to_vec()
        };
        let pings = members.iter().map(|m| {
            let peers = self.peers().clone();
            let m = m.clone();
            async move {
                let (up, error) = if m.node_id == me {
                    (true, None)
                } else {
                    match peers
                        .call::<(), ClusterInfo>(
                            m.node_id,
                            KIND_CLUSTER_INFO,
                            &(),
                            Some(Duration::from_millis(300)),
                        )
                        .await
                    {
                        Ok(_) => (true, None),
                        Err(e) => (false, Some(e.to_string())),
                    }
                };
                MemberStatus {
                    node_id: m.node_id,
                    addr: m.addr,
                    http_addr: m.http_addr,
                    up,
                    error,
                }
            }
        });
        let mut members: Vec<MemberStatus> = futures::future::join_all(pings).await;
        if members.is_empty() {
            members.push(MemberStatus {
                node_id: me,
                addr: String::new(),
                http_addr: String::new(),
                up: true,
                error: None,
            });
        }
        let partitions = (0..self.count())
            .filter_map(|p| {
                let m = self.metrics(p).ok()?.borrow().clone();
                Some(PartitionStatus {
                    partition: p,
                    replicas: self.replicas(p),
                    leader: m.current_leader,
                    role: format!("{:?}", m.state),
                    term: m.current_term,
                    last_log_index: m.last_log_index,
                    applied_index: m.last_applied.map(|l| l.index),
                })
            })
            .collect();
        ClusterStatus {
            node_id: me,
            members,
            partitions,
        }
    }
}
