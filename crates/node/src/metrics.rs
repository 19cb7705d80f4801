//! Prometheus metrics of one node, served at `GET /metrics` (text exposition format).
//!
//! Every node owns its [`NodeMetrics`] and its own [`prometheus::Registry`] (several nodes may run
//! in one process, as in-process tests do). Two kinds of values:
//!
//! - **measured on the request path**: HTTP requests by route template and status, entity
//!   operations by type, operation, kind and outcome, and their latency. The entity handles are
//!   resolved once at start for every registered type and operation ([`OpMetrics`]), so a request
//!   costs a hash lookup on `&str` and a few atomic increments, no allocation; unknown types and
//!   operations are counted under `type="other"`, `operation="other"` (bounded labels).
//! - **read at scrape time** from counters the node keeps anyway: each partition's Raft role,
//!   term, commit/applied index and apply lag (openraft's metrics watch and the log store's
//!   commit gauge), entity actors, inbox/outbox depth, write-ahead log counters and fsync
//!   latency, snapshot builds, forwarded requests, process CPU/memory/open files. A light task
//!   ([`NodeMetrics::watch_leaders`]) samples leadership to count leader changes.
//!
//! Names follow Prometheus conventions: `perdure_<thing>_<unit>_total` for counters, histograms in
//! seconds. No label carries an entity key.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use openraft::ServerState;
use perdure_runtime::Runtime;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Latency buckets of HTTP requests and entity operations, in seconds (250 µs to 10 s).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How many inbox or outbox messages a scrape counts per partition at most (bounded work).
pub const DEPTH_CAP: usize = 100_000;

/// The kind of an entity operation request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// A signal (`202` once committed).
    Signal,
    /// A call (the result once committed).
    Call,
    /// A read of an entity's state.
    Read,
}

impl OpKind {
    const ALL: [OpKind; 3] = [OpKind::Signal, OpKind::Call, OpKind::Read];

    fn label(self) -> &'static str {
        match self {
            OpKind::Signal => "signal",
            OpKind::Call => "call",
            OpKind::Read => "read",
        }
    }
}

/// How an entity operation request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered with success (2xx).
    Ok,
    /// Refused before running: bad id, operation, input or body; not found (4xx but 422).
    Rejected,
    /// The operation ran and failed (422).
    Failed,
    /// The node could not serve it now (5xx, mostly 503 during leader changes).
    Unavailable,
}

impl Outcome {
    const ALL: [Outcome; 4] = [
        Outcome::Ok,
        Outcome::Rejected,
        Outcome::Failed,
        Outcome::Unavailable,
    ];

    fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Rejected => "rejected",
            Outcome::Failed => "failed",
            Outcome::Unavailable => "unavailable",
        }
    }

    /// The outcome of an API error code (batch items carry a code, not a status).
    pub fn of_code(code: &str) -> Self {
        match code {
            "operation_failed" => Outcome::Failed,
            "unavailable" | "internal" => Outcome::Unavailable,
            _ => Outcome::Rejected,
        }
    }

    /// The outcome an HTTP status stands for.
    pub fn of_status(status: StatusCode) -> Self {
        if status.is_success() {
            Outcome::Ok
        } else if status == StatusCode::UNPROCESSABLE_ENTITY {
            Outcome::Failed
        } else if status.is_client_error() {
            Outcome::Rejected
        } else {
            Outcome::Unavailable
        }
    }
}

/// The pre-resolved handles of one (type, kind, operation).
#[derive(Debug, Clone)]
struct OpHandles {
    outcomes: [IntCounter; 4],
    latency: Histogram,
}

/// The handles of one entity type.
#[derive(Debug, Clone)]
struct TypeHandles {
    signal: HashMap<&'static str, OpHandles>,
    call: HashMap<&'static str, OpHandles>,
    read: OpHandles,
    /// A known type with an unknown operation.
    other_op: [OpHandles; 2],
}

/// The resolved metrics of one (kind, type, operation): see [`OpMetrics::resolve`].
#[derive(Debug, Clone, Copy)]
pub struct OpRef<'a>(&'a OpHandles);

impl OpRef<'_> {
    /// Counts one request with `outcome` and its latency.
    pub fn record(self, outcome: Outcome, elapsed: Duration) {
        self.0.outcomes[outcome as usize].inc();
        self.0.latency.observe(elapsed.as_secs_f64());
    }
}

