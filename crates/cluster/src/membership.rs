//! Membership: the metadata group, joins and removals, moving replicas, and where leaders are.
//!
//! - **The metadata group** is one more Raft group next to the partitions (group id = the
//!   partition count). Its state holds the [`Membership`]; its voters come from placement like a
//!   partition's, and every other member follows it as a learner, so each member reads the
//!   membership locally (`Ctx::membership`).
//! - **Changes** (join, remove) run on the metadata group's leader, one at a time, after a read
//!   barrier, as one command fenced to the leader's term; any member forwards them there (one hop).
//! - **Reconciling**: the leader of each group compares the group's Raft membership with
//!   placement over the current members. A node that placement adds is added as a learner and
//!   caught up (by snapshot when the log was purged); once it is close to the leader's log the
//!   voter set is replaced (joint consensus), which drops the replica that placement removed. A
//!   leader that removes itself steps down once the new configuration commits. So only the
//!   groups whose replica set changes move, one learner catch-up each.
//! - **Leaders elsewhere**: a node answers requests for partitions it does not host by
//!   forwarding them; it learns their leaders from the members that host them (polled).

use crate::barrier::{read_barrier, BarrierError};
use crate::ctx::{Ctx, LeaderHint};
use crate::info::reported_leader;
use crate::transport::{Kind, RemoteError, Rpc, Service};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, Raft, RaftMetrics, ServerState};
use perdure_storage::TypeConfig;
use perdure_types::command::{Command, Op, OpResult, Proposal};
use perdure_types::config::MemberConfig;
use perdure_types::membership::{ChangeError, Membership};
use perdure_types::subscription::{SubscriptionChange, Subscriptions};
use perdure_types::{codec, NodeId, PartitionId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

pub use crate::ctx::GroupView;

/// A learner within this many entries of the leader's log counts as caught up.
const CAUGHT_UP_LAG: u64 = 256;

/// A change of the membership.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MetaChange {
    /// The founding members (only while the membership is still empty).
    Found(Vec<MemberConfig>),
    /// Every partition's group exists.
    Bootstrapped,
    /// A node joins (or updates its addresses).
    Join(MemberConfig),
    /// A member leaves for good.
    Remove(NodeId),
    /// A stream subscription is created, replaced, paused, resumed or deleted (the metadata
    /// group holds the cluster's subscriptions beside the membership): the
    /// [`SubscriptionChange`] as JSON, as the subscriptions are stored (their optional fields
    /// are left out when absent, which the codec's positional format cannot carry).
    Subscription(Vec<u8>),
}

/// What the metadata group holds after a change: the membership, or the subscriptions (as
/// their JSON encoding: they are stored as JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MetaValue {
    /// After a membership change.
    Membership(Membership),
    /// After a subscription change (JSON, [`Subscriptions::decode`]).
    Subscriptions(Vec<u8>),
}

/// A membership change for the metadata group's leader ([`Kind::Meta`]).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct MetaRequest {
    change: MetaChange,
    /// Sent by a member that is not the leader: the receiver must not forward again.
    forwarded: bool,
}

impl Rpc for MetaRequest {
    const KIND: Kind = Kind::Meta;
    type Reply = Result<MetaValue, MetaError>;
}

/// "Call an election for group G" ([`Kind::Elect`]): a leader leaving the group hands leadership
/// over. The answer says whether this node called one.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct ElectRequest(pub PartitionId);

impl Rpc for ElectRequest {
    const KIND: Kind = Kind::Elect;
    type Reply = bool;
}

/// Why a membership change did not happen.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub enum MetaError {
    /// The change is not allowed (the membership is unchanged).
    #[error("{0}")]
    Refused(String),
    /// No leader could take it now; retry.
    #[error("membership change not possible now: {0}; retry")]
    Unavailable(String),
}

impl Ctx {
    /// Applies a membership `change` on the metadata leader, wherever it is.
    pub async fn change(&self, change: MetaChange) -> Result<Membership, MetaError> {
        match self.change_at(change, false).await? {
            MetaValue::Membership(m) => Ok(m),
            MetaValue::Subscriptions(_) => Err(MetaError::Unavailable(
                "the metadata leader answered another kind of change".into(),
            )),
        }
    }

