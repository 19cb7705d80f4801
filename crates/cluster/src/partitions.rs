//! [`Partitions`]: the Raft groups of one node.

use crate::barrier::{read_barrier, BarrierError, Resumed};
use crate::ctx::Ctx;
use crate::formation;
use crate::log_bounds::{self, Bounds, Watched};
use crate::membership::{MetaChange, MetaError};
use crate::peer_server::PeerServer;
use crate::raft_net::{RaftService, TransportNetwork};
use crate::transfer::Gates;
use crate::transport::{ChannelTls, Kind, Peers, Service, Services, TransportConfig};
use crate::Error;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Raft, ServerState, SnapshotPolicy};
use perdure_storage::log_store::HeldLog;
use perdure_storage::state::PartitionState;
use perdure_storage::{NodeStore, TypeConfig};
use perdure_types::command::{Command, OpResult, Proposal, ProposalResult};
use perdure_types::config::NodeConfig;
use perdure_types::membership::Membership;
use perdure_types::subscription::{SubscriptionChange, Subscriptions};
use perdure_types::{partition, EntityId, NodeId, PartitionId};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// One partition's Raft group and a handle on its state for reads.
struct Group {
    raft: Raft<TypeConfig>,
    state: PartitionState,
    /// Its log as held in memory, for bounding its weight ([`crate::log_bounds`]).
    held: HeldLog,
    /// Set when this node restarted as the group's leader (see [`Resumed`]).
    resumed: Option<Resumed>,
}

/// The set of partition groups on this node: start, route, read, stop.
pub struct Partitions {
    /// This node.
    node_id: NodeId,
    /// The data partitions' groups, then (in cluster mode) the metadata group.
    groups: Vec<Group>,
    /// The node's storage (WAL, state trees, snapshots), released at shutdown.
    store: NodeStore,
    /// Connections to the other nodes (none in single-node mode).
    peers: Peers,
    /// What this node serves to its peers: built by [`Partitions::open`] and
    /// [`Partitions::add_service`], run by [`Partitions::serve`].
    server: PeerServer,
    /// What the cluster tasks share (membership, leader hints); `None` in single-node mode.
    ctx: Option<Ctx>,
    /// One write gate per group: proposals pass it, a leadership transfer closes it
    /// ([`crate::transfer`]).
    gates: Gates,
    /// Background tasks (transport server, formation, leader balancing), started by
    /// [`Partitions::serve`] and stopped at shutdown.
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// The task bounding the logs held in memory by bytes ([`crate::log_bounds`]), started
    /// with the groups (a restart over a heavy log is bounded at once).
    log_bounds: tokio::task::JoinHandle<()>,
    /// Subscription changes one at a time in single-node mode (the metadata leader has its own
    /// lock in cluster mode).
    subscriptions_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Partitions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partitions")
            .field("node_id", &self.node_id)
            .field("partitions", &self.groups.len())
            .finish_non_exhaustive()
    }
}

fn raft_config(config: &NodeConfig, partition: PartitionId) -> Result<openraft::Config, Error> {
    let r = &config.raft;
    let cluster_name = if partition == config.partitions {
        "perdure-meta".to_string()
    } else {
        format!("perdure-p{partition}")
    };
    openraft::Config {
        cluster_name,
        heartbeat_interval: r.heartbeat_interval_ms,
        election_timeout_min: r.election_timeout_min_ms,
        election_timeout_max: r.election_timeout_max_ms,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(r.snapshot_every_entries),
        max_in_snapshot_log_to_keep: r.keep_entries_after_snapshot,
        ..Default::default()
    }
    .validate()
    .map_err(|e| Error::Config(e.to_string()))
}

