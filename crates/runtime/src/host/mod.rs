//! The partition host: the per-partition machinery that is not about any one workload.
//!
//! For every partition the host runs a proposer (commands of many callers batched into one Raft
//! entry) and a leader loop. While this node leads the partition, and only after a linearizable
//! read barrier (everything committed before the term applied here), the loop builds a
//! [`Leader`] context fenced to the term, starts every registered [`Workload`] on it (the entity
//! runtime is one) and runs their [`PartitionService`]s beside the host's own: outbox delivery
//! (`outbox.rs`), timers (`timers.rs`) and idempotency-id expiry (`expiry.rs`). When leadership
//! goes, the host stops serving the partition, stops the services, then every workload, before
//! anything else can be proposed for it. Requests reach a partition through the [`Router`]
//! (`router.rs`): the local leader, or the leader on another node over the transport.
//!
//! Dependencies point one way: workloads (e.g. [`crate::entities`]) use the host; the host knows
//! workloads only through the [`Workload`] trait.

mod clock;
mod deadline;
mod expiry;
mod leader;
mod lifecycle;
mod metrics;
mod outbox;
mod proposer;
mod router;
mod service;
mod slot;
mod timers;

pub(crate) use clock::now_ms;
pub use deadline::within;
pub(crate) use leader::read_blocking;
pub use leader::Leader;
pub use metrics::HostMetrics;
pub use router::{serve_weak, Route, Router, LEADER_WAIT};
pub use service::{PartitionService, Workload};

use crate::Error;
use perdure_cluster::Partitions;
use perdure_types::PartitionId;
use slot::Slot;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Collects the workloads before the host starts.
pub struct HostBuilder {
    partitions: Arc<Partitions>,
    workloads: Vec<Arc<dyn Workload>>,
}

impl std::fmt::Debug for HostBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.workloads.iter().map(|w| w.name()).collect();
        f.debug_struct("HostBuilder")
            .field("workloads", &names)
            .finish()
    }
}

impl HostBuilder {
    /// Adds a workload.
    pub fn workload(mut self, w: Arc<dyn Workload>) -> Self {
        self.workloads.push(w);
        self
    }

    /// Starts the host: a proposer and a leader loop per partition, and the peer service that
    /// takes proposals forwarded from other nodes (added before the partitions serve peers).
    pub fn start(self) -> Result<Arc<Host>, Error> {
        let partitions = self.partitions;
        let n = partitions.count();
        let slots: Arc<Vec<Slot>> = Arc::new(
            (0..n)
                .map(|p| {
                    let metrics = Arc::new(metrics::HostMetrics::default());
                    let proposer =
                        proposer::Proposer::start(partitions.clone(), p, metrics.clone());
                    Slot::new(proposer, metrics)
                })
                .collect(),
        );
        let workloads: Arc<[Arc<dyn Workload>]> = self.workloads.into();
        let router = Arc::new(Router::new(
            partitions.clone(),
            slots.clone(),
            workloads.clone(),
        ));
        router::register(&router)?;
        let mut stop = Vec::new();
        let mut loops = Vec::new();
        for p in 0..n {
            let s = Arc::new(Notify::new());
            stop.push(s.clone());
            loops.push(tokio::spawn(lifecycle::leader_loop(
                p,
                router.clone(),
                workloads.clone(),
                s,
            )));
        }
        Ok(Arc::new(Host {
            partitions,
            router,
            stop,
            loops: Mutex::new(loops),
        }))
    }
}

/// The partition host of one node.
pub struct Host {
    partitions: Arc<Partitions>,
    router: Arc<Router>,
    stop: Vec<Arc<Notify>>,
    loops: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("partitions", &self.partitions.count())
            .finish_non_exhaustive()
    }
}

impl Host {
    /// A host over `partitions`; add workloads, then [`HostBuilder::start`].
    pub fn builder(partitions: Arc<Partitions>) -> HostBuilder {
        HostBuilder {
            partitions,
            workloads: Vec::new(),
        }
    }

    /// The partitions underneath.
    pub fn partitions(&self) -> &Arc<Partitions> {
        &self.partitions
    }

    /// Routes requests to partition leaders.
    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// Counters of partition `p`'s host.
    pub fn metrics(&self, p: PartitionId) -> Option<&HostMetrics> {
        self.router.slot(p).map(|s| s.metrics.as_ref())
    }

    /// Partitions whose leader is this node but whose workloads are not running yet (they start
    /// a moment after leadership is won). Empty when every led partition can serve.
    pub fn starting(&self) -> Vec<PartitionId> {
        (0..self.partitions.count())
            .filter(|&p| self.partitions.is_leader(p) && self.router.local(p).is_none())
            .collect()
    }

    /// Requests this node has forwarded to other nodes' leaders (a client that routes by itself
    /// keeps this near zero).
    pub fn forwarded(&self) -> u64 {
        self.router.forwarded()
    }

    /// Stops every partition's workloads and services; requests in flight get
    /// [`Error::Unavailable`].
    pub async fn shutdown(&self) {
        for s in &self.stop {
            s.notify_one();
        }
        let loops: Vec<_> =
            std::mem::take(&mut *self.loops.lock().unwrap_or_else(|p| p.into_inner()));
        for l in loops {
            let _ = l.await;
        }
    }
}