    /// Applies a subscription `change` on the metadata leader, wherever it is; answers the
    /// subscriptions after it.
    pub async fn change_subscriptions(
        &self,
        change: SubscriptionChange,
    ) -> Result<Subscriptions, MetaError> {
        let change = serde_json::to_vec(&change)
            .map_err(|e| MetaError::Unavailable(format!("encoding a subscription change: {e}")))?;
        match self
            .change_at(MetaChange::Subscription(change), false)
            .await?
        {
            MetaValue::Subscriptions(bytes) => {
                Subscriptions::decode(&bytes).map_err(MetaError::Unavailable)
            }
            MetaValue::Membership(_) => Err(MetaError::Unavailable(
                "the metadata leader answered another kind of change".into(),
            )),
        }
    }

    async fn change_at(&self, change: MetaChange, forwarded: bool) -> Result<MetaValue, MetaError> {
        let m = self.meta().metrics().borrow().clone();
        if m.state == ServerState::Leader {
            return self.change_here(change).await;
        }
        if forwarded {
            return Err(MetaError::Unavailable(format!(
                "node {} does not lead the metadata group",
                self.node_id
            )));
        }
        let Some(leader) = m.current_leader.filter(|&l| l != self.node_id) else {
            return Err(MetaError::Unavailable(
                "the metadata group has no leader known here".into(),
            ));
        };
        self.send_change(leader, change, true).await
    }

    /// Sends `change` to node `to`; `forwarded`: `to` must apply it itself (it leads the
    /// metadata group), else it may forward it once to the leader.
    async fn send_change(
        &self,
        to: NodeId,
        change: MetaChange,
        forwarded: bool,
    ) -> Result<MetaValue, MetaError> {
        let req = MetaRequest { change, forwarded };
        self.peers
            .rpc(to, &req, None)
            .await
            .map_err(|e| MetaError::Unavailable(format!("asking node {to}: {e}")))?
    }

    async fn change_here(&self, change: MetaChange) -> Result<MetaValue, MetaError> {
        let _one_at_a_time = self.change_lock.lock().await;
        let raft = self.meta();
        match read_barrier(raft, self.meta_resumed.as_ref()).await {
            Ok(()) => {}
            Err(BarrierError::NotLeader(_)) => {
                return Err(MetaError::Unavailable("leadership moved".into()))
            }
            Err(BarrierError::Unavailable(e)) => return Err(MetaError::Unavailable(e)),
        }
        let term = raft.metrics().borrow().current_term;
        let current = self.read_local().map_err(MetaError::Unavailable)?;
        let refused = |e: ChangeError| MetaError::Refused(e.to_string());
        let next = match &change {
            MetaChange::Found(members) => current.found(members),
            MetaChange::Bootstrapped => current.mark_bootstrapped(),
            MetaChange::Join(m) => current.join(m.clone()).map_err(refused)?,
            MetaChange::Remove(id) => Some(current.remove(*id, self.rf).map_err(refused)?),
            MetaChange::Subscription(c) => {
                let c: SubscriptionChange = serde_json::from_slice(c).map_err(|e| {
                    MetaError::Refused(format!("an undecodable subscription change: {e}"))
                })?;
                return self.subscriptions_here(term, &c).await;
            }
        };
        let Some(next) = next else {
            return Ok(MetaValue::Membership(current));
        };
        let state = codec::encode(&next).map_err(|e| MetaError::Unavailable(e.to_string()))?;
        self.write_meta(term, Membership::entity(), state).await?;
        tracing::info!(?change, version = next.version, members = ?next.ids(), "membership changed");
        Ok(MetaValue::Membership(next))
    }

    /// A subscription change on the metadata leader (after its barrier, under the change lock).
    async fn subscriptions_here(
        &self,
        term: u64,
        c: &SubscriptionChange,
    ) -> Result<MetaValue, MetaError> {
        let current = self.read_subscriptions().map_err(MetaError::Unavailable)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let next = current
            .apply(c, now)
            .map_err(|e| MetaError::Refused(e.to_string()))?;
        let Some((next, _)) = next else {
            return Ok(MetaValue::Subscriptions(current.encode()));
        };
        let state = next.encode();
        self.write_meta(term, Subscriptions::entity(), state.clone())
            .await?;
        tracing::info!(?c, version = next.version, "subscriptions changed");
        Ok(MetaValue::Subscriptions(state))
    }