/// Entity operation counters and latency, resolved at start for every registered type and
/// operation: `perdure_entity_operations_total{type,kind,operation,outcome}` and
/// `perdure_entity_operation_duration_seconds{type,kind}`.
#[derive(Debug)]
pub struct OpMetrics {
    types: HashMap<&'static str, TypeHandles>,
    /// An unknown type: one per kind.
    other: [OpHandles; 3],
}

/// The `operation` label of reads.
const READ_OP: &str = "state";
/// The label of unknown types and operations.
const OTHER: &str = "other";

impl OpMetrics {
    fn new(registry: &Registry, runtime: &Runtime) -> prometheus::Result<Self> {
        let counter = IntCounterVec::new(
            Opts::new(
                "perdure_entity_operations_total",
                "Entity operation requests received by this node's API, by entity type, kind \
                 (signal, call, read), operation and outcome (ok, rejected, failed, unavailable).",
            ),
            &["type", "kind", "operation", "outcome"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "perdure_entity_operation_duration_seconds",
                "Latency of entity operation requests (received to answered: committed and \
                 applied for signals and calls), by entity type and kind.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["type", "kind"],
        )?;
        registry.register(Box::new(counter.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        let handles = |t: &str, kind: OpKind, op: &str| OpHandles {
            outcomes: Outcome::ALL
                .map(|o| counter.with_label_values(&[t, kind.label(), op, o.label()])),
            latency: latency.with_label_values(&[t, kind.label()]),
        };
        let mut types = HashMap::new();
        for name in runtime.entities().registry().names() {
            let t =
                runtime.entities().registry().get(name).map_err(|e| {
                    prometheus::Error::Msg(format!("entity type {name} vanished: {e}"))
                })?;
            let ops = t.operations();
            types.insert(
                name,
                TypeHandles {
                    signal: ops
                        .iter()
                        .map(|&op| (op, handles(name, OpKind::Signal, op)))
                        .collect(),
                    call: ops
                        .iter()
                        .map(|&op| (op, handles(name, OpKind::Call, op)))
                        .collect(),
                    read: handles(name, OpKind::Read, READ_OP),
                    other_op: [
                        handles(name, OpKind::Signal, OTHER),
                        handles(name, OpKind::Call, OTHER),
                    ],
                },
            );
        }
        let other = OpKind::ALL.map(|k| handles(OTHER, k, OTHER));
        Ok(Self { types, other })
    }

    fn handles(&self, kind: OpKind, type_name: &str, op: &str) -> &OpHandles {
        let t = match self.types.get(type_name) {
            Some(t) => Some(t),
            // type names are matched case-insensitively by the runtime
            None if type_name.bytes().any(|b| b.is_ascii_uppercase()) => {
                self.types.get(type_name.to_ascii_lowercase().as_str())
            }
            None => None,
        };
        let Some(t) = t else {
            return &self.other[kind as usize];
        };
        match kind {
            OpKind::Read => &t.read,
            OpKind::Signal => t.signal.get(op).unwrap_or(&t.other_op[0]),
            OpKind::Call => t.call.get(op).unwrap_or(&t.other_op[1]),
        }
    }

    /// The handles of one (kind, type, operation), resolved once for several records.
    pub fn resolve(&self, kind: OpKind, type_name: &str, op: &str) -> OpRef<'_> {
        OpRef(self.handles(kind, type_name, op))
    }

    /// Counts one operation request of entity type `type_name` and its latency.
    pub fn record(
        &self,
        kind: OpKind,
        type_name: &str,
        op: &str,
        outcome: Outcome,
        elapsed: Duration,
    ) {
        let h = self.handles(kind, type_name, op);
        h.outcomes[outcome as usize].inc();
        h.latency.observe(elapsed.as_secs_f64());
    }

    /// Totals by outcome over every type and operation, and the merged latency buckets
    /// (`(upper bound, cumulative count)`), for the web dashboard.
    fn totals(&self) -> ([u64; 4], Vec<(f64, u64)>, u64, f64) {
        let mut outcomes = [0u64; 4];
        let mut buckets: Vec<(f64, u64)> = LATENCY_BUCKETS.iter().map(|&b| (b, 0)).collect();
        let (mut count, mut sum) = (0u64, 0f64);
        let mut add = |h: &OpHandles| {
            for (i, c) in h.outcomes.iter().enumerate() {
                outcomes[i] += c.get();
            }
        };
        for t in self.types.values() {
            t.signal.values().for_each(&mut add);
            t.call.values().for_each(&mut add);
            add(&t.read);
            t.other_op.iter().for_each(&mut add);
        }
        self.other.iter().for_each(&mut add);
        // latency: one histogram per (type, kind)
        let mut latencies: Vec<&Histogram> = Vec::new();
        for t in self.types.values() {
            if let Some(h) = t.signal.values().next() {
                latencies.push(&h.latency);
            }
            if let Some(h) = t.call.values().next() {
                latencies.push(&h.latency);
            }
            latencies.push(&t.read.latency);
        }
        latencies.extend(self.other.iter().map(|h| &h.latency));
        for h in latencies {
            count += h.get_sample_count();
            sum += h.get_sample_sum();
            let m = prometheus::core::Collector::collect(h);
            if let Some(hist) = m
                .first()
                .and_then(|f| f.get_metric().first())
                .map(|m| m.get_histogram())
            {
                for (i, b) in hist.get_bucket().iter().enumerate() {
                    if let Some(slot) = buckets.get_mut(i) {
                        slot.1 += b.cumulative_count();
                    }
                }
            }
        }
        (outcomes, buckets, count, sum)
    }
}

/// Gauges and counters refreshed from the node's own counters at scrape time.
#[derive(Debug)]
struct Scraped {
    role: IntGaugeVec,
    term: IntGaugeVec,
    last_log: IntGaugeVec,
    committed: IntGaugeVec,
    applied: IntGaugeVec,
    apply_lag: IntGaugeVec,
    snapshot_index: IntGaugeVec,
    inbox: IntGaugeVec,
    outbox: IntGaugeVec,
    leaders: IntGauge,
    actors_active: IntGauge,
    activations: IntCounter,
    passivations: IntCounter,
    delivered: IntCounter,
    timers_fired: IntCounter,
    forwarded: IntCounter,
    wal_bytes: IntCounter,
    wal_records: IntCounter,
    wal_syncs: IntCounter,
    wal_segments: IntGauge,
}

/// Roles a partition replica can have, as exported in `perdure_partition_role{role}`.
const ROLES: [(&str, ServerState); 4] = [
    ("leader", ServerState::Leader),
    ("follower", ServerState::Follower),
    ("candidate", ServerState::Candidate),
    ("learner", ServerState::Learner),
];

/// Sets a counter that mirrors an external monotonic count.
fn mirror(c: &IntCounter, value: u64) {
    let now = c.get();
    if value > now {
        c.inc_by(value - now);
    }
}

/// The metrics of one node.
#[derive(Debug)]
pub struct NodeMetrics {
    registry: Registry,
    runtime: Arc<Runtime>,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    leader_changes: IntCounterVec,
    ops: Arc<OpMetrics>,
    scraped: Mutex<Scraped>,
    partition_labels: Vec<String>,
}

fn gauge_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntGaugeVec> {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

fn gauge(r: &Registry, name: &str, help: &str) -> prometheus::Result<IntGauge> {
    let g = IntGauge::new(name, help)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

fn counter(r: &Registry, name: &str, help: &str) -> prometheus::Result<IntCounter> {
    let c = IntCounter::new(name, help)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

impl NodeMetrics {
    /// The metrics of the node running `runtime`, in a registry of their own.
    pub fn new(runtime: Arc<Runtime>) -> prometheus::Result<Self> {
        let r = Registry::new();
        let partitions = runtime.partitions().clone();
        let node_id = partitions.node_id().to_string();
        let info = IntGaugeVec::new(
            Opts::new(
                "perdure_node_info",
                "This node's id and version (always 1).",
            ),
            &["node_id", "version"],
        )?;
        r.register(Box::new(info.clone()))?;
        info.with_label_values(&[node_id.as_str(), env!("CARGO_PKG_VERSION")])
            .set(1);
        gauge(&r, "perdure_partitions", "Partitions of the cluster.")?
            .set(i64::from(partitions.count()));
        let http_requests = IntCounterVec::new(
            Opts::new(
                "perdure_http_requests_total",
                "HTTP requests answered, by route template, method and status code.",
            ),
            &["route", "method", "status"],
        )?;
        r.register(Box::new(http_requests.clone()))?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "perdure_http_request_duration_seconds",
                "HTTP request latency (received to response headers), by route template and method.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route", "method"],
        )?;
        r.register(Box::new(http_duration.clone()))?;
        let leader_changes = IntCounterVec::new(
            Opts::new(
                "perdure_raft_leader_changes_total",
                "Changes of a partition's leader (or term) seen by this node.",
            ),
            &["partition"],
        )?;
        r.register(Box::new(leader_changes.clone()))?;
        let p = &["partition"];
        let scraped = Scraped {
            role: gauge_vec(
                &r,
                "perdure_partition_role",
                "This node's role in each partition's Raft group (1 for the current role).",
                &["partition", "role"],
            )?,
            term: gauge_vec(&r, "perdure_partition_term", "Current Raft term of each partition.", p)?,
            last_log: gauge_vec(
                &r,
                "perdure_partition_last_log_index",
                "Index of the last entry in each partition's log on this node.",
                p,
            )?,
            committed: gauge_vec(
                &r,
                "perdure_partition_commit_index",
                "Index of the last committed entry of each partition known to this node.",
                p,
            )?,
            applied: gauge_vec(
                &r,
                "perdure_partition_applied_index",
                "Index of the last entry applied to each partition's state on this node.",
                p,
            )?,
            apply_lag: gauge_vec(
                &r,
                "perdure_partition_apply_lag_entries",
                "Committed entries of each partition not yet applied on this node.",
                p,
            )?,
            snapshot_index: gauge_vec(
                &r,
                "perdure_partition_snapshot_index",
                "Index covered by each partition's latest snapshot on this node.",
                p,
            )?,
            inbox: gauge_vec(
                &r,
                "perdure_inbox_messages",
                "Entity inbox messages waiting to run, per partition this node leads (0 elsewhere).",
                p,
            )?,
            outbox: gauge_vec(
                &r,
                "perdure_outbox_messages",
                "Outgoing entity signals not yet delivered, per partition this node leads (0 elsewhere).",
                p,
            )?,
            leaders: gauge(&r, "perdure_partitions_led", "Partitions this node leads.")?,
            actors_active: gauge(
                &r,
                "perdure_actors_active",
                "Entity actors active on this node.",
            )?,
            activations: counter(
                &r,
                "perdure_actor_activations_total",
                "Entity actors activated on this node.",
            )?,
            passivations: counter(
                &r,
                "perdure_actor_passivations_total",
                "Entity actors passivated (stopped when idle) on this node.",
            )?,
            delivered: counter(
                &r,
                "perdure_outbox_delivered_total",
                "Entity-to-entity signals delivered from this node's outboxes.",
            )?,
            timers_fired: counter(
                &r,
                "perdure_timers_fired_total",
                "Scheduled signals fired on this node.",
            )?,
            forwarded: counter(
                &r,
                "perdure_forwarded_requests_total",
                "Requests this node forwarded to another node's partition leader.",
            )?,
            wal_bytes: counter(
                &r,
                "perdure_wal_written_bytes_total",
                "Bytes written to the write-ahead log.",
            )?,
            wal_records: counter(
                &r,
                "perdure_wal_records_total",
                "Records written to the write-ahead log.",
            )?,
            wal_syncs: counter(
                &r,
                "perdure_wal_fsyncs_total",
                "fdatasync calls of the write-ahead log (group commits).",
            )?,
            wal_segments: gauge(
                &r,
                "perdure_wal_segments",
                "Write-ahead log segment files on disk.",
            )?,
        };
        let store = partitions.store_metrics();
        r.register(Box::new(store.fsync_seconds.clone()))?;
        r.register(Box::new(store.snapshot_build_seconds.clone()))?;
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        let ops = Arc::new(OpMetrics::new(&r, &runtime)?);
        let partition_labels: Vec<String> =
            (0..partitions.count()).map(|p| p.to_string()).collect();
        for l in &partition_labels {
            leader_changes.with_label_values(&[l.as_str()]);
        }
        Ok(Self {
            registry: r,
            runtime,
            http_requests,
            http_duration,
            leader_changes,
            ops,
            scraped: Mutex::new(scraped),
            partition_labels,
        })
    }

    /// The entity operation metrics (shared with the batch handler).
    pub fn ops(&self) -> &Arc<OpMetrics> {
        &self.ops
    }

    /// Counts one answered HTTP request.
    pub fn record_http(&self, route: &str, method: &str, status: StatusCode, elapsed: Duration) {
        self.http_requests
            .with_label_values(&[route, method, status.as_str()])
            .inc();
        self.http_duration
            .with_label_values(&[route, method])
            .observe(elapsed.as_secs_f64());
    }

    /// Reads the node's counters into the scraped gauges.
    fn refresh(&self) {
        let s = self.scraped.lock().unwrap_or_else(|p| p.into_inner());
        let partitions = self.runtime.partitions();
        let store = partitions.store_metrics();
        let mut led = 0;
        for p in 0..partitions.count() {
            let label = self.partition_labels[p as usize].as_str();
            let Ok(watch) = partitions.metrics(p) else {
                continue;
            };
            let m = watch.borrow().clone();
            for (name, role) in ROLES {
                s.role
                    .with_label_values(&[label, name])
                    .set(i64::from(m.state == role));
            }
            let leading = m.state == ServerState::Leader;
            led += usize::from(leading);
            let applied = m.last_applied.map(|l| l.index);
            let committed = store.committed_index(p).max(applied);
            s.term
                .with_label_values(&[label])
                .set(m.current_term as i64);
            s.last_log
                .with_label_values(&[label])
                .set(m.last_log_index.map_or(-1, |i| i as i64));
            s.committed
                .with_label_values(&[label])
                .set(committed.map_or(-1, |i| i as i64));
            s.applied
                .with_label_values(&[label])
                .set(applied.map_or(-1, |i| i as i64));
            s.apply_lag.with_label_values(&[label]).set(
                committed
                    .map(|c| c.saturating_sub(applied.unwrap_or(0)) as i64)
                    .unwrap_or(0),
            );
            s.snapshot_index
                .with_label_values(&[label])
                .set(m.snapshot.map_or(-1, |l| l.index as i64));
            let (inbox, outbox) = match partitions.local_state(p) {
                Ok(state) if leading => (
                    state.inbox().depth(DEPTH_CAP),
                    state.outbox().depth(DEPTH_CAP),
                ),
                _ => (0, 0),
            };
            s.inbox.with_label_values(&[label]).set(inbox as i64);
            s.outbox.with_label_values(&[label]).set(outbox as i64);
        }
        s.leaders.set(led as i64);
        let (mut act, mut pas, mut del, mut tim) = (0, 0, 0, 0);
        for p in 0..partitions.count() {
            if let Some(m) = self.runtime.entities().workload().metrics(p) {
                act += m.activations();
                pas += m.passivations();
            }
            if let Some(m) = self.runtime.host().metrics(p) {
                del += m.delivered();
                tim += m.timers_fired();
            }
        }
        s.actors_active.set(act.saturating_sub(pas) as i64);
        mirror(&s.activations, act);
        mirror(&s.passivations, pas);
        mirror(&s.delivered, del);
        mirror(&s.timers_fired, tim);
        mirror(&s.forwarded, self.runtime.host().forwarded());
        let w = partitions.wal_stats();
        mirror(&s.wal_bytes, w.bytes);
        mirror(&s.wal_records, w.records);
        mirror(&s.wal_syncs, w.syncs);
        s.wal_segments.set(w.live_segments as i64);
    }

    /// The text exposition of every metric, refreshed now.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        self.refresh();
        let families = self.registry.gather();
        let mut out = Vec::with_capacity(64 * 1024);
        TextEncoder::new().encode(&families, &mut out)?;
        String::from_utf8(out).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }

    /// A compact summary for the web dashboard: operation totals by outcome, merged latency
    /// buckets, partitions led, active actors.
    pub fn summary(&self) -> serde_json::Value {
        self.refresh();
        let (outcomes, buckets, count, sum) = self.ops.totals();
        let s = self.scraped.lock().unwrap_or_else(|p| p.into_inner());
        json!({
            "node_id": self.runtime.partitions().node_id(),
            "at_ms": std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            "operations": {
                "ok": outcomes[0],
                "rejected": outcomes[1],
                "failed": outcomes[2],
                "unavailable": outcomes[3],
            },
            "latency": {
                "count": count,
                "sum_seconds": sum,
                "buckets": buckets.iter().map(|(le, c)| json!([le, c])).collect::<Vec<_>>(),
            },
            "partitions_led": s.leaders.get(),
            "actors_active": s.actors_active.get(),
            "forwarded_requests": s.forwarded.get(),
            "wal_written_bytes": s.wal_bytes.get(),
        })
    }

    /// Samples every partition's leadership until `stop` fires, counting leader (or term)
    /// changes into `perdure_raft_leader_changes_total`. Polls (every 200 ms) rather than
    /// watching: Raft metrics change on every commit, leadership rarely.
    pub async fn watch_leaders(self: Arc<Self>, mut stop: tokio::sync::oneshot::Receiver<()>) {
        let partitions = self.runtime.partitions().clone();
        let mut last: Vec<Option<(u64, Option<u64>)>> = vec![None; partitions.count() as usize];
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tick.tick() => {}
            }
            for (p, seen) in last.iter_mut().enumerate() {
                let Ok(w) = partitions.metrics(p as u32) else {
                    continue;
                };
                let now = {
                    let m = w.borrow();
                    (m.current_term, m.current_leader)
                };
                if now.1.is_some() {
                    if let Some(before) = *seen {
                        if before != now {
                            self.leader_changes
                                .with_label_values(&[self.partition_labels[p].as_str()])
                                .inc();
                        }
                    }
                    *seen = Some(now);
                }
            }
        }
    }
}

