//! Entity-operation metrics, their handles resolved at start for every registered type and
//! operation: `perdure_entity_operations_total{type,kind,operation,outcome}` and
//! `perdure_entity_operation_duration_seconds{type,kind}`.
//!
//! Recording costs a hash lookup on `&str` and a few atomic increments; unknown types and
//! operations are counted under `type="other"`, `operation="other"` (bounded labels: nothing a
//! client chose becomes a label).

use axum::http::StatusCode;
use perdure_runtime::Registry as EntityTypes;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
};
use std::collections::HashMap;
use std::time::Duration;

/// Latency buckets of HTTP requests and entity operations, in seconds (250 µs to 10 s).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

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
    /// Every kind, in the order of the `other` handles.
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
            "unavailable" | "internal" | "outcome_unknown" | "deadline_exceeded" => {
                Outcome::Unavailable
            }
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
    /// Registers the two metric families in `registry` and resolves their handles for every type
    /// and operation of `types`.
    pub(super) fn new(registry: &Registry, types: &EntityTypes) -> prometheus::Result<Self> {
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
        let mut by_type = HashMap::new();
        for name in types.names() {
            let t = types
                .get(name)
                .map_err(|e| prometheus::Error::Msg(format!("entity type {name} vanished: {e}")))?;
            let ops = t.operations();
            let of_kind = |kind| {
                ops.iter()
                    .map(|&op| (op, handles(name, kind, op)))
                    .collect()
            };
            let type_handles = TypeHandles {
                signal: of_kind(OpKind::Signal),
                call: of_kind(OpKind::Call),
                read: handles(name, OpKind::Read, READ_OP),
                other_op: [
                    handles(name, OpKind::Signal, OTHER),
                    handles(name, OpKind::Call, OTHER),
                ],
            };
            by_type.insert(name, type_handles);
        }
        let other = OpKind::ALL.map(|k| handles(OTHER, k, OTHER));
        Ok(Self {
            types: by_type,
            other,
        })
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

    /// Totals by outcome over every type and operation, and the merged latency buckets
    /// (`(upper bound, cumulative count)`), for the web dashboard.
    pub(super) fn totals(&self) -> ([u64; 4], Vec<(f64, u64)>, u64, f64) {
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
