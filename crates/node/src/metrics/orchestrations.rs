//! The orchestration workload's metrics, read at scrape time: the runtime's counters
//! ([`OrchestrationMetrics`], atomics it keeps anyway) mirrored into Prometheus counters and
//! gauges, its two histograms exposed as they are by a collector of their own
//! ([`RuntimeHistograms`]), and, for the partitions this node leads, instances by status and
//! pending work items from bounded scans of the instances table.
//!
//! - `perdure_orchestration_instances_started_total`, `_turns_total`, `_turns_fenced_total`,
//!   `_history_events_total`, `_replays_total`, `_activities_started_total`,
//!   `_activities_total{result}`, `_executions_total{status}`, `_poisoned_total`, `_purged_total`
//! - gauges `perdure_orchestration_live_instances`, `_activities_pending`,
//!   `_instances{status}`, `_work_items_pending`
//! - histograms `perdure_orchestration_turn_duration_seconds`,
//!   `perdure_orchestration_history_events_at_completion`
//!
//! Every label has a fixed set of values, all created at start: no label carries an instance id
//! or an orchestrator name.

use super::scrape::{counter, gauge, gauge_vec, mirror};
use perdure_cluster::Partitions;
use perdure_runtime::orchestrations::metrics::{HISTORY_BUCKETS, TURN_BUCKETS};
use perdure_runtime::orchestrations::OrchestrationMetrics;
use perdure_runtime::Runtime;
use perdure_types::orchestration::RuntimeStatus;
use perdure_types::PartitionId;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{Bucket, Histogram, Metric, MetricFamily, MetricType};
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How many instance records (and, apart, work items) a scrape reads per partition at most.
pub const INSTANCE_SCAN_CAP: usize = 100_000;

/// The instance scans run at most this often; scrapes in between (several Prometheus servers,
/// dashboards polling every second) get the last counts.
const INSTANCE_SCAN_EVERY: Duration = Duration::from_secs(1);

/// The `status` label of an instance status (Prometheus style: `continued_as_new`).
fn status_label(s: RuntimeStatus) -> &'static str {
    match s {
        RuntimeStatus::Pending => "pending",
        RuntimeStatus::Running => "running",
        RuntimeStatus::Completed => "completed",
        RuntimeStatus::ContinuedAsNew => "continued_as_new",
        RuntimeStatus::Failed => "failed",
        RuntimeStatus::Terminated => "terminated",
        RuntimeStatus::Suspended => "suspended",
    }
}

/// The mirrored counters and gauges, and the scanned gauges.
#[derive(Debug)]
pub(super) struct OrchestrationGauges {
    started: IntCounter,
    turns: IntCounter,
    turns_fenced: IntCounter,
    events: IntCounter,
    replays: IntCounter,
    activities_started: IntCounter,
    /// `result`: completed, failed.
    activities_completed: IntCounter,
    activities_failed: IntCounter,
    /// `status`: completed, failed, terminated, continued_as_new.
    executions: [IntCounter; 4],
    poisoned: IntCounter,
    purged: IntCounter,
    live: IntGauge,
    activities_pending: IntGauge,
    /// `status`: every [`RuntimeStatus`], in [`RuntimeStatus::ALL`] order.
    instances: [IntGauge; 7],
    work_items: IntGauge,
    /// When the instance scans last ran.
    scanned: Mutex<Option<Instant>>,
}

/// The `status` values of `perdure_orchestration_executions_total`.
const ENDED: [&str; 4] = ["completed", "failed", "terminated", "continued_as_new"];