/// Starts every partition's group (and, in cluster mode, the metadata group after them), pushing
/// each onto `groups` as it starts.
async fn start_groups(
    config: &NodeConfig,
    store: &mut NodeStore,
    groups: &mut Vec<Group>,
    peers: &Peers,
) -> Result<(), Error> {
    let node = BasicNode::new(&config.http_addr);
    let single = config.cluster.members.is_empty();
    let groups_total = store.partitions() + u32::from(!single);
    for p in 0..groups_total {
        let (log, sm) = store.open_partition(p)?;
        let state = sm.reader();
        let held = log.held();
        let resumed = Resumed::of(config.node_id, &log);
        if let Some(r) = &resumed {
            tracing::info!(group = p, vote = %r.vote, log_end = r.log_end,
                "resuming leadership held before the restart; reads wait for the log to be applied");
        }
        let unavailable = |e: &dyn std::fmt::Display| Error::Unavailable {
            partition: p,
            reason: e.to_string(),
        };
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config(config, p)?),
            TransportNetwork::new(peers.clone(), p),
            log,
            sm,
        )
        .await
        .map_err(|e| unavailable(&e))?;
        groups.push(Group {
            raft: raft.clone(),
            state,
            held,
            resumed,
        });
        if !single {
            // cluster mode: formation (crate::formation) initializes groups, once
            continue;
        }
        if !raft.is_initialized().await.map_err(|e| unavailable(&e))? {
            let members = BTreeMap::from([(config.node_id, node.clone())]);
            raft.initialize(members)
                .await
                .map_err(|e| unavailable(&e))?;
            tracing::info!(
                partition = p,
                "initialized partition group with this node as its only voter"
            );
        } else {
            let voters: Vec<u64> = raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .voter_ids()
                .collect();
            if voters == [config.node_id] {
                // Sole voter: no need to wait out an election timeout after a restart.
                raft.trigger().elect().await.map_err(|e| unavailable(&e))?;
            }
        }
    }
    Ok(())
}

impl Partitions {
    /// Opens the node's storage (recovering it) and starts every partition's group, then
    /// serves peers: [`Partitions::open`] and [`Partitions::serve`] in one, for a node that
    /// serves its peers nothing beyond Raft and the cluster's own services.
    pub async fn start(config: &NodeConfig) -> Result<Self, Error> {
        let parts = Self::open(config).await?;
        parts.serve();
        Ok(parts)
    }

    /// Opens the node's storage (recovering it), starts every partition's group and, in cluster
    /// mode, binds the peer listener without accepting yet; the services of Raft and of the
    /// cluster are in the table. Add others with [`Partitions::add_service`], then
    /// [`Partitions::serve`]. On a fresh data directory in single-node mode each group is
    /// initialized with this node as its only voter; an initialized group is never initialized
    /// again.
    pub async fn open(config: &NodeConfig) -> Result<Self, Error> {
        let c = &config.cluster;
        // Read the channel's certificates before any disk work: a bad path fails the start.
        let tls = match (&c.tls, c.members.is_empty()) {
            (Some(tls), false) => Some(
                ChannelTls::load(tls, config.node_id).map_err(|e| Error::Config(e.to_string()))?,
            ),
            _ => None,
        };
        let mut store = NodeStore::open(config)?;
        let tconf = Arc::new(TransportConfig::from_cluster(
            c,
            config.node_id,
            store.partitions(),
            tls,
        ));
        let peers = Peers::new(tconf.clone());
        for m in &c.members {
            if m.node_id != config.node_id {
                peers.set_address(m.node_id, m.addr.clone());
            }
        }
        let listener = if c.members.is_empty() {
            None
        } else {
            Some(
                tokio::net::TcpListener::bind(&c.listen_addr)
                    .await
                    .map_err(|e| {
                        Error::Config(format!("cluster.listen_addr {}: {e}", c.listen_addr))
                    })?,
            )
        };
        let mut groups = Vec::with_capacity(store.partitions() as usize);
        if let Err(e) = start_groups(config, &mut store, &mut groups, &peers).await {
            // Groups already running hold the write-ahead log: stop them before giving up the
            // directory, so nothing writes to it after the error is returned.
            for g in &groups {
                let _ = g.raft.shutdown().await;
            }
            groups.clear();
            release(store).await;
            return Err(e);
        }
        let log_bounds = log_bounds::start(
            groups
                .iter()
                .enumerate()
                .map(|(g, group)| Watched::new(g as u32, group.raft.clone(), group.held.clone()))
                .collect(),
            Bounds::from(&config.raft),
            store.metrics().log_memory,
        );
        let rafts: Vec<Raft<TypeConfig>> = groups.iter().map(|g| g.raft.clone()).collect();
        let mut services = Services::new(Some(peers.clone()));
        services.add(RaftService::new(rafts.clone()))?;
        let ctx = (!c.members.is_empty()).then(|| {
            let meta = &groups[store.partitions() as usize];
            let (state, resumed) = (meta.state.clone(), meta.resumed.clone());
            Ctx::new(config.node_id, rafts, state, resumed, peers.clone(), c)
        });
        let gates = Gates::new(groups.len());
        if let Some(ctx) = &ctx {
            formation::add_services(ctx, &gates, &mut services)?;
        }
        Ok(Self {
            node_id: config.node_id,
            groups,
            store,
            peers,
            server: PeerServer::new(tconf, listener, services),
            ctx,
            gates,
            tasks: Default::default(),
            log_bounds,
            subscriptions_lock: Default::default(),
        })
    }

