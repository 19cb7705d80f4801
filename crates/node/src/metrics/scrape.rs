//! Values read at scrape time from counters the node keeps anyway: each partition's Raft role,
//! term and indexes (openraft's metrics watch, the log store's commit gauge), inbox and outbox
//! depth, the entity runtime's counters, write-ahead log statistics, and the storage histograms
//! (WAL fsync, snapshot builds) registered as they are; the Raft logs' weight in `raft_log.rs`,
//! the orchestration workload's in `orchestrations.rs`.

use super::orchestrations::OrchestrationGauges;
use super::raft_log::RaftLogMetrics;
use openraft::ServerState;
use perdure_cluster::Partitions;
use perdure_runtime::Passivation;
use perdure_runtime::Runtime;
use perdure_types::PartitionId;
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// How many inbox or outbox messages a scrape counts per partition at most (bounded work).
pub const DEPTH_CAP: usize = 100_000;

/// Roles a partition replica can have, as exported in `perdure_partition_role{role}`.
const ROLES: [(&str, ServerState); 4] = [
    ("leader", ServerState::Leader),
    ("follower", ServerState::Follower),
    ("candidate", ServerState::Candidate),
    ("learner", ServerState::Learner),
];

/// A registered gauge vector.
pub(super) fn gauge_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntGaugeVec> {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

/// A registered gauge.
pub(super) fn gauge(r: &Registry, name: &str, help: &str) -> prometheus::Result<IntGauge> {
    let g = IntGauge::new(name, help)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

/// A registered counter.
pub(super) fn counter(r: &Registry, name: &str, help: &str) -> prometheus::Result<IntCounter> {
    let c = IntCounter::new(name, help)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

/// Sets a counter that mirrors an external monotonic count.
pub(super) fn mirror(c: &IntCounter, value: u64) {
    let now = c.get();
    if value > now {
        c.inc_by(value - now);
    }
}

/// Gauges and counters refreshed from the node's own counters at scrape time.
#[derive(Debug)]
pub(super) struct Scraped {
    partitions: PartitionGauges,
    /// Partitions this node leads.
    pub leaders: IntGauge,
    /// Entity actors active on this node.
    pub actors_active: IntGauge,
    activations: IntCounter,
    /// Passivations by reason: `idle`, `pressure`.
    passivations: IntCounterVec,
    delivered: IntCounter,
    timers_fired: IntCounter,
    commands: IntCounter,
    proposals: IntCounter,
    /// Requests forwarded to another node's leader.
    pub forwarded: IntCounter,
    /// Bytes written to the write-ahead log.
    pub wal_bytes: IntCounter,
    wal_records: IntCounter,
    wal_syncs: IntCounter,
    wal_segments: IntGauge,
    peer_frames_refused: IntCounter,
    /// By `reason`: `refused` (the handshake failed its checks), `too_many_pending` (closed
    /// at accept: too many connections in their handshake).
    peer_handshakes_refused: IntCounterVec,
    raft_log: RaftLogMetrics,
    /// Remote (gRPC) workers' work.
    pub remote: super::remote::RemoteGauges,
    /// The orchestration workload's.
    pub orchestrations: OrchestrationGauges,
}

/// The per-partition gauges.
#[derive(Debug)]
struct PartitionGauges {
    role: IntGaugeVec,
    term: IntGaugeVec,
    last_log: IntGaugeVec,
    committed: IntGaugeVec,
    applied: IntGaugeVec,
    apply_lag: IntGaugeVec,
    snapshot_index: IntGaugeVec,
    inbox: IntGaugeVec,
    outbox: IntGaugeVec,
    /// `"0"`, `"1"`, ...: the partition label values, made once.
    labels: Vec<String>,
}

impl PartitionGauges {
    fn new(r: &Registry, partitions: u32) -> prometheus::Result<Self> {
        let p = &["partition"];
        let g = |name, help| gauge_vec(r, name, help, p);
        Ok(Self {
            role: gauge_vec(
                r,
                "perdure_partition_role",
                "This node's role in each partition's Raft group (1 for the current role).",
                &["partition", "role"],
            )?,
            term: g("perdure_partition_term", "Current Raft term of each partition.")?,
            last_log: g(
                "perdure_partition_last_log_index",
                "Index of the last entry in each partition's log on this node.",
            )?,
            committed: g(
                "perdure_partition_commit_index",
                "Index of the last committed entry of each partition known to this node.",
            )?,
            applied: g(
                "perdure_partition_applied_index",
                "Index of the last entry applied to each partition's state on this node.",
            )?,
            apply_lag: g(
                "perdure_partition_apply_lag_entries",
                "Committed entries of each partition not yet applied on this node.",
            )?,
            snapshot_index: g(
                "perdure_partition_snapshot_index",
                "Index covered by each partition's latest snapshot on this node.",
            )?,
            inbox: g(
                "perdure_inbox_messages",
                "Entity inbox messages waiting to run, per partition this node leads (0 elsewhere).",
            )?,
            outbox: g(
                "perdure_outbox_messages",
                "Outgoing entity signals not yet delivered, per partition this node leads (0 elsewhere).",
            )?,
            labels: (0..partitions).map(|p| p.to_string()).collect(),
        })
    }

    /// Reads every partition's Raft metrics, commit gauge and queue depths; returns the
    /// partitions this node leads.
    fn refresh(&self, partitions: &Partitions) -> Vec<PartitionId> {
        let store = partitions.store_metrics();
        let mut led = Vec::new();
        for p in 0..partitions.count() {
            let label = self.labels[p as usize].as_str();
            let Ok(watch) = partitions.metrics(p) else {
                continue;
            };
            let m = watch.borrow().clone();
            for (name, role) in ROLES {
                self.role
                    .with_label_values(&[label, name])
                    .set(i64::from(m.state == role));
            }
            let leading = m.state == ServerState::Leader;
            if leading {
                led.push(p);
            }
            let applied = m.last_applied.map(|l| l.index);
            let committed = store.committed_index(p).max(applied);
            let set = |g: &IntGaugeVec, v: i64| g.with_label_values(&[label]).set(v);
            set(&self.term, m.current_term as i64);
            set(&self.last_log, m.last_log_index.map_or(-1, |i| i as i64));
            set(&self.committed, committed.map_or(-1, |i| i as i64));
            set(&self.applied, applied.map_or(-1, |i| i as i64));
            set(
                &self.apply_lag,
                committed
                    .map(|c| c.saturating_sub(applied.unwrap_or(0)) as i64)
                    .unwrap_or(0),
            );
            set(
                &self.snapshot_index,
                m.snapshot.map_or(-1, |l| l.index as i64),
            );
            let (inbox, outbox) = match partitions.local_state(p) {
                Ok(state) if leading => (
                    state.inbox().depth(DEPTH_CAP),
                    state.outbox().depth(DEPTH_CAP),
                ),
                _ => (0, 0),
            };
            set(&self.inbox, inbox as i64);
            set(&self.outbox, outbox as i64);
        }
        led
    }
}

impl Scraped {
    /// Registers every scraped metric, the storage histograms of `partitions`, the orchestration
    /// metrics of `runtime` and (on Linux) the process collector in `r`.
    pub(super) fn new(
        r: &Registry,
        runtime: &Runtime,
        partitions: &Partitions,
    ) -> prometheus::Result<Self> {
        let store = partitions.store_metrics();
        r.register(Box::new(store.fsync_seconds.clone()))?;
        r.register(Box::new(store.snapshot_build_seconds.clone()))?;
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Self {
            raft_log: RaftLogMetrics::new(r, partitions.count())?,
            remote: super::remote::RemoteGauges::new(r)?,
            orchestrations: OrchestrationGauges::new(r, runtime.orchestrations().metrics().clone())?,
            partitions: PartitionGauges::new(r, partitions.count())?,
            leaders: gauge(r, "perdure_partitions_led", "Partitions this node leads.")?,
            actors_active: gauge(
                r,
                "perdure_actors_active",
                "Entity actors active on this node.",
            )?,
            activations: counter(
                r,
                "perdure_actor_activations_total",
                "Entity actors activated on this node.",
            )?,
            passivations: {
                let c = IntCounterVec::new(
                    Opts::new(
                        "perdure_actor_passivations_total",
                        "Entity actors passivated on this node, by reason: idle (idle longer than entities.passivate_after_ms) or pressure (a partition at its share of entities.max_active made room for a new entity).",
                    ),
                    &["reason"],
                )?;
                r.register(Box::new(c.clone()))?;
                c
            },
            delivered: counter(
                r,
                "perdure_outbox_delivered_total",
                "Entity-to-entity signals delivered from this node's outboxes.",
            )?,
            timers_fired: counter(
                r,
                "perdure_timers_fired_total",
                "Scheduled signals fired on this node.",
            )?,
            commands: counter(
                r,
                "perdure_proposed_commands_total",
                "Commands (atomic changes: entity batches, orchestration turns, deliveries, ...) this node's leaderships proposed to their Raft groups.",
            )?,
            proposals: counter(
                r,
                "perdure_proposals_total",
                "Raft entries those commands went in (commands per entry = the batching).",
            )?,
            forwarded: counter(
                r,
                "perdure_forwarded_requests_total",
                "Requests this node forwarded to another node's partition leader.",
            )?,
            wal_bytes: counter(
                r,
                "perdure_wal_written_bytes_total",
                "Bytes written to the write-ahead log.",
            )?,
            wal_records: counter(
                r,
                "perdure_wal_records_total",
                "Records written to the write-ahead log.",
            )?,
            wal_syncs: counter(
                r,
                "perdure_wal_fsyncs_total",
                "fdatasync calls of the write-ahead log (group commits).",
            )?,
            wal_segments: gauge(
                r,
                "perdure_wal_segments",
                "Write-ahead log segment files on disk.",
            )?,
            peer_frames_refused: counter(
                r,
                "perdure_peer_frames_refused_total",
                "Node-to-node frames that failed authentication (changed, injected, replayed or reordered); each closed its connection.",
            )?,
            peer_handshakes_refused: {
                let c = IntCounterVec::new(
                    Opts::new(
                        "perdure_peer_handshakes_refused_total",
                        "Node-to-node handshakes refused, by reason: refused (wrong secret or proof, another cluster, a peer that is not the node it claims), too_many_pending (closed at accept: too many connections in their handshake).",
                    ),
                    &["reason"],
                )?;
                r.register(Box::new(c.clone()))?;
                c
            },
        })
    }

    /// Reads the node's counters into the scraped metrics.
    pub(super) fn refresh(&self, runtime: &Runtime, partitions: &Partitions) {
        let led = self.partitions.refresh(partitions);
        self.remote.refresh(runtime);
        self.leaders.set(led.len() as i64);
        let (mut act, mut active, mut del, mut tim) = (0, 0, 0, 0);
        let (mut commands, mut proposals) = (0, 0);
        let (mut idle, mut pressure) = (0, 0);
        for p in 0..partitions.count() {
            if let Some(m) = runtime.entities().workload().metrics(p) {
                act += m.activations();
                active += m.active();
                idle += m.passivations_for(Passivation::Idle);
                pressure += m.passivations_for(Passivation::Pressure);
            }
            if let Some(m) = runtime.host().metrics(p) {
                del += m.delivered();
                tim += m.timers_fired();
                commands += m.commands();
                proposals += m.proposals();
            }
        }
        self.actors_active.set(active as i64);
        mirror(&self.activations, act);
        mirror(&self.passivations.with_label_values(&["idle"]), idle);
        mirror(
            &self.passivations.with_label_values(&["pressure"]),
            pressure,
        );
        mirror(&self.delivered, del);
        mirror(&self.timers_fired, tim);
        mirror(&self.commands, commands);
        mirror(&self.proposals, proposals);
        mirror(&self.forwarded, runtime.host().forwarded());
        let w = partitions.wal_stats();
        mirror(&self.wal_bytes, w.bytes);
        mirror(&self.wal_records, w.records);
        mirror(&self.wal_syncs, w.syncs);
        self.wal_segments.set(w.live_segments as i64);
        let channel = &partitions.peers().config().stats;
        mirror(&self.peer_frames_refused, channel.frames_refused());
        let refused = |reason| self.peer_handshakes_refused.with_label_values(&[reason]);
        mirror(&refused("refused"), channel.handshakes_refused());
        mirror(&refused("too_many_pending"), channel.handshakes_shed());
        self.raft_log.refresh(partitions);
        self.orchestrations.refresh(runtime, partitions, &led);
    }
}
