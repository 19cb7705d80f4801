//! How workloads plug into the host: a [`Workload`] per kind of work, and the leader-only
//! [`PartitionService`]s that the host and the workloads run.

use super::leader::Leader;
use crate::Error;
use futures::future::BoxFuture;
use perdure_types::{PartitionId, Target};
use std::sync::Arc;

/// A service that runs on a partition only while this node leads it (outbox delivery, timers,
/// inbox scans, ...). It is started after the workloads and aborted when leadership goes.
pub trait PartitionService: Send + 'static {
    /// A short name, for logs.
    fn name(&self) -> &'static str;
    /// Runs until aborted.
    fn run(self: Box<Self>, leader: Arc<Leader>) -> BoxFuture<'static, ()>;
}

/// A kind of work hosted on the partitions (entities; orchestrations next). See "How to add a
/// partition workload" in docs/ARCHITECTURE.md.
pub trait Workload: Send + Sync + 'static {
    /// A short name, for logs.
    fn name(&self) -> &'static str;
    /// This node leads `leader.partition()` (caught up, fenced to `leader.term()`): start what
    /// the workload runs there and return its leader-only services.
    fn lead(
        &self,
        leader: Arc<Leader>,
    ) -> BoxFuture<'_, Result<Vec<Box<dyn PartitionService>>, Error>>;
    /// Leadership of `partition` ended (or the node stops): stop everything [`Workload::lead`]
    /// started before returning.
    fn resign(&self, partition: PartitionId) -> BoxFuture<'_, ()>;
    /// Messages were just received into the inboxes of `targets` on `partition`, which this node
    /// leads: run them (targets of other workloads are ignored).
    fn wake(&self, partition: PartitionId, targets: &[Target]);
}
