//! Forming a cluster from its members' configs, joining one, and keeping its leaders spread.
//!
//! - **Founding, once**: the lowest node id among the configured seeds founds the cluster, and
//!   only after EVERY seed has answered that it holds no metadata group: a node whose data
//!   directory was wiped, restarting into a running cluster, finds its peers initialized and
//!   waits to be caught up instead of founding a second cluster. The founder initializes the
//!   metadata group, records the seeds as the members, initializes every partition's group (its
//!   replica set by placement over the seeds), then marks founding done; each step is
//!   idempotent, so a founder restarted midway finishes it. No other node ever initializes a
//!   group.
//! - **Joining**: a node that finds a running cluster (a seed answers with a membership) that
//!   does not list it asks to join; the metadata leader adds it, and the groups placement now
//!   assigns to it move there ([`crate::membership`]). A removed node id may not join again.
//! - **Leader balancing**: each group's preferred leader is the first of its replica set. A node
//!   leading fewer than its fair share (groups / members) calls an election for one group it is
//!   preferred for, caught up, and has seen stable for a while; so leaders spread and move back to
//!   a node that returns. One attempt at a time; a failed one backs that group off.

use crate::membership::{self, Ctx, GroupView, MetaChange, MetaError, MetaService, KIND_META};
use crate::raft_net::Dispatcher;
use crate::transport::{self, Handler, RemoteError, RemoteErrorCode, TransportConfig};
use openraft::{BasicNode, ServerState};
use perdure_types::config::MemberConfig;
use perdure_types::membership::Membership;
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
    /// Whether its copy of the metadata group is initialized.
    pub meta_initialized: bool,
    /// The membership as applied there (empty before it knows one).
    pub membership: Membership,
    /// Per group (the partitions, then the metadata group): the group as that node sees it,
    /// for those it hosts.
    pub views: Vec<Option<GroupView>>,
    /// Replica-set changes that node completed as a leader.
    pub moves: u64,
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

impl ClusterInfo {
    /// Group `g` as that node sees it, if it hosts it.
    pub fn view(&self, g: PartitionId) -> Option<&GroupView> {
        self.views.get(g as usize).and_then(Option::as_ref)
    }
}

/// The leader of group `g` that `infos` report at the highest term, other than `except`.
pub(crate) fn reported_leader(
    infos: &[ClusterInfo],
    g: PartitionId,
    except: NodeId,
) -> Option<(NodeId, u64)> {
    infos
        .iter()
        .filter_map(|i| i.view(g))
        .filter_map(|v| Some((v.leader.filter(|&l| l != except)?, v.term)))
        .max_by_key(|&(_, term)| term)
}

pub(crate) fn info(ctx: &Ctx) -> ClusterInfo {
    // initialized as openraft defines it (a log or a vote), read from metrics. The borrow ends
    // here: `view` below borrows the same watch again, and a second read borrow while openraft
    // waits to publish new metrics blocks behind that writer, which waits for the first: a
    // deadlock (it hung a node's GET /cluster and its metadata group in CI).
    let meta_initialized = {
        let m = ctx.meta().metrics();
        let m = m.borrow();
        m.last_log_index.is_some() || m.vote != openraft::Vote::default()
    };
    ClusterInfo {
        node_id: ctx.node_id,
        meta_initialized,
        membership: ctx.membership(),
        views: (0..=ctx.partitions()).map(|g| ctx.view(g)).collect(),
        moves: ctx.moves.load(std::sync::atomic::Ordering::Relaxed),
    }
}

struct InfoService(Ctx);

impl Handler for InfoService {
    fn handle(
        &self,
        _from: NodeId,
        _kind: u16,
        _body: Vec<u8>,
    ) -> futures::future::BoxFuture<'static, Result<Vec<u8>, RemoteError>> {
        let ctx = self.0.clone();
        Box::pin(async move {
            codec::encode(&info(&ctx)).map_err(|e| RemoteError {
                code: RemoteErrorCode::Handler,
                message: e.to_string(),
            })
        })
    }
}