    /// Writes one value of the metadata group, fenced to `term`.
    async fn write_meta(
        &self,
        term: u64,
        entity: perdure_types::EntityId,
        state: Vec<u8>,
    ) -> Result<(), MetaError> {
        let raft = self.meta();
        let command = Command::single(Op::SetState { entity, state }).fenced(term);
        match raft.client_write(Proposal::from(command)).await {
            Ok(resp) => {
                let skipped = resp
                    .data
                    .results
                    .first()
                    .and_then(|r| r.first())
                    .is_some_and(|r| matches!(r, OpResult::Skipped));
                if skipped {
                    return Err(MetaError::Unavailable("leadership moved".into()));
                }
                Ok(())
            }
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                Err(MetaError::Unavailable("leadership moved".into()))
            }
            Err(e) => Err(MetaError::Unavailable(e.to_string())),
        }
    }
}

/// Asks member `via` to put `change` to the metadata leader (it forwards it there).
pub(crate) async fn ask(
    ctx: &Ctx,
    via: NodeId,
    change: MetaChange,
) -> Result<Membership, MetaError> {
    match ctx.send_change(via, change, false).await? {
        MetaValue::Membership(m) => Ok(m),
        MetaValue::Subscriptions(_) => Err(MetaError::Unavailable(
            "the metadata leader answered another kind of change".into(),
        )),
    }
}

/// Serves [`MetaRequest`]s: applies the change here if this node leads the metadata group, else
/// forwards it there once.
pub(crate) struct MetaService(pub Ctx);

impl Service for MetaService {
    type Request = MetaRequest;

    async fn call(
        &self,
        _from: NodeId,
        req: MetaRequest,
    ) -> Result<Result<MetaValue, MetaError>, RemoteError> {
        Ok(self.0.change_at(req.change, req.forwarded).await)
    }
}

/// Serves [`ElectRequest`]s: calls an election for the group if this node is a follower voter of
/// it.
pub(crate) struct ElectService(pub Ctx);

impl Service for ElectService {
    type Request = ElectRequest;

    async fn call(
        &self,
        _from: NodeId,
        ElectRequest(g): ElectRequest,
    ) -> Result<bool, RemoteError> {
        let ctx = &self.0;
        let raft = ctx
            .rafts
            .get(g as usize)
            .ok_or_else(|| RemoteError::handler("no such group"))?;
        let m = raft.metrics().borrow().clone();
        let voter = m
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == ctx.node_id);
        let go = voter && m.state == ServerState::Follower;
        if go {
            tracing::info!(group = g, "taking over leadership from a leaving leader");
            raft.trigger()
                .elect()
                .await
                .map_err(|e| RemoteError::handler(e.to_string()))?;
        }
        Ok(go)
    }
}

/// Says hello to every other member (and seed) once at start: the connection it opens lets each
/// of them retry its own connection to this node at once ([`crate::transport::Services`]'
/// `peer_connected`), so the leaders' heartbeats reach a restarted replica before its election
/// timeout (1.2 s and more for a node that voted), instead of after their reconnect backoff (up
/// to 2 s): it rejoins as a follower instead of campaigning with a higher term and deposing them
/// (openraft 0.9 has no pre-vote).
pub(crate) async fn hello(ctx: Ctx) {
    let answered = ctx
        .others_infos(Duration::from_millis(800), true)
        .await
        .len();
    tracing::debug!(answered, "said hello to the other members");
}

