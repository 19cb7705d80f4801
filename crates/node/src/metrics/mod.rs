//! Prometheus metrics of one node: its registry, `GET /metrics` (text exposition format) and the
//! web dashboard's summary, `GET /dashboard/stats`.
//!
//! Every node owns its [`NodeMetrics`] and its own [`prometheus::Registry`] (several nodes may run
//! in one process, as in-process tests do). One concern per module:
//!
//! - [`ops`]: entity operations by type, operation, kind and outcome, and their latency, with
//!   handles resolved once at start for every registered type and operation (bounded labels).
//! - [`request`]: the request-path middleware: HTTP requests by route template and status
//!   ([`track`]), entity operation requests by the kind their route declares ([`measure_op`]).
//! - `scrape`: values read at scrape time from counters the node keeps anyway: Raft role, term,
//!   commit/applied index and apply lag per partition, entity actors, inbox/outbox depth, WAL
//!   counters and fsync latency, snapshot builds, forwarded requests, process CPU/memory/files.
//! - `orchestrations`: the orchestration workload: its counters (started, turns, fenced turns,
//!   history events, replays, activities, ended executions by status, poison, purges), live
//!   instances and pending activities, its turn-latency and history-size histograms, and, for
//!   the partitions this node leads, instances by status and pending work items (bounded scans).
//! - `raft_log`: the bytes of Raft log entries held in memory (per partition, node, span since
//!   the oldest held entry) and the snapshots and purges their byte bounds asked for.
//! - `leaders`: the task ([`NodeMetrics::watch_leaders`]) that samples leadership to count
//!   leader changes.
//!
//! Names follow Prometheus conventions: `perdure_<thing>_<unit>_total` for counters, histograms in
//! seconds. No label carries an entity key.

mod leaders;
pub mod ops;
mod orchestrations;
mod raft_log;
mod remote;
pub mod request;
mod scrape;

pub use ops::{OpKind, OpMetrics, OpRef, Outcome, LATENCY_BUCKETS};
pub use orchestrations::INSTANCE_SCAN_CAP;
pub use request::{measure_op, track, RequestMetrics};
pub use scrape::DEPTH_CAP;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use perdure_cluster::Partitions;
use perdure_runtime::Runtime;
use prometheus::{Encoder, IntGaugeVec, Opts, Registry, TextEncoder};
use serde_json::json;
use std::sync::{Arc, Mutex};

/// The metrics of one node.
#[derive(Debug)]
pub struct NodeMetrics {
    registry: Registry,
    /// The entities facade: actor counters, forwarded requests.
    runtime: Arc<Runtime>,
    /// The cluster facade: Raft metrics, storage and WAL statistics.
    partitions: Arc<Partitions>,
    requests: Arc<RequestMetrics>,
    leader_changes: leaders::LeaderChanges,
    /// Locked for a whole refresh, so concurrent scrapes do not mirror a count twice.
    scraped: Mutex<scrape::Scraped>,
}

impl NodeMetrics {
    /// The metrics of the node running `runtime` over `partitions`, in a registry of their own.
    pub fn new(runtime: Arc<Runtime>, partitions: Arc<Partitions>) -> prometheus::Result<Self> {
        let r = Registry::new();
        let info = IntGaugeVec::new(
            Opts::new(
                "perdure_node_info",
                "This node's id and version (always 1).",
            ),
            &["node_id", "version"],
        )?;
        r.register(Box::new(info.clone()))?;
        let node_id = partitions.node_id().to_string();
        info.with_label_values(&[node_id.as_str(), env!("CARGO_PKG_VERSION")])
            .set(1);
        scrape::gauge(&r, "perdure_partitions", "Partitions of the cluster.")?
            .set(i64::from(partitions.count()));
        let ops = Arc::new(OpMetrics::new(&r, runtime.entities().registry())?);
        Ok(Self {
            requests: Arc::new(RequestMetrics::new(&r, ops)?),
            leader_changes: leaders::LeaderChanges::new(&r, partitions.count())?,
            scraped: Mutex::new(scrape::Scraped::new(&r, &runtime, &partitions)?),
            registry: r,
            runtime,
            partitions,
        })
    }

    /// The entity operation metrics (shared with the batch handler).
    pub fn ops(&self) -> &Arc<OpMetrics> {
        self.requests.ops()
    }

    /// The node's registry (for measurements owned elsewhere, such as the server's
    /// connection counts).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The request-path metrics, the state of [`track`].
    pub fn requests(&self) -> &Arc<RequestMetrics> {
        &self.requests
    }

    /// The text exposition of every metric, refreshed now.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        drop(self.refresh());
        let families = self.registry.gather();
        let mut out = Vec::with_capacity(64 * 1024);
        TextEncoder::new().encode(&families, &mut out)?;
        String::from_utf8(out).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }

    /// Reads the node's counters into the scraped metrics; returns them, still locked.
    fn refresh(&self) -> std::sync::MutexGuard<'_, scrape::Scraped> {
        let s = self.scraped.lock().unwrap_or_else(|p| p.into_inner());
        s.refresh(&self.runtime, &self.partitions);
        s
    }

    /// A compact summary for the web dashboard: operation totals by outcome, merged latency
    /// buckets, partitions led, active actors, the orchestration counters and instances by
    /// status (of the partitions this node leads).
    pub fn summary(&self) -> serde_json::Value {
        let s = self.refresh();
        let (outcomes, buckets, count, sum) = self.ops().totals();
        json!({
            "node_id": self.partitions.node_id(),
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
            "orchestrations": s.orchestrations.summary(),
            "remote_workers": s.remote.summary(&self.runtime),
        })
    }

    /// Samples every partition's leadership until `stop` fires, counting leader (or term)
    /// changes into `perdure_raft_leader_changes_total`.
    pub async fn watch_leaders(self: Arc<Self>, stop: tokio::sync::oneshot::Receiver<()>) {
        self.leader_changes.watch(&self.partitions, stop).await;
    }
}

/// `GET /metrics`: the Prometheus text exposition.
pub async fn metrics(State(m): State<Arc<NodeMetrics>>) -> Response {
    // the refresh reads the state store (queue depths): on a blocking thread, never a worker
    let rendered = tokio::task::spawn_blocking(move || m.render())
        .await
        .unwrap_or_else(|e| Err(prometheus::Error::Msg(format!("metrics task: {e}"))));
    match rendered {
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
    let summary = tokio::task::spawn_blocking(move || m.summary()).await;
    Json(summary.unwrap_or_else(|e| json!({"error": format!("stats task: {e}")})))
}

/// `GET /metrics` and `GET /dashboard/stats`.
pub fn router(m: Arc<NodeMetrics>) -> axum::Router {
    axum::Router::new()
        .route(crate::routes::METRICS, axum::routing::get(metrics))
        .route(crate::routes::DASHBOARD_STATS, axum::routing::get(stats))
        .with_state(m)
}