/// The route label of a request: its matched route template, or `unmatched`.
fn route_of(req: &Request) -> Option<MatchedPath> {
    req.extensions().get::<MatchedPath>().cloned()
}

/// The entity route a template belongs to, if any.
fn entity_kind(route: &str, method: &axum::http::Method) -> Option<OpKind> {
    let rest = route.strip_prefix(crate::http::BASE)?;
    match (rest, method.as_str()) {
        ("/entities/{name}/{key}", "POST") => Some(OpKind::Signal),
        ("/entities/{name}/{key}", "GET") => Some(OpKind::Read),
        ("/entities/{name}/{key}/call", "POST") => Some(OpKind::Call),
        _ => None,
    }
}

/// The entity type and `op` query of an entity request URI (borrowed; no allocation).
fn entity_parts(uri: &axum::http::Uri) -> (&str, &str) {
    let name = uri
        .path()
        .strip_prefix(crate::http::BASE)
        .and_then(|r| r.strip_prefix("/entities/"))
        .and_then(|r| r.split('/').next())
        .unwrap_or("");
    let op = uri
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("op=")))
        .unwrap_or("");
    (name, op)
}

/// Middleware: counts every request by route template, method and status, and every entity
/// operation request by type, operation and outcome; hands [`OpMetrics`] to the batch handler.
pub async fn track(State(m): State<Arc<NodeMetrics>>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = route_of(&req);
    let method = req.method().clone();
    let kind = route
        .as_ref()
        .and_then(|r| entity_kind(r.as_str(), &method));
    let uri = kind.map(|_| req.uri().clone());
    if route
        .as_ref()
        .is_some_and(|r| r.as_str().ends_with("/entities:batch"))
    {
        // the batch handler counts each of its signals (one allocation per batch request)
        req.extensions_mut().insert(m.ops.clone());
    }
    let resp = next.run(req).await;
    let elapsed = started.elapsed();
    let status = resp.status();
    m.record_http(
        route.as_ref().map_or("unmatched", |r| r.as_str()),
        method.as_str(),
        status,
        elapsed,
    );
    if let (Some(kind), Some(uri)) = (kind, uri) {
        let (name, op) = entity_parts(&uri);
        m.ops
            .record(kind, name, op, Outcome::of_status(status), elapsed);
    }
    resp
}

/// `GET /metrics`: the Prometheus text exposition.
pub async fn metrics(State(m): State<Arc<NodeMetrics>>) -> Response {
    match m.render() {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// `GET /dashboard/stats`: the summary the web dashboard polls.
pub async fn stats(State(m): State<Arc<NodeMetrics>>) -> Json<serde_json::Value> {
    Json(m.summary())
}

/// `GET /metrics` and `GET /dashboard/stats`.
pub fn router(m: Arc<NodeMetrics>) -> axum::Router {
    axum::Router::new()
        .route("/metrics", axum::routing::get(metrics))
        .route("/dashboard/stats", axum::routing::get(stats))
        .with_state(m)
}