    /// Adds a service this node offers its peers (forwarded client requests, ...): between
    /// [`Partitions::open`] and [`Partitions::serve`], once per kind. In single-node mode it is
    /// accepted and dropped (there are no peers).
    pub fn add_service<S: Service>(&self, service: S) -> Result<(), Error> {
        self.server.add(service)
    }

    /// The request kinds this node will serve its peers once it serves them (empty in
    /// single-node mode and once serving).
    pub fn service_kinds(&self) -> Vec<Kind> {
        self.server.kinds()
    }

    /// Starts serving peers (the table of services is fixed from here) and, in cluster mode,
    /// the formation, membership and leader-balancing tasks. A second call does nothing.
    pub fn serve(&self) {
        let Some(server) = self.server.serve() else {
            return;
        };
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.push(server);
        if let Some(ctx) = &self.ctx {
            tasks.extend(formation::start(ctx.clone()));
        }
    }

    /// Connections to the other nodes.
    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    pub(crate) fn ctx(&self) -> Option<&Ctx> {
        self.ctx.as_ref()
    }

    /// The cluster's members as replicated (the configured seeds until this node learns it;
    /// empty in single-node mode).
    pub fn members(&self) -> Vec<perdure_types::config::MemberConfig> {
        match &self.ctx {
            None => Vec::new(),
            Some(ctx) => {
                let m = ctx.membership();
                if m.members.is_empty() {
                    ctx.seeds.clone()
                } else {
                    m.members
                }
            }
        }
    }

    /// The replicated membership (`None` in single-node mode).
    pub fn membership(&self) -> Option<Membership> {
        self.ctx.as_ref().map(Ctx::membership)
    }

    /// The cluster's stream subscriptions as applied here: the metadata group's copy (every
    /// member holds one), or, in single-node mode (no metadata group), partition 0's state.
    pub fn subscriptions(&self) -> Result<Subscriptions, Error> {
        let unavailable = |p, e: String| Error::Unavailable {
            partition: p,
            reason: e,
        };
        match &self.ctx {
            Some(ctx) => ctx
                .read_subscriptions()
                .map_err(|e| unavailable(self.count(), e)),
            None => {
                let bytes = self
                    .group(0)?
                    .state
                    .entities()
                    .get(&Subscriptions::entity())
                    .map_err(|e| unavailable(0, e.to_string()))?;
                match bytes {
                    None => Ok(Subscriptions::default()),
                    Some(b) => Subscriptions::decode(&b).map_err(|e| unavailable(0, e)),
                }
            }
        }
    }

    /// Creates, replaces, pauses, resumes or deletes a stream subscription: on the metadata
    /// leader (one change at a time, fenced to its term), or in single-node mode on partition 0
    /// under this node's lock. Answers the subscriptions after the change.
    pub async fn change_subscriptions(
        &self,
        change: SubscriptionChange,
    ) -> Result<Subscriptions, MetaError> {
        if let Some(ctx) = &self.ctx {
            return ctx.change_subscriptions(change).await;
        }
        let _one_at_a_time = self.subscriptions_lock.lock().await;
        let unavailable = |e: &dyn std::fmt::Display| MetaError::Unavailable(e.to_string());
        self.read(0).await.map_err(|e| unavailable(&e))?;
        let term = self
            .metrics(0)
            .map_err(|e| unavailable(&e))?
            .borrow()
            .current_term;
        let current = self.subscriptions().map_err(|e| unavailable(&e))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let Some((next, _)) = current
            .apply(&change, now)
            .map_err(|e| MetaError::Refused(e.to_string()))?
        else {
            return Ok(current);
        };
        let command = Command::single(perdure_types::command::Op::SetState {
            entity: Subscriptions::entity(),
            state: next.encode(),
        })
        .fenced(term);
        let r = self
            .propose(0, command)
            .await
            .map_err(|e| unavailable(&e))?;
        if r.iter().any(|r| matches!(r, OpResult::Skipped)) {
            return Err(MetaError::Unavailable("leadership moved".into()));
        }
        tracing::info!(?change, version = next.version, "subscriptions changed");
        Ok(next)
    }

