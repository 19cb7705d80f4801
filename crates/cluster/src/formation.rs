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

use crate::ctx::Ctx;
use crate::info::InfoService;
use crate::membership::{self, ElectService, MetaChange, MetaError, MetaService};
use crate::transfer::{Gates, TransferRequest, TransferService};
use crate::transport::{DuplicateService, Services};
use openraft::{BasicNode, ServerState};
use perdure_types::membership::Membership;
use perdure_types::{placement, NodeId, PartitionId};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Adds the services a clustered node offers its peers: what it holds, membership changes,
/// elections handed over, and leadership handed over on request.
pub(crate) fn add_services(
    ctx: &Ctx,
    gates: &Gates,
    services: &mut Services,
) -> Result<(), DuplicateService> {
    services.add(InfoService(ctx.clone()))?;
    services.add(MetaService(ctx.clone()))?;
    services.add(ElectService(ctx.clone()))?;
    services.add(TransferService {
        ctx: ctx.clone(),
        gates: gates.clone(),
    })
}

/// Starts the formation, membership and balancing tasks.
pub(crate) fn start(ctx: Ctx) -> Vec<JoinHandle<()>> {
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

/// How a node takes back leadership of the groups it is preferred for: it asks the leader to hand
/// the group over ([`crate::transfer`]: the leader pauses the group's writes until this node has
/// caught up and won an election, a pause of well under a second). The balancer takes back an
/// idle group (no new entries for 3 s) it is preferred for, and a busy one only while it leads
/// fewer than its fair share (`groups / members`), one group at a time; a group whose attempt
/// failed waits longer before the next (10 s doubling to 5 min).
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
                if let Some(leader) = m.current_leader {
                    // the leader pauses the group's writes until this node caught up and won
                    let asked = ctx
                        .peers
                        .rpc(leader, &TransferRequest(g), Some(Duration::from_secs(8)))
                        .await;
                    match asked {
                        Ok(Ok(_)) => {}
                        Ok(Err(why)) => {
                            tracing::info!(group = g, %why, "the leader did not hand over")
                        }
                        Err(e) => {
                            tracing::info!(group = g, error = %e, "asking the leader to hand over failed")
                        }
                    }
                }
                entry.leader_since = Instant::now();
                last_attempt = Some((g, Instant::now()));
                break; // one at a time
            }
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
