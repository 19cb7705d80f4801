//! What the orchestration workload's parts share on one node: the registry, the settings, the
//! activity slots, the completion waiters and the counters.

use super::metrics::OrchestrationMetrics;
use super::model::OrchestrationRegistry;
use crate::remote::queue::WorkQueue;
use perdure_types::config::OrchestrationsConfig;
use perdure_types::orchestration::InstanceRecord;
use perdure_types::InstanceId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{oneshot, Semaphore};

/// Node-wide state of the orchestration workload.
pub(crate) struct Shared {
    pub registry: OrchestrationRegistry,
    pub config: OrchestrationsConfig,
    /// Slots for activities running in-process (`orchestrations.max_concurrent_activities`).
    pub activity_slots: Arc<Semaphore>,
    pub waiters: Waiters,
    pub metrics: Arc<OrchestrationMetrics>,
    /// Work for remote workers issued by this node (names without a Rust function, once the
    /// node serves remote workers).
    pub remote: Arc<WorkQueue>,
}

impl Shared {
    /// Whether orchestrator `name` runs on remote workers: the node serves them and no Rust
    /// orchestrator of that name is registered (a Rust one keeps precedence).
    pub fn remote_orchestrator(&self, name: &str) -> bool {
        self.remote.config().is_some() && self.registry.get_orchestrator(name).is_err()
    }

    /// Whether activity `name` runs on remote workers (as for orchestrators).
    pub fn remote_activity(&self, name: &str) -> bool {
        self.remote.config().is_some() && self.registry.get_activity(name).is_err()
    }
}

/// Callers waiting for instances to finish (on the node leading their partition).
#[derive(Default)]
pub(crate) struct Waiters {
    map: Mutex<HashMap<InstanceId, Vec<oneshot::Sender<InstanceRecord>>>>,
}

impl Waiters {
    /// A receiver told when `id` finishes, with its record as committed then (or dropped when
    /// this node stops leading it: then the caller looks again).
    pub fn register(&self, id: &InstanceId) -> oneshot::Receiver<InstanceRecord> {
        let (tx, rx) = oneshot::channel();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let list = map.entry(id.clone()).or_default();
        list.retain(|t| !t.is_closed());
        list.push(tx);
        rx
    }

    /// `id` finished with `record` committed: wake its waiters.
    pub fn notify(&self, id: &InstanceId, record: &InstanceRecord) {
        let list = self
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        for tx in list.into_iter().flatten() {
            let _ = tx.send(record.clone());
        }
    }

    /// Drops every waiter of instances `f` selects (leadership of their partition ended).
    pub fn drop_where(&self, f: impl Fn(&InstanceId) -> bool) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|id, _| !f(id));
    }
}
