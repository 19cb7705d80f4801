//! The service's Prometheus metrics, registered in the node's registry:
//!
//! - `perdure_grpc_requests_total{method,code}`: RPCs answered, by method and gRPC status code
//!   (`ok`, `not_found`, ...);
//! - `perdure_grpc_request_duration_seconds{method}`: how long they took (a server stream: until
//!   its response began);
//! - `perdure_grpc_workers_connected`, `perdure_grpc_streams`: workers that said `Hello` and hold a
//!   `GetWorkItems` stream, and open server streams;
//! - `perdure_grpc_work_items_total{kind,outcome}`: work items by kind (`orchestrator`,
//!   `activity`, `entity`) and outcome (`dispatched`, `completed`, `abandoned`, `redispatched`).
//!
//! Labels are bounded: `method` is one of [`METHODS`], `code` one of gRPC's 17 codes, `kind` and
//! `outcome` the fixed lists above.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};
use std::time::Duration;

/// Every RPC of the service, the values of the `method` label.
pub const METHODS: [&str; 26] = [
    "Hello",
    "StartInstance",
    "GetInstance",
    "RewindInstance",
    "RestartInstance",
    "WaitForInstanceStart",
    "WaitForInstanceCompletion",
    "RaiseEvent",
    "TerminateInstance",
    "SuspendInstance",
    "ResumeInstance",
    "QueryInstances",
    "ListInstanceIds",
    "PurgeInstances",
    "StreamInstanceHistory",
    "GetWorkItems",
    "CompleteActivityTask",
    "CompleteOrchestratorTask",
    "CompleteEntityTask",
    "AbandonTaskActivityWorkItem",
    "AbandonTaskOrchestratorWorkItem",
    "AbandonTaskEntityWorkItem",
    "SignalEntity",
    "GetEntity",
    "QueryEntities",
    "CleanEntityStorage",
];

/// The kinds of work items (the `kind` label).
pub const WORK_ITEM_KINDS: [&str; 3] = ["orchestrator", "activity", "entity"];
/// What became of a work item (the `outcome` label).
pub const WORK_ITEM_OUTCOMES: [&str; 4] = ["dispatched", "completed", "abandoned", "redispatched"];

/// Buckets of the request duration, in seconds (long polls reach the minutes).
const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 120.0,
];

/// The service's metrics.
#[derive(Debug, Clone)]
pub struct GrpcMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    /// Workers connected (a `GetWorkItems` stream open), for the worker RPCs to keep.
    pub workers_connected: IntGauge,
    /// Server streams open (`GetWorkItems`, `StreamInstanceHistory`).
    pub streams: IntGauge,
    /// Work items by kind and outcome (see [`GrpcMetrics::work_item`]).
    work_items: IntCounterVec,
}

impl GrpcMetrics {
    /// The metrics, registered in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self::unregistered()?;
        registry.register(Box::new(m.requests.clone()))?;
        registry.register(Box::new(m.duration.clone()))?;
        registry.register(Box::new(m.workers_connected.clone()))?;
        registry.register(Box::new(m.streams.clone()))?;
        registry.register(Box::new(m.work_items.clone()))?;
        Ok(m)
    }

    /// The metrics, measured but registered nowhere (a node with `metrics.enabled = false`).
    pub fn unregistered() -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                "perdure_grpc_requests_total",
                "gRPC requests answered, by method and status code.",
            ),
            &["method", "code"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "perdure_grpc_request_duration_seconds",
                "How long gRPC requests took, by method.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["method"],
        )?;
        let workers_connected = IntGauge::new(
            "perdure_grpc_workers_connected",
            "Durable Task workers connected (a GetWorkItems stream open).",
        )?;
        let streams = IntGauge::new("perdure_grpc_streams", "gRPC server streams open.")?;
        let work_items = IntCounterVec::new(
            Opts::new(
                "perdure_grpc_work_items_total",
                "Work items sent to workers, by kind and outcome.",
            ),
            &["kind", "outcome"],
        )?;
        for method in METHODS {
            duration.with_label_values(&[method]);
            requests.with_label_values(&[method, "ok"]);
        }
        for kind in WORK_ITEM_KINDS {
            for outcome in WORK_ITEM_OUTCOMES {
                work_items.with_label_values(&[kind, outcome]);
            }
        }
        Ok(Self {
            requests,
            duration,
            workers_connected,
            streams,
            work_items,
        })
    }

    /// Counts an answered RPC. `method` must be one of [`METHODS`].
    pub fn observe(&self, method: &'static str, code: tonic::Code, took: Duration) {
        debug_assert!(METHODS.contains(&method), "{method}");
        self.requests
            .with_label_values(&[method, code_label(code)])
            .inc();
        self.duration
            .with_label_values(&[method])
            .observe(took.as_secs_f64());
    }

    /// Counts a work item of `kind` ([`WORK_ITEM_KINDS`]) reaching `outcome`
    /// ([`WORK_ITEM_OUTCOMES`]).
    pub fn work_item(&self, kind: &'static str, outcome: &'static str) {
        debug_assert!(WORK_ITEM_KINDS.contains(&kind) && WORK_ITEM_OUTCOMES.contains(&outcome));
        self.work_items.with_label_values(&[kind, outcome]).inc();
    }
}

/// A status code as a label (`ok`, `deadline_exceeded`, ...).
pub fn code_label(code: tonic::Code) -> &'static str {
    use tonic::Code as C;
    match code {
        C::Ok => "ok",
        C::Cancelled => "cancelled",
        C::Unknown => "unknown",
        C::InvalidArgument => "invalid_argument",
        C::DeadlineExceeded => "deadline_exceeded",
        C::NotFound => "not_found",
        C::AlreadyExists => "already_exists",
        C::PermissionDenied => "permission_denied",
        C::ResourceExhausted => "resource_exhausted",
        C::FailedPrecondition => "failed_precondition",
        C::Aborted => "aborted",
        C::OutOfRange => "out_of_range",
        C::Unimplemented => "unimplemented",
        C::Internal => "internal",
        C::Unavailable => "unavailable",
        C::DataLoss => "data_loss",
        C::Unauthenticated => "unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_registered_with_bounded_labels() {
        let r = Registry::new();
        let m = GrpcMetrics::new(&r).unwrap();
        m.observe(
            "GetInstance",
            tonic::Code::NotFound,
            Duration::from_millis(3),
        );
        m.work_item("activity", "dispatched");
        m.workers_connected.inc();
        let names: Vec<String> = r.gather().iter().map(|f| f.name().to_string()).collect();
        for n in [
            "perdure_grpc_requests_total",
            "perdure_grpc_request_duration_seconds",
            "perdure_grpc_workers_connected",
            "perdure_grpc_streams",
            "perdure_grpc_work_items_total",
        ] {
            assert!(names.iter().any(|x| x == n), "{n} in {names:?}");
        }
        assert_eq!(
            m.requests
                .with_label_values(&["GetInstance", "not_found"])
                .get(),
            1
        );
        // a second registration of the same names in the same registry is refused
        assert!(GrpcMetrics::new(&r).is_err());
    }
}