    /// Removes member `id` from the cluster for good: its replicas move to the other members.
    pub async fn remove_member(&self, id: NodeId) -> Result<Membership, MetaError> {
        match &self.ctx {
            None => Err(MetaError::Refused(
                "a single node has no members to remove".into(),
            )),
            Some(ctx) => ctx.change(MetaChange::Remove(id)).await,
        }
    }

    /// The replica set of partition `p` by placement (this node alone in single-node mode).
    pub fn replicas(&self, p: PartitionId) -> Vec<NodeId> {
        match &self.ctx {
            None => vec![self.node_id],
            Some(ctx) => ctx.replicas(p),
        }
    }

    /// Whether this node is a voter or learner of partition `p`'s group now.
    pub fn hosts(&self, p: PartitionId) -> bool {
        match &self.ctx {
            None => p < self.count(),
            Some(ctx) => ctx.hosts(p),
        }
    }

    /// The leader of partition `p` as this node knows it: from its own group when it hosts the
    /// partition, else as the hosting members last reported it.
    pub fn leader(&self, p: PartitionId) -> Option<NodeId> {
        if self.hosts(p) {
            return self.group(p).ok()?.raft.metrics().borrow().current_leader;
        }
        let ctx = self.ctx.as_ref()?;
        let hints = ctx.hints.read().unwrap_or_else(|p| p.into_inner());
        hints.get(p as usize).copied().flatten().map(|(l, _)| l)
    }