impl OrchestrationGauges {
    /// Registers the families in `r` (and the histograms' collector, over `metrics`).
    pub(super) fn new(
        r: &Registry,
        metrics: Arc<OrchestrationMetrics>,
    ) -> prometheus::Result<Self> {
        let activities = IntCounterVec::new(
            Opts::new(
                "perdure_orchestration_activities_total",
                "Activities this node ran to an end, by result: completed (returned a value), failed (an error, a panic, an unknown activity).",
            ),
            &["result"],
        )?;
        r.register(Box::new(activities.clone()))?;
        let executions = IntCounterVec::new(
            Opts::new(
                "perdure_orchestration_executions_total",
                "Orchestration executions that ended on this node, by status: completed, failed (poisoned ones included), terminated, continued_as_new.",
            ),
            &["status"],
        )?;
        r.register(Box::new(executions.clone()))?;
        let instances = gauge_vec(
            r,
            "perdure_orchestration_instances",
            "Orchestration instances stored in the partitions this node leads, by runtime status (0 elsewhere; at most 100 000 records read per partition).",
            &["status"],
        )?;
        r.register(Box::new(RuntimeHistograms::new(metrics)?))?;
        Ok(Self {
            started: counter(
                r,
                "perdure_orchestration_instances_started_total",
                "Orchestration instances started on this node (start requests committed, sub-orchestrations included).",
            )?,
            turns: counter(
                r,
                "perdure_orchestration_turns_total",
                "Orchestration turns committed on this node.",
            )?,
            turns_fenced: counter(
                r,
                "perdure_orchestration_turns_fenced_total",
                "Orchestration turns fenced out (computed on a record that changed meanwhile; nothing applied) and recomputed.",
            )?,
            events: counter(
                r,
                "perdure_orchestration_history_events_total",
                "History events appended by the orchestration turns of this node.",
            )?,
            replays: counter(
                r,
                "perdure_orchestration_replays_total",
                "Orchestration histories replayed to rebuild a live orchestrator (after a leader change, a fenced turn or passivation).",
            )?,
            activities_started: counter(
                r,
                "perdure_orchestration_activities_started_total",
                "Activities started on this node.",
            )?,
            activities_completed: activities.with_label_values(&["completed"]),
            activities_failed: activities.with_label_values(&["failed"]),
            executions: ENDED.map(|s| executions.with_label_values(&[s])),
            poisoned: counter(
                r,
                "perdure_orchestration_poisoned_total",
                "Orchestration executions failed as poison: a turn that kept failing (orchestrations.max_dispatches times in a row).",
            )?,
            purged: counter(
                r,
                "perdure_orchestration_purged_total",
                "Orchestration instances purged on this node (by request or retention).",
            )?,
            live: gauge(
                r,
                "perdure_orchestration_live_instances",
                "Orchestration instances live in memory on this node (a task and its orchestrator).",
            )?,
            activities_pending: gauge(
                r,
                "perdure_orchestration_activities_pending",
                "Activities waiting for a slot or running on this node now.",
            )?,
            instances: RuntimeStatus::ALL.map(|s| instances.with_label_values(&[status_label(s)])),
            work_items: gauge(
                r,
                "perdure_orchestration_work_items_pending",
                "Activity work items stored and not completed yet, in the partitions this node leads (0 elsewhere; at most 100 000 counted per partition).",
            )?,
            scanned: Mutex::new(None),
        })
    }