/// Registers the cluster services and starts formation, membership and balancing tasks.
pub(crate) fn start(ctx: Ctx, dispatcher: &Dispatcher) -> Vec<JoinHandle<()>> {
    dispatcher.register(KIND_CLUSTER_INFO, Arc::new(InfoService(ctx.clone())));
    dispatcher.register(KIND_META, Arc::new(MetaService(ctx.clone())));
    dispatcher.register(
        membership::KIND_ELECT,
        Arc::new(membership::ElectService(ctx.clone())),
    );
    vec![
        tokio::spawn(membership::follow(ctx.clone())),
        tokio::spawn(membership::hello(ctx.clone())),
        tokio::spawn(bootstrap(ctx.clone())),
        tokio::spawn(membership::reconcile(ctx.clone())),
        tokio::spawn(membership::track_leaders(ctx.clone())),
        tokio::spawn(balance_leaders(ctx)),
    ]
}

/// Initial voters of group `g` at founding: its replicas by placement over the founding
/// members, plus the founder (which must be one to initialize it; reconciling drops it later).
fn founding_voters(ctx: &Ctx, g: PartitionId) -> BTreeMap<NodeId, BasicNode> {
    let ids: Vec<NodeId> = ctx.seeds.iter().map(|m| m.node_id).collect();
    let addr: BTreeMap<NodeId, &str> = ctx
        .seeds
        .iter()
        .map(|m| (m.node_id, m.addr.as_str()))
        .collect();
    let mut voters = placement::replicas(g, &ids, ctx.rf);
    if !voters.contains(&ctx.node_id) {
        voters.push(ctx.node_id);
    }
    voters
        .into_iter()
        .map(|n| (n, BasicNode::new(addr.get(&n).copied().unwrap_or_default())))
        .collect()
}

