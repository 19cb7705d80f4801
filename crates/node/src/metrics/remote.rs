//! Remote workers' metrics, read at scrape time from the runtime (`perdure_runtime::remote`):
//! the work items this node issued, by kind and what became of them (a worker connected to any
//! node may have taken them), and the work waiting here for a worker.
//!
//! - `perdure_remote_work_items_total{kind, event}`: `kind` orchestrator | activity | entity,
//!   `event` dispatched | completed | abandoned | redispatched (after an abandon, a lost session
//!   or an expired lease)
//! - `perdure_remote_work_pending{kind}`: queued here, not handed to a worker yet
//!
//! The gRPC edge's own counters (`perdure_grpc_*`) count what this node's workers did.

use super::scrape::{gauge_vec, mirror};
use perdure_runtime::remote::{WorkEvent, WorkKind};
use perdure_runtime::Runtime;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use serde_json::{json, Value};

/// The mirrored counters and the pending gauge.
#[derive(Debug)]
pub(super) struct RemoteGauges {
    items: IntCounterVec,
    pending: IntGaugeVec,
}

impl RemoteGauges {
    pub(super) fn new(r: &Registry) -> prometheus::Result<Self> {
        let items = IntCounterVec::new(
            Opts::new(
                "perdure_remote_work_items_total",
                "Work items for remote (gRPC) workers this node issued, by kind and event: dispatched, completed, abandoned, redispatched (after an abandon, a lost worker session or an expired lease).",
            ),
            &["kind", "event"],
        )?;
        r.register(Box::new(items.clone()))?;
        for k in WorkKind::ALL {
            for e in WorkEvent::ALL {
                items.with_label_values(&[k.label(), e.label()]);
            }
        }
        let pending = gauge_vec(
            r,
            "perdure_remote_work_pending",
            "Work items queued on this node for a remote (gRPC) worker, not handed out yet, by kind.",
            &["kind"],
        )?;
        for k in WorkKind::ALL {
            pending.with_label_values(&[k.label()]);
        }
        Ok(Self { items, pending })
    }

    pub(super) fn refresh(&self, runtime: &Runtime) {
        let o = runtime.orchestrations();
        let stats = o.remote_stats();
        for k in WorkKind::ALL {
            for e in WorkEvent::ALL {
                mirror(
                    &self.items.with_label_values(&[k.label(), e.label()]),
                    stats.get(k, e),
                );
            }
        }
        let pending = o.remote_pending();
        for k in WorkKind::ALL {
            self.pending
                .with_label_values(&[k.label()])
                .set(pending[k as usize] as i64);
        }
    }

    /// The dashboard's view: the workers connected to this node and the work waiting here.
    pub(super) fn summary(&self, runtime: &Runtime) -> Value {
        let o = runtime.orchestrations();
        let pending = o.remote_pending();
        let workers: Vec<Value> = o
            .workers()
            .into_iter()
            .map(|w| {
                json!({
                    "session": w.session,
                    "peer": w.peer,
                    "connected_at_ms": w.connected_at,
                    "holding_orchestrations": w.holding.0,
                    "holding_activities": w.holding.1,
                    "received": w.received,
                    "filtered": w.filtered,
                })
            })
            .collect();
        json!({
            "served": o.serves_remote_workers(),
            "workers": workers,
            "pending": {
                "orchestrator": pending[0],
                "activity": pending[1],
                "entity": pending[2],
            },
        })
    }
}