/// Keeps [`Ctx::membership`] equal to the metadata group's applied state, and peers' addresses
/// current.
pub(crate) async fn follow(ctx: Ctx) {
    let mut metrics = ctx.meta().metrics();
    let mut applied = None;
    loop {
        let now = metrics.borrow_and_update().last_applied;
        if now != applied {
            applied = now;
            match ctx.read_local() {
                Ok(m) => {
                    for member in &m.members {
                        if member.node_id != ctx.node_id {
                            ctx.peers.set_address(member.node_id, member.addr.clone());
                        }
                    }
                    ctx.membership.send_if_modified(|cur| {
                        if *cur == m {
                            return false;
                        }
                        tracing::info!(version = m.version, members = ?m.ids(), removed = ?m.removed, "membership applied");
                        *cur = m;
                        true
                    });
                    ctx.refresh_table();
                }
                Err(e) => {
                    tracing::error!(error = %e, "the membership in the metadata group is unreadable")
                }
            }
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// The target configuration of group `g`: voters, and learners (only the metadata group has:
/// every other member).
fn target(ctx: &Ctx, m: &Membership, g: PartitionId) -> (BTreeSet<NodeId>, BTreeSet<NodeId>) {
    let voters: BTreeSet<NodeId> = m.replicas(g, ctx.rf).into_iter().collect();
    let learners = if g == ctx.partitions() {
        m.ids()
            .into_iter()
            .filter(|n| !voters.contains(n))
            .collect()
    } else {
        BTreeSet::new()
    };
    (voters, learners)
}

/// Moves replicas of the groups this node leads toward placement over the current members.
pub(crate) async fn reconcile(ctx: Ctx) {
    // per group: leadership handoffs tried before leaving it
    let mut handoffs: BTreeMap<PartitionId, u32> = BTreeMap::new();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let m = ctx.membership();
        if !m.bootstrapped || m.members.is_empty() {
            continue;
        }
        for g in 0..=ctx.partitions() {
            let raft = &ctx.rafts[g as usize];
            let metrics = raft.metrics().borrow().clone();
            if metrics.state != ServerState::Leader {
                continue;
            }
            if let Err(e) = reconcile_group(&ctx, &mut handoffs, &m, g, raft, &metrics).await {
                tracing::info!(group = g, error = %e, "moving replicas: will retry");
            }
        }
    }
}

async fn reconcile_group(
    ctx: &Ctx,
    handoffs: &mut BTreeMap<PartitionId, u32>,
    m: &Membership,
    g: PartitionId,
    raft: &Raft<TypeConfig>,
    metrics: &RaftMetrics<NodeId, BasicNode>,
) -> Result<(), String> {
    let config = metrics.membership_config.membership();
    if config.get_joint_config().len() > 1 {
        return finish_joint(ctx, g, raft, config).await;
    }
    let voters: BTreeSet<NodeId> = config.voter_ids().collect();
    let learners: BTreeSet<NodeId> = config.learner_ids().collect();
    let (want_voters, want_learners) = target(ctx, m, g);
    if voters == want_voters && learners == want_learners {
        return Ok(());
    }
    let addr = |n: NodeId| m.member(n).map(|x| BasicNode::new(&x.addr));
    // 1. every node placement wants, as a learner first
    let missing: BTreeMap<NodeId, BasicNode> = want_voters
        .iter()
        .chain(&want_learners)
        .filter(|n| !voters.contains(n) && !learners.contains(n))
        .filter_map(|&n| Some((n, addr(n)?)))
        .collect();
    if !missing.is_empty() {
        tracing::info!(group = g, learners = ?missing.keys().collect::<Vec<_>>(), "adding replicas as learners");
        raft.change_membership(ChangeMembers::AddNodes(missing), true)
            .await
            .map_err(|e| e.to_string())?;
        return Ok(()); // next round: once they caught up
    }
    // 2. once the new voters caught up, replace the voter set (joint consensus)
    if voters != want_voters {
        let last = metrics.last_log_index.unwrap_or(0);
        let lagging: Vec<NodeId> = want_voters
            .iter()
            .copied()
            .filter(|n| !voters.contains(n))
            .filter(|n| {
                let matched = metrics
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(n).cloned().flatten())
                    .map(|l| l.index);
                matched.is_none_or(|i| i + CAUGHT_UP_LAG < last)
            })
            .collect();
        if !lagging.is_empty() {
            tracing::debug!(group = g, ?lagging, "new replicas still catching up");
            return Ok(());
        }
        if hand_over(ctx, handoffs, g, &voters, &want_voters, metrics).await? {
            return Ok(());
        }
        handoffs.remove(&g);
        let is_meta = g == ctx.partitions();
        tracing::info!(group = g, from = ?voters, to = ?want_voters, "replacing the voters");
        raft.change_membership(
            ChangeMembers::ReplaceAllVoters(want_voters.clone()),
            is_meta,
        )
        .await
        .map_err(|e| e.to_string())?;
        ctx.moves.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    }
    // 3. learners placement no longer wants
    let extra: BTreeSet<NodeId> = learners.difference(&want_learners).copied().collect();
    if !extra.is_empty() {
        tracing::info!(group = g, learners = ?extra, "removing learners");
        raft.change_membership(ChangeMembers::RemoveNodes(extra), false)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Group `g`'s configuration is joint (old and new voters): a voter change was started and
/// its leader changed before the second step (openraft 0.9 does not finish it under a new
/// leader). This leader finishes it: the joint configuration's last voter set becomes the whole
/// configuration. Without this, a removed node stays a voter of the group for good (found by
/// CI's chaos run: a removed leader that stepped down midway). If the change is still in
/// flight (not committed), openraft refuses and the next round retries.
async fn finish_joint(
    ctx: &Ctx,
    g: PartitionId,
    raft: &Raft<TypeConfig>,
    config: &openraft::Membership<NodeId, BasicNode>,
) -> Result<(), String> {
    let Some(last) = config.get_joint_config().last().cloned() else {
        return Ok(());
    };
    tracing::info!(group = g, to = ?last, "finishing a voter change its previous leader left half done");
    raft.change_membership(ChangeMembers::ReplaceAllVoters(last), g == ctx.partitions())
        .await
        .map_err(|e| e.to_string())?;
    ctx.moves.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Before leader `ctx.node_id` leaves group `g` (placement drops it from `want_voters`), it
/// hands leadership to a caught-up voter that stays first: the group then changes leader by one
/// quick election instead of waiting out an election timeout after this leader steps down. A few
/// tries, then it leaves anyway. Answers whether it asked an heir this round.
async fn hand_over(
    ctx: &Ctx,
    handoffs: &mut BTreeMap<PartitionId, u32>,
    g: PartitionId,
    voters: &BTreeSet<NodeId>,
    want_voters: &BTreeSet<NodeId>,
    metrics: &RaftMetrics<NodeId, BasicNode>,
) -> Result<bool, String> {
    if want_voters.contains(&ctx.node_id) || *handoffs.get(&g).unwrap_or(&0) >= 3 {
        return Ok(false);
    }
    let heir = ctx.replicas(g).into_iter().find(|n| {
        voters.contains(n)
            && metrics
                .replication
                .as_ref()
                .and_then(|r| r.get(n).cloned().flatten())
                .is_some_and(|l| Some(l.index) == metrics.last_log_index)
    });
    let Some(heir) = heir else {
        return Ok(false);
    };
    *handoffs.entry(g).or_default() += 1;
    tracing::info!(
        group = g,
        to = heir,
        "handing leadership over before leaving the group"
    );
    ctx.peers
        .rpc(heir, &ElectRequest(g), Some(Duration::from_secs(1)))
        .await
        .map_err(|e| e.to_string())?;
    Ok(true)
}

/// Learns, from the members hosting them, the leaders of the partitions this node does not host.
pub(crate) async fn track_leaders(ctx: Ctx) {
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let partitions = ctx.partitions();
        let foreign: Vec<PartitionId> = (0..partitions).filter(|&p| !ctx.hosts(p)).collect();
        if foreign.is_empty() {
            continue;
        }
        let infos = ctx.others_infos(Duration::from_millis(500), false).await;
        let mut best: Vec<LeaderHint> = vec![None; partitions as usize];
        for &p in &foreign {
            best[p as usize] = reported_leader(&infos, p, ctx.node_id);
        }
        *ctx.hints.write().unwrap_or_else(|p| p.into_inner()) = best;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use perdure_types::subscription::SubscriptionSpec;

    /// A subscription change crosses the node channel (a node that does not lead the metadata
    /// group forwards it) and comes out as it went in: definitions leave absent optional
    /// fields out, which the codec's positional format alone could not carry (a 3-node PUT was
    /// refused with `InvalidBooleanValue`).
    #[test]
    fn a_subscription_change_survives_the_node_channel() {
        let spec: SubscriptionSpec = serde_json::from_str(
            r#"{"source": {"kafka": {"brokers": ["127.0.0.1:9092"], "topic": "t"}},
                "mapping": {"entity": "counter", "key": "$key", "operation": "add"}}"#,
        )
        .unwrap();
        let change = SubscriptionChange::Put {
            name: "clicks".into(),
            spec: Box::new(spec),
        };
        let req = MetaRequest {
            change: MetaChange::Subscription(serde_json::to_vec(&change).unwrap()),
            forwarded: true,
        };
        let back: MetaRequest = codec::decode(&codec::encode(&req).unwrap()).unwrap();
        let MetaChange::Subscription(bytes) = back.change else {
            panic!("another change came out");
        };
        let got: SubscriptionChange = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(got, change);
    }
}