    /// Reads the runtime's counters and, at most every [`INSTANCE_SCAN_EVERY`], scans the
    /// instances of the partitions in `led`.
    pub(super) fn refresh(&self, runtime: &Runtime, partitions: &Partitions, led: &[PartitionId]) {
        let m = runtime.orchestrations().metrics();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        mirror(&self.started, get(&m.started));
        mirror(&self.turns, get(&m.turns));
        mirror(&self.turns_fenced, get(&m.turns_fenced));
        mirror(&self.events, get(&m.events));
        mirror(&self.replays, get(&m.replays));
        mirror(&self.activities_started, get(&m.activities_started));
        mirror(&self.activities_completed, get(&m.activities_completed));
        mirror(&self.activities_failed, get(&m.activities_failed));
        let ended = [&m.completed, &m.failed, &m.terminated, &m.continued_as_new];
        for (c, v) in self.executions.iter().zip(ended) {
            mirror(c, get(v));
        }
        mirror(&self.poisoned, get(&m.poisoned));
        mirror(&self.purged, get(&m.purged));
        self.live.set(get(&m.live) as i64);
        self.activities_pending
            .set(get(&m.activities_pending) as i64);

        let mut scanned = self.scanned.lock().unwrap_or_else(|p| p.into_inner());
        if scanned.is_some_and(|at| at.elapsed() < INSTANCE_SCAN_EVERY) {
            return;
        }
        *scanned = Some(Instant::now());
        let mut by_status = [0u64; 7];
        let mut work_items = 0usize;
        for &p in led {
            let Ok(state) = partitions.local_state(p) else {
                continue;
            };
            let table = state.instances();
            match table.count_by_status(INSTANCE_SCAN_CAP) {
                Ok(counts) => {
                    for (s, n) in counts {
                        if let Some(i) = RuntimeStatus::ALL.iter().position(|&a| a == s) {
                            by_status[i] += n;
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(partition = p, error = %e, "instances not counted for metrics")
                }
            }
            work_items += table.count_work_items(INSTANCE_SCAN_CAP);
        }
        for (g, n) in self.instances.iter().zip(by_status) {
            g.set(n as i64);
        }
        self.work_items.set(work_items as i64);
    }

    /// The web dashboard's orchestration summary (as of the last refresh).
    pub(super) fn summary(&self) -> Value {
        let instances: serde_json::Map<String, Value> = RuntimeStatus::ALL
            .iter()
            .zip(&self.instances)
            .map(|(&s, g)| (status_label(s).to_string(), json!(g.get())))
            .collect();
        let executions: serde_json::Map<String, Value> = ENDED
            .iter()
            .zip(&self.executions)
            .map(|(&s, c)| (s.to_string(), json!(c.get())))
            .collect();
        json!({
            "started": self.started.get(),
            "turns": self.turns.get(),
            "turns_fenced": self.turns_fenced.get(),
            "history_events": self.events.get(),
            "activities": {
                "started": self.activities_started.get(),
                "completed": self.activities_completed.get(),
                "failed": self.activities_failed.get(),
                "pending": self.activities_pending.get(),
            },
            "executions": executions,
            "poisoned": self.poisoned.get(),
            "purged": self.purged.get(),
            "live": self.live.get(),
            "instances": instances,
            "work_items_pending": self.work_items.get(),
        })
    }
}

/// The runtime's two histograms, exposed from its atomics at gather time as Prometheus
/// histograms (`_bucket{le}`, `_sum`, `_count`): turn latency and history size at the end of an
/// execution.
struct RuntimeHistograms {
    metrics: Arc<OrchestrationMetrics>,
    turn: Desc,
    history: Desc,
}

impl RuntimeHistograms {
    fn new(metrics: Arc<OrchestrationMetrics>) -> prometheus::Result<Self> {
        let desc = |name: &str, help: &str| {
            Desc::new(name.into(), help.into(), Vec::new(), HashMap::new())
        };
        Ok(Self {
            metrics,
            turn: desc(
                "perdure_orchestration_turn_duration_seconds",
                "Latency of orchestration turns: from a turn's start (its events read) to its command committed.",
            )?,
            history: desc(
                "perdure_orchestration_history_events_at_completion",
                "History size (events) of orchestration executions when they ended: completed, failed, terminated or continued as new.",
            )?,
        })
    }
}

/// A histogram family from per-bucket (not cumulative) counts, the last one past every bound.
fn histogram(desc: &Desc, bounds: &[f64], counts: &[AtomicU64], sum: f64) -> MetricFamily {
    let mut cumulative = 0u64;
    let buckets = bounds
        .iter()
        .zip(counts)
        .map(|(&le, c)| {
            cumulative += c.load(Ordering::Relaxed);
            let mut b = Bucket::default();
            b.set_upper_bound(le);
            b.set_cumulative_count(cumulative);
            b
        })
        .collect();
    let count = cumulative
        + counts
            .get(bounds.len())
            .map_or(0, |c| c.load(Ordering::Relaxed));
    let mut h = Histogram::default();
    h.set_bucket(buckets);
    h.set_sample_count(count);
    h.set_sample_sum(sum);
    let mut m = Metric::default();
    m.set_histogram(h);
    let mut f = MetricFamily::default();
    f.set_name(desc.fq_name.clone());
    f.set_help(desc.help.clone());
    f.set_field_type(MetricType::HISTOGRAM);
    f.set_metric(vec![m]);
    f
}

impl Collector for RuntimeHistograms {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.turn, &self.history]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let m = &self.metrics;
        vec![
            histogram(
                &self.turn,
                &TURN_BUCKETS,
                &m.turn_buckets,
                m.turn_sum_us.load(Ordering::Relaxed) as f64 / 1e6,
            ),
            histogram(
                &self.history,
                &HISTORY_BUCKETS,
                &m.history_events_at_end,
                m.history_events_at_end_sum.load(Ordering::Relaxed) as f64,
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{Encoder, TextEncoder};

    #[test]
    fn the_runtime_histograms_are_exposed_as_prometheus_histograms() {
        let m = Arc::new(OrchestrationMetrics::default());
        m.turn_took(1_500); // 1.5 ms: the 0.002 bucket
        m.turn_took(9_000_000); // 9 s: past the last bound
        m.execution_ended(42);
        let r = Registry::new();
        r.register(Box::new(RuntimeHistograms::new(m).unwrap()))
            .unwrap();
        let mut out = Vec::new();
        TextEncoder::new().encode(&r.gather(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        for line in [
            "# TYPE perdure_orchestration_turn_duration_seconds histogram",
            "perdure_orchestration_turn_duration_seconds_bucket{le=\"0.001\"} 0",
            "perdure_orchestration_turn_duration_seconds_bucket{le=\"0.002\"} 1",
            "perdure_orchestration_turn_duration_seconds_bucket{le=\"5\"} 1",
            "perdure_orchestration_turn_duration_seconds_bucket{le=\"+Inf\"} 2",
            "perdure_orchestration_turn_duration_seconds_sum 9.0015",
            "perdure_orchestration_turn_duration_seconds_count 2",
            "# TYPE perdure_orchestration_history_events_at_completion histogram",
            "perdure_orchestration_history_events_at_completion_bucket{le=\"10\"} 0",
            "perdure_orchestration_history_events_at_completion_bucket{le=\"100\"} 1",
            "perdure_orchestration_history_events_at_completion_bucket{le=\"1000000\"} 1",
            "perdure_orchestration_history_events_at_completion_bucket{le=\"+Inf\"} 1",
            "perdure_orchestration_history_events_at_completion_sum 42",
            "perdure_orchestration_history_events_at_completion_count 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }
}