/// Founds the cluster (once, by the lowest seed id, after every seed answered that it holds
/// nothing), or joins a running one, or finishes an interrupted founding.
async fn bootstrap(ctx: Ctx) {
    let me = ctx.node_id;
    let founder = ctx.seeds.iter().map(|m| m.node_id).min() == Some(me);
    let started = Instant::now();
    let mut said = Instant::now() - Duration::from_secs(3600);
    loop {
        let local = ctx.membership();
        let meta_here = ctx.meta().is_initialized().await.unwrap_or(true);
        if meta_here && local.member(me).is_some() {
            ctx.set_formation(None);
            if local.bootstrapped {
                return;
            }
            if founder {
                found_partitions(&ctx).await;
                continue;
            }
        }
        let removed = |why: String| {
            tracing::error!("{why}");
            ctx.set_formation(Some(why));
        };
        if meta_here && local.removed.contains(&me) {
            return removed(format!(
                "node {me} was removed from the cluster; it serves nothing (stop it)"
            ));
        }
        // ask the seeds and known members what they hold
        let mut asked: BTreeSet<NodeId> = ctx.seeds.iter().map(|m| m.node_id).collect();
        asked.extend(local.ids());
        asked.remove(&me);
        let mut waiting_for = Vec::new();
        let mut running: Option<(NodeId, Membership)> = None;
        for (n, answer) in ctx.ask_infos(asked, Duration::from_secs(1)).await {
            match answer {
                Ok(info) if info.meta_initialized => {
                    if !info.membership.members.is_empty()
                        && running
                            .as_ref()
                            .is_none_or(|(_, m)| m.version < info.membership.version)
                    {
                        running = Some((n, info.membership));
                    } else if running.is_none() {
                        waiting_for.push(format!("node {n} (founding in progress)"));
                    }
                }
                Ok(_) => {}
                Err(e) => waiting_for.push(format!("node {n} ({e})")),
            }
        }
        let waiting = if let Some((n, cluster)) = running {
            if cluster.removed.contains(&me) {
                return removed(format!("node {me} was removed from the cluster and may not join again; start it with a new node_id and an empty data directory"));
            }
            if cluster.member(me).is_none() {
                let mine = ctx.seeds.iter().find(|m| m.node_id == me).cloned();
                if let Some(mine) = mine {
                    match membership::ask(&ctx, n, MetaChange::Join(mine)).await {
                        Ok(_) => {
                            tracing::info!(via = n, "joined the cluster; replicas move here now")
                        }
                        Err(MetaError::Refused(reason)) => {
                            return removed(format!("the cluster refused node {me}: {reason}"));
                        }
                        Err(e) => tracing::info!(error = %e, "joining: will retry"),
                    }
                }
            }
            format!("joining the running cluster (via node {n}); waiting for its membership")
        } else if waiting_for.is_empty() && founder && !meta_here {
            found(&ctx).await;
            continue;
        } else if waiting_for.is_empty() {
            "formation waits for the founder (the lowest seed id) to found the cluster".to_string()
        } else {
            format!("formation waits for seeds: {}", waiting_for.join(", "))
        };
        ctx.set_formation(Some(waiting));
        if said.elapsed() > Duration::from_secs(30) {
            tracing::info!(waiting_for = ?waiting_for, waited_ms = started.elapsed().as_millis() as u64,
                "formation: waiting for the cluster (founding needs every seed to answer; joining needs a running member)");
            said = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Founds the cluster: the metadata group, the founding members, then every partition.
async fn found(ctx: &Ctx) {
    let meta = ctx.partitions();
    let voters = founding_voters(ctx, meta);
    match ctx.meta().initialize(voters).await {
        Ok(()) => {
            tracing::info!(seeds = ?ctx.seeds.iter().map(|m| m.node_id).collect::<Vec<_>>(), "founding the cluster")
        }
        Err(e) => {
            tracing::warn!(error = %e, "initializing the metadata group failed");
            return;
        }
    }
    found_partitions(ctx).await;
}

/// The founder's part after the metadata group exists: the member list, each partition's group,
/// then the mark that founding is done. Every step is idempotent, so a founder restarted midway
/// finishes it.
async fn found_partitions(ctx: &Ctx) {
    let started = Instant::now();
    loop {
        match ctx.change(MetaChange::Found(ctx.seeds.clone())).await {
            Ok(_) => break,
            Err(e) => {
                if started.elapsed() > Duration::from_secs(30) {
                    tracing::warn!(error = %e, "founding: recording the members still fails");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let mut n = 0;
    for p in 0..ctx.partitions() {
        let raft = &ctx.rafts[p as usize];
        if raft.is_initialized().await.unwrap_or(true) {
            continue;
        }
        match raft.initialize(founding_voters(ctx, p)).await {
            Ok(()) => n += 1,
            Err(e) => {
                tracing::warn!(partition = p, error = %e, "initializing the partition group failed")
            }
        }
    }
    loop {
        match ctx.change(MetaChange::Bootstrapped).await {
            Ok(_) => break,
            Err(e) => {
                tracing::debug!(error = %e, "founding: marking done");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    tracing::info!(
        initialized = n,
        took_ms = started.elapsed().as_millis() as u64,
        "cluster founded"
    );
}

/// What the balancer saw of one group.
struct Stable {
    leader: Option<NodeId>,
    leader_since: Instant,
    log: Option<u64>,
    log_since: Instant,
}

/// How long the balancer leaves a group alone after `failures` failed attempts in a row to take
/// back its leadership: 10 s, doubling, at most 5 min.
fn balance_backoff(failures: u32) -> Duration {
    let doublings = failures.clamp(1, 6) - 1;
    Duration::from_secs(10 << doublings).min(Duration::from_secs(300))
}

/// How a node takes back leadership of the groups it is preferred for. openraft 0.9 has no
/// leadership transfer: the preferred node calls an election, which deposes the leader and costs
/// the group about an election timeout, and under load it often fails (the old leader, with the
/// longest log, wins again). So the balancer takes back an idle group (no new entries for 3 s:
/// the move costs nothing) it is preferred for, but a busy one only while it leads fewer than its
/// fair share (`groups / members`), one group at a time; a group whose attempt failed waits
/// longer before the next (10 s doubling to 5 min).
async fn balance_leaders(ctx: Ctx) {
    let me = ctx.node_id;
    // per group, from here: since when the leader is the same, and since when its log is too
    let mut stable_since: BTreeMap<PartitionId, Stable> = BTreeMap::new();
    // per group: failed attempts in a row, and no attempt before
    let mut backoff: BTreeMap<PartitionId, (u32, Instant)> = BTreeMap::new();
    let mut last_attempt: Option<(PartitionId, Instant)> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        if !ctx.membership().bootstrapped {
            continue;
        }
        let groups = ctx.partitions() + 1;
        let members = ctx.member_ids().len().max(1) as u32;
        let leading = ctx
            .rafts
            .iter()
            .filter(|r| r.metrics().borrow().state == ServerState::Leader)
            .count() as u32;
        // the previous attempt: won, or failed (back off that group)
        if let Some((g, at)) = last_attempt {
            if ctx.rafts[g as usize].metrics().borrow().state == ServerState::Leader {
                backoff.remove(&g);
                last_attempt = None;
            } else if at.elapsed() >= Duration::from_secs(5) {
                let e = backoff.entry(g).or_insert((0, Instant::now()));
                e.0 += 1;
                let wait = balance_backoff(e.0);
                e.1 = Instant::now() + wait;
                tracing::info!(
                    group = g,
                    retry_in_s = wait.as_secs(),
                    "taking back leadership failed; backing off"
                );
                last_attempt = None;
            }
        }
        if last_attempt.is_some() {
            continue;
        }
        let below_fair_share = leading < groups / members;
        for g in 0..groups {
            if ctx.replicas(g).first() != Some(&me) {
                continue;
            }
            let m = ctx.rafts[g as usize].metrics().borrow().clone();
            let now = Instant::now();
            let entry = stable_since.entry(g).or_insert(Stable {
                leader: m.current_leader,
                leader_since: now,
                log: m.last_log_index,
                log_since: now,
            });
            if entry.leader != m.current_leader {
                (entry.leader, entry.leader_since) = (m.current_leader, now);
            }
            if entry.log != m.last_log_index {
                (entry.log, entry.log_since) = (m.last_log_index, now);
            }
            let settled = Duration::from_secs(3);
            let idle = entry.log_since.elapsed() >= settled;
            if backoff
                .get(&g)
                .is_some_and(|(_, until)| Instant::now() < *until)
            {
                continue;
            }
            let voter = m
                .membership_config
                .membership()
                .voter_ids()
                .any(|v| v == me);
            let caught_up =
                m.last_log_index.is_some() && m.last_applied.map(|l| l.index) == m.last_log_index;
            if m.state == ServerState::Follower
                && voter
                && m.current_leader.is_some_and(|l| l != me)
                && caught_up
                && entry.leader_since.elapsed() >= settled
                && (idle || below_fair_share)
            {
                tracing::info!(group = g, from = ?m.current_leader, leading, idle, "taking back leadership as preferred leader");
                let _ = ctx.rafts[g as usize].trigger().elect().await;
                entry.leader_since = Instant::now();
                last_attempt = Some((g, Instant::now()));
                break; // one at a time
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

impl crate::Partitions {
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
            (Some(m), v) if v.is_none() || m.current_leader == Some(me) => {
                membership::group_view(m)
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_balancer_backs_off_from_10_s_doubling_to_5_min() {
        let secs: Vec<u64> = (1..=8).map(|n| balance_backoff(n).as_secs()).collect();
        assert_eq!(secs, [10, 20, 40, 80, 160, 300, 300, 300]);
    }
}
