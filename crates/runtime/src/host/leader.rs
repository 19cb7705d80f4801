//! One partition's leadership on this node: the [`Leader`] context that workloads and services
//! share, and the loop that starts them when this node becomes leader (after the read barrier)
//! and stops them, workloads last, when it is not.

use super::proposer::Proposer;
use super::router::Router;
use super::{HostMetrics, PartitionService, Workload};
use crate::Error;
use perdure_cluster::Partitions;
use perdure_storage::state::PartitionState;
use perdure_types::command::{Command, Op, OpResult};
use perdure_types::PartitionId;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

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

/// A task aborted when this guard is dropped: a service ends with its leadership.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Follows partition `p`'s leadership until `stop` fires: starts the workloads and services
/// when this node becomes leader, stops them when it is not.
pub(crate) async fn leader_loop(
    p: PartitionId,
    router: Arc<Router>,
    workloads: Arc<[Arc<dyn Workload>]>,
    stop: Arc<Notify>,
) {
    let partitions = router.partitions().clone();
    let Ok(mut metrics) = partitions.metrics(p) else {
        return;
    };
    loop {
        let leader = match router.slot(p) {
            Some(slot) if slot.leader().is_none() && partitions.is_leader(p) => {
                caught_up(&partitions, p).await.map(|term| {
                    Arc::new(Leader {
                        partition: p,
                        term,
                        partitions: partitions.clone(),
                        proposer: slot.proposer.clone(),
                        outbox_notify: Notify::new(),
                        timer_notify: Notify::new(),
                        metrics: slot.metrics.clone(),
                    })
                })
            }
            _ => None,
        };
        if let Some(leader) = leader {
            if lead(&router, &workloads, leader, &stop, &mut metrics).await {
                return;
            }
        }
        tokio::select! {
            _ = stop.notified() => return,
            changed = metrics.changed() => if changed.is_err() { return },
            // a leader whose barrier failed tries again even if nothing changes
            _ = tokio::time::sleep(Duration::from_millis(100)), if partitions.is_leader(p) => {}
        }
    }
}

/// Runs one leadership: starts the workloads and services, holds until leadership goes or the
/// host stops, then stops them. Returns whether the host stopped.
async fn lead<T: Send + Sync>(
    router: &Arc<Router>,
    workloads: &[Arc<dyn Workload>],
    leader: Arc<Leader>,
    stop: &Notify,
    metrics: &mut tokio::sync::watch::Receiver<T>,
) -> bool {
    let p = leader.partition;
    let mut services: Vec<Box<dyn PartitionService>> = super::host_services(router);
    let mut started = 0;
    let mut failed = None;
    for w in workloads {
        match w.lead(leader.clone()).await {
            Ok(s) => {
                services.extend(s);
                started += 1;
            }
            Err(e) => {
                failed = Some((w.name(), e));
                break;
            }
        }
    }
    if let Some((name, e)) = failed {
        tracing::error!(partition = p, workload = name, error = %e, "could not start a workload");
        for w in &workloads[..started] {
            w.resign(p).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        return false;
    }
    let slot = router.slot(p).expect("the loop's own partition");
    slot.set_leader(Some(leader.clone()));
    tracing::info!(
        partition = p,
        term = leader.term,
        "leading: partition workloads started"
    );
    let running: Vec<AbortOnDrop> = services
        .into_iter()
        .map(|s| AbortOnDrop(tokio::spawn(s.run(leader.clone()))))
        .collect();
    // Hold leadership until it goes or we stop.
    let stopped = loop {
        tokio::select! {
            _ = stop.notified() => break true,
            changed = metrics.changed() => {
                if changed.is_err() || !leader.partitions.is_leader(p) { break changed.is_err(); }
            }
        }
    };
    // Stop serving, then the services, then the workloads, before anything else can be
    // proposed for them.
    slot.set_leader(None);
    drop(running);
    for w in workloads {
        w.resign(p).await;
    }
    tracing::info!(partition = p, "partition workloads stopped");
    stopped
}

/// A new leader's state machine may not yet have applied every entry committed before its term
/// (openraft applies them once the term's first entry commits). A workload started before that
/// would read a stale state and overwrite newer committed state with it: a lost update. So the
/// workloads start only after a linearizable read barrier: leadership confirmed by a quorum and
/// everything committed so far applied here.
async fn caught_up(partitions: &Partitions, p: PartitionId) -> Option<u64> {
    let term = |p| partitions.metrics(p).ok().map(|m| m.borrow().current_term);
    let before = term(p)?;
    match partitions.read(p).await {
        // the same leadership before and after the barrier: its term fences our commands
        Ok(_) if term(p) == Some(before) && partitions.is_leader(p) => Some(before),
        Ok(_) => None,
        Err(e) => {
            tracing::debug!(partition = p, error = %e, "leader not caught up yet");
            None
        }
    }
}
