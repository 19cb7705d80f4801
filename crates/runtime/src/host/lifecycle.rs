//! The life of a partition's leadership on this node: the loop that starts the workloads and
//! services when this node becomes leader (after the read barrier) and stops them, workloads
//! last, when it is not.

use super::leader::Leader;
use super::router::Router;
use super::service::{PartitionService, Workload};
use super::{expiry, outbox, timers};
use perdure_cluster::Partitions;
use perdure_types::PartitionId;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

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
                    Arc::new(Leader::new(
                        p,
                        term,
                        partitions.clone(),
                        slot.proposer.clone(),
                        slot.metrics.clone(),
                    ))
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
    let p = leader.partition();
    let mut services: Vec<Box<dyn PartitionService>> = host_services(router);
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
        term = leader.term(),
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
                if changed.is_err() || !leader.partitions().is_leader(p) { break changed.is_err(); }
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

/// The host's own leader-only services, run on every partition this node leads.
fn host_services(router: &Arc<Router>) -> Vec<Box<dyn PartitionService>> {
    vec![
        Box::new(outbox::OutboxDelivery::new(router.clone())),
        Box::new(timers::TimerService),
        Box::new(expiry::IdExpiry),
    ]
}