    /// Number of partitions.
    pub fn count(&self) -> u32 {
        self.store.partitions()
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The partition that owns `entity`.
    pub fn partition_of(&self, entity: &EntityId) -> PartitionId {
        partition::partition_of(entity, self.count())
    }

    fn group(&self, p: PartitionId) -> Result<&Group, Error> {
        // the metadata group (index `count`) is reached through `ctx`, not as a partition
        if p >= self.count() {
            return Err(Error::NoSuchPartition(p));
        }
        self.groups.get(p as usize).ok_or(Error::NoSuchPartition(p))
    }

    /// The Raft handle of any group, the metadata group (index `count`) included.
    pub(crate) fn any_group(&self, g: PartitionId) -> Option<&Raft<TypeConfig>> {
        self.groups.get(g as usize).map(|g| &g.raft)
    }

    /// The Raft handle of a partition (metrics, membership changes).
    pub fn raft(&self, p: PartitionId) -> Result<&Raft<TypeConfig>, Error> {
        Ok(&self.group(p)?.raft)
    }

    /// Proposes one `command` to partition `p`; answers its op results once it is committed
    /// (durable on a majority) and applied here.
    pub async fn propose(&self, p: PartitionId, command: Command) -> Result<Vec<OpResult>, Error> {
        let mut r = self.propose_many(p, Proposal::from(command)).await?;
        Ok(r.results.pop().unwrap_or_default())
    }

    /// Proposes several independent commands to partition `p` as one log entry.
    pub async fn propose_many(
        &self,
        p: PartitionId,
        proposal: Proposal,
    ) -> Result<ProposalResult, Error> {
        let group = self.group(p)?;
        let span =
            tracing::debug_span!("propose", partition = p, commands = proposal.commands.len());
        // held until the entry is committed: a leadership transfer waits for it
        let _pass = self.gates.pass(p).await;
        match group.raft.client_write(proposal).instrument(span).await {
            Ok(resp) => Ok(resp.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(not_leader(p, self.leader_or(p, f.leader_id)))
            }
            Err(e) => Err(unavailable(p, e)),
        }
    }

    /// Confirms leadership with a quorum and waits until everything committed before the call is
    /// applied, then returns the partition's state for a linearizable read.
    pub async fn read(&self, p: PartitionId) -> Result<PartitionState, Error> {
        let group = self.group(p)?;
        match read_barrier(&group.raft, group.resumed.as_ref()).await {
            Ok(()) => Ok(group.state.clone()),
            Err(BarrierError::NotLeader(l)) => Err(not_leader(p, self.leader_or(p, l))),
            Err(BarrierError::Unavailable(e)) => Err(unavailable(p, e)),
        }
    }

    /// Where a partition's leader is, given what its group said: the group's word when this
    /// node hosts it, else the hosting members' (a group this node left keeps a stale leader).
    fn leader_or(&self, p: PartitionId, said: Option<NodeId>) -> Option<NodeId> {
        if self.hosts(p) {
            said
        } else {
            self.leader(p)
        }
    }

    /// The partition's local state without a leadership check: for the leader's own actors,
    /// which know their writes are applied here before they are answered. Not for client reads.
    pub fn local_state(&self, p: PartitionId) -> Result<PartitionState, Error> {
        Ok(self.group(p)?.state.clone())
    }

    /// Whether this node currently leads partition `p`.
    pub fn is_leader(&self, p: PartitionId) -> bool {
        self.group(p)
            .map(|g| g.raft.metrics().borrow().state == ServerState::Leader)
            .unwrap_or(false)
    }

    /// A watch on partition `p`'s Raft metrics (role, term, leader).
    pub fn metrics(
        &self,
        p: PartitionId,
    ) -> Result<tokio::sync::watch::Receiver<openraft::RaftMetrics<u64, BasicNode>>, Error> {
        Ok(self.group(p)?.raft.metrics())
    }

    /// Waits until every partition has a leader known here and this node is part of a formed
    /// cluster (not founding, joining, or removed), or `timeout` passes.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), Error> {
        let started = Instant::now();
        loop {
            let missing: Vec<PartitionId> = (0..self.count())
                .filter(|&p| self.leader(p).is_none())
                .collect();
            let formation = self.ctx.as_ref().and_then(|c| {
                c.formation
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone()
            });
            if missing.is_empty() && formation.is_none() {
                return Ok(());
            }
            if started.elapsed() >= timeout {
                return Err(Error::NotReady {
                    waited_ms: started.elapsed().as_millis() as u64,
                    partitions: missing,
                    formation,
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Number of partitions this node leads.
    pub fn leading(&self) -> usize {
        self.groups[..self.count() as usize]
            .iter()
            .filter(|g| g.raft.metrics().borrow().state == ServerState::Leader)
            .count()
    }

    /// Test hook: the next write-ahead log write fails as a disk error would, which poisons the
    /// log and stops the group that wrote (for fail-stop and readiness tests).
    #[doc(hidden)]
    pub fn inject_storage_failure(&self) {
        self.store.wal().inject_write_failure();
    }

    /// Write-ahead log counters (syncs, records, bytes, segments).
    pub fn wal_stats(&self) -> perdure_storage::wal::WalStats {
        self.store.wal().stats()
    }

    /// Storage measurements for metrics: fsync latency, snapshot builds, commit indexes.
    pub fn store_metrics(&self) -> perdure_storage::metrics::StoreMetrics {
        self.store.metrics()
    }

    /// Stops every group, then closes storage after draining the write-ahead log. Returns once
    /// the data directory is released (a new `start` on it may follow at once).
    pub async fn shutdown(self) {
        let Self {
            node_id: _,
            groups,
            store,
            peers,
            server,
            ctx,
            gates: _,
            tasks,
            log_bounds,
            subscriptions_lock: _,
        } = self;
        log_bounds.abort();
        let _ = log_bounds.await;
        for t in tasks.into_inner().unwrap_or_else(|p| p.into_inner()) {
            t.abort();
            let _ = t.await; // dropped: what the task held (the services, the cluster context)
        }
        // services never served hold the cluster context, which holds state handles: gone
        // before storage is released
        drop(server);
        drop(ctx);
        for (p, g) in groups.iter().enumerate() {
            if let Err(e) = g.raft.shutdown().await {
                tracing::warn!(partition = p, error = %e, "raft group did not stop cleanly");
            }
        }
        drop(groups);
        drop(peers);
        release(store).await;
    }
}

fn not_leader(partition: PartitionId, leader: Option<NodeId>) -> Error {
    Error::NotLeader { partition, leader }
}

fn unavailable(partition: PartitionId, e: impl std::fmt::Display) -> Error {
    Error::Unavailable {
        partition,
        reason: e.to_string(),
    }
}

/// Waits (bounded) until openraft's state-machine tasks, which stop asynchronously after the
/// groups, have dropped their handles, then closes the store and releases the directory.
async fn release(store: NodeStore) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.open_state_handles() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    if store.open_state_handles() > 0 {
        tracing::warn!(
            handles = store.open_state_handles(),
            "partition state still referenced at shutdown"
        );
    }
    store.close();
}
