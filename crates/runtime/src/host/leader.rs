//! One partition's leadership on this node: the [`Leader`] context that workloads and services
//! share, fenced to the term it started in.

use super::metrics::HostMetrics;
use super::proposer::Proposer;
use crate::Error;
use perdure_cluster::Partitions;
use perdure_storage::state::PartitionState;
use perdure_types::command::{Command, Op, OpResult};
use perdure_types::PartitionId;
use std::sync::Arc;
use tokio::sync::Notify;

/// Runs a store read `f` on a blocking thread (a read may wait on the disk: never on a runtime
/// worker).
pub(crate) async fn read_blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, Error> + Send + 'static,
) -> Result<R, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Unavailable(format!("state read task: {e}")))?
}

/// One leadership of one partition on this node: what its workloads and services share.
pub struct Leader {
    partition: PartitionId,
    /// The Raft term this leadership started in: every command proposed through
    /// [`Leader::propose`] is fenced to it, so none can take effect under a later leadership.
    term: u64,
    partitions: Arc<Partitions>,
    proposer: Proposer,
    /// Woken when something was put in the outbox.
    outbox_notify: Notify,
    /// Woken when a timer was scheduled.
    timer_notify: Notify,
    metrics: Arc<HostMetrics>,
}

impl std::fmt::Debug for Leader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leader")
            .field("partition", &self.partition)
            .field("term", &self.term)
            .finish_non_exhaustive()
    }
}

impl Leader {
    /// The context of a leadership of `partition` that started in `term`.
    pub(crate) fn new(
        partition: PartitionId,
        term: u64,
        partitions: Arc<Partitions>,
        proposer: Proposer,
        metrics: Arc<HostMetrics>,
    ) -> Self {
        Self {
            partition,
            term,
            partitions,
            proposer,
            outbox_notify: Notify::new(),
            timer_notify: Notify::new(),
            metrics,
        }
    }

    /// The partition.
    pub fn partition(&self) -> PartitionId {
        self.partition
    }

    /// The term this leadership started in.
    pub fn term(&self) -> u64 {
        self.term
    }

    /// The partitions underneath.
    pub fn partitions(&self) -> &Arc<Partitions> {
        &self.partitions
    }

    /// Proposes `ops` as one atomic command fenced to this leadership's term; answers their
    /// results once committed and applied.
    pub async fn propose(&self, ops: Vec<Op>) -> Result<Vec<OpResult>, Error> {
        self.proposer
            .propose(Command::new(ops).fenced(self.term))
            .await
    }

    /// Proposes `command` as it is (not fenced: for commands safe under any leadership, such
    /// as expiring idempotency ids).
    pub async fn propose_command(&self, command: Command) -> Result<Vec<OpResult>, Error> {
        self.proposer.propose(command).await
    }

    /// The partition's applied state on this node (this leadership started caught up, and the
    /// workloads' own commits keep it current for what they read).
    pub fn state(&self) -> Result<PartitionState, Error> {
        Ok(self.partitions.local_state(self.partition)?)
    }

    /// Runs `f` over the partition's applied state on a blocking thread (a store read may wait
    /// on the disk: never on the runtime's workers) and returns what it read.
    pub async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&PartitionState) -> Result<R, perdure_storage::Error> + Send + 'static,
    ) -> Result<R, Error> {
        let state = self.state()?;
        read_blocking(move || f(&state).map_err(|e| Error::Unavailable(e.to_string()))).await
    }

    /// Confirms this node still leads (a quorum read barrier), without writing.
    pub async fn confirm(&self) -> Result<(), Error> {
        self.partitions.read(self.partition).await?;
        Ok(())
    }

    /// Something was put in the outbox: deliver it soon.
    pub fn outbox_changed(&self) {
        self.outbox_notify.notify_one();
    }

    /// A timer was scheduled: look at the timers again.
    pub fn timers_changed(&self) {
        self.timer_notify.notify_one();
    }

    pub(crate) async fn outbox_notified(&self) {
        self.outbox_notify.notified().await
    }

    pub(crate) async fn timers_notified(&self) {
        self.timer_notify.notified().await
    }

    pub(crate) fn metrics(&self) -> &HostMetrics {
        &self.metrics
    }
}
