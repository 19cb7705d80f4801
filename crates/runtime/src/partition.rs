//! One partition's runtime on this node: while this node leads the partition, a processor actor
//! and the partition's background services run; when leadership goes, they stop first.
//!
//! Services (leader only):
//! - outbox delivery: messages in this partition's outbox go, in sequence order, to the
//!   destination partition as `Receive` ops (deduplicated there by `(source, seq)`), then are
//!   acknowledged here; the target entities are told to read their inboxes.
//! - timers: due scheduled signals move to the outbox (atomically with their removal).
//! - expiry of idempotency keys past their window.
//! - inbox scan: entities with pending inbox messages are told to run them (at the start of
//!   leadership and periodically, so nothing waits for a lost notification).

use crate::actor::EntityMsg;
use crate::envelope::Envelope;
use crate::forward::{self, Local};
use crate::processor::{Processor, ProcessorMsg};
use crate::proposer::Proposer;
use crate::{Error, Registry};
use perdure_cluster::Partitions;
use perdure_types::command::{Command, Op, OpResult};
use perdure_types::config::EntitiesConfig;
use perdure_types::{EntityId, PartitionId};
use ractor::{Actor, ActorRef};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::Notify;

/// Counters of one partition's runtime.
#[derive(Debug, Default)]
pub struct PartitionMetrics {
    activations: AtomicU64,
    passivations: AtomicU64,
    delivered: AtomicU64,
    timers_fired: AtomicU64,
}

impl PartitionMetrics {
    pub(crate) fn activated(&self) {
        self.activations.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn passivated(&self) {
        self.passivations.fetch_add(1, Ordering::Relaxed);
    }
    /// Entity actors activated so far.
    pub fn activations(&self) -> u64 {
        self.activations.load(Ordering::Relaxed)
    }
    /// Entity actors passivated so far.
    pub fn passivations(&self) -> u64 {
        self.passivations.load(Ordering::Relaxed)
    }
    /// Entity actors active now.
    pub fn active(&self) -> u64 {
        self.activations().saturating_sub(self.passivations())
    }
    /// Messages delivered from this partition's outbox.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }
    /// Timers fired.
    pub fn timers_fired(&self) -> u64 {
        self.timers_fired.load(Ordering::Relaxed)
    }
}

/// What every actor and service of one partition shares.
pub(crate) struct Shared {
    pub partition: PartitionId,
    /// The Raft term this leadership started in: every command this runtime proposes is fenced
    /// to it, so none can take effect under a later leadership.
    pub term: u64,
    pub partitions: Arc<Partitions>,
    pub registry: Registry,
    pub config: EntitiesConfig,
    pub proposer: Proposer,
    pub outbox_notify: Notify,
    pub timer_notify: Notify,
    pub metrics: Arc<PartitionMetrics>,
}

/// The handle the facade routes through.
pub(crate) struct PartitionHandle {
    pub proposer: Proposer,
    pub metrics: Arc<PartitionMetrics>,
    /// The processor while this node leads the partition.
    pub processor: RwLock<Option<ActorRef<ProcessorMsg>>>,
}

impl PartitionHandle {
    pub fn processor(&self) -> Option<ActorRef<ProcessorMsg>> {
        self.processor
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Follows partition `p`'s leadership until `stop` fires: starts the processor and services when
/// this node becomes leader, stops them when it is not.
pub(crate) async fn leader_loop(
    p: PartitionId,
    partitions: Arc<Partitions>,
    registry: Registry,
    config: EntitiesConfig,
    local: Arc<Local>,
    stop: Arc<Notify>,
) {
    let handles = local.handles.clone();
    let Ok(mut metrics) = partitions.metrics(p) else {
        return;
    };
    loop {
        let term = if handles[p as usize].processor().is_none() && partitions.is_leader(p) {
            caught_up(&partitions, p).await
        } else {
            None
        };
        if let Some(term) = term {
            let shared = Arc::new(Shared {
                partition: p,
                term,
                partitions: partitions.clone(),
                registry: registry.clone(),
                config: config.clone(),
                proposer: handles[p as usize].proposer.clone(),
                outbox_notify: Notify::new(),
                timer_notify: Notify::new(),
                metrics: handles[p as usize].metrics.clone(),
            });
            match Actor::spawn(None, Processor, shared.clone()).await {
                Ok((actor, _)) => {
                    *handles[p as usize]
                        .processor
                        .write()
                        .unwrap_or_else(|e| e.into_inner()) = Some(actor.clone());
                    tracing::info!(partition = p, "leading: entity runtime started");
                    let services = tokio::spawn(services(shared, actor.clone(), local.clone()));
                    // Hold leadership until it goes or we stop.
                    let stopped = loop {
                        tokio::select! {
                            _ = stop.notified() => break true,
                            changed = metrics.changed() => {
                                if changed.is_err() || !partitions.is_leader(p) { break changed.is_err(); }
                            }
                        }
                    };
                    // Stop the actors before anything else can be proposed for them.
                    *handles[p as usize]
                        .processor
                        .write()
                        .unwrap_or_else(|e| e.into_inner()) = None;
                    services.abort();
                    let _ = actor
                        .stop_and_wait(
                            Some("leadership lost or shutdown".into()),
                            Some(Duration::from_secs(5)),
                        )
                        .await;
                    tracing::info!(partition = p, "entity runtime stopped");
                    if stopped {
                        return;
                    }
                }
                Err(e) => {
                    tracing::error!(partition = p, error = %e, "could not start the partition processor");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
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

/// A task aborted when this guard is dropped: a service's helpers end with the service.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A new leader's state machine may not yet have applied every entry committed before its term
/// (openraft applies them once the term's first entry commits). Actors activated before that
/// would read a stale state and overwrite newer committed state with it: a lost update. So the
/// runtime starts only after a linearizable read barrier: leadership confirmed by a quorum and
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

/// The leader-only background services of one partition.
async fn services(shared: Arc<Shared>, processor: ActorRef<ProcessorMsg>, local: Arc<Local>) {
    let outbox = AbortOnDrop(tokio::spawn(outbox_loop(shared.clone(), local)));
    let timers = AbortOnDrop(tokio::spawn(timer_loop(shared.clone())));
    let mut last_expiry = std::time::Instant::now();
    loop {
        // inbox scan
        match shared
            .partitions
            .local_state(shared.partition)
            .map(|s| s.inbox().entities(100_000))
        {
            Ok(Ok(entities)) => {
                for e in entities {
                    let _ = processor.cast(ProcessorMsg::Deliver(e, EntityMsg::ProcessInbox));
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(partition = shared.partition, error = %e, "inbox scan failed")
            }
            Err(e) => tracing::warn!(partition = shared.partition, error = %e, "inbox scan failed"),
        }
        if last_expiry.elapsed() >= Duration::from_secs(10) {
            last_expiry = std::time::Instant::now();
            let cmd = Command::single(Op::ExpireIds {
                now: now_ms(),
                limit: 10_000,
            });
            if let Err(e) = shared.proposer.propose(cmd).await {
                tracing::debug!(partition = shared.partition, error = %e, "idempotency key expiry deferred");
            }
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        if outbox.0.is_finished() || timers.0.is_finished() {
            tracing::error!(
                partition = shared.partition,
                "a partition service ended early"
            );
        }
    }
}

/// Delivers this partition's outbox, in order, exactly once per message.
async fn outbox_loop(shared: Arc<Shared>, local: Arc<Local>) {
    let p = shared.partition;
    loop {
        let pending = match shared.partitions.local_state(p).and_then(|s| {
            s.outbox()
                .pending(1024)
                .map_err(perdure_cluster::Error::Storage)
        }) {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(partition = p, error = %e, "outbox read failed");
                Vec::new()
            }
        };
        if pending.is_empty() {
            tokio::select! {
                _ = shared.outbox_notify.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            continue;
        }
        let mut by_dest: BTreeMap<PartitionId, Vec<(u64, Vec<u8>)>> = BTreeMap::new();
        for (dest, seq, msg) in pending {
            by_dest.entry(dest).or_default().push((seq, msg));
        }
        for (dest, msgs) in by_dest {
            if let Err(e) = deliver(&shared, &local, dest, msgs).await {
                tracing::debug!(partition = p, dest, error = %e, "outbox delivery deferred");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn deliver(
    shared: &Shared,
    local: &Local,
    dest: PartitionId,
    msgs: Vec<(u64, Vec<u8>)>,
) -> Result<(), Error> {
    let p = shared.partition;
    let upto = msgs.last().map(|m| m.0).unwrap_or(0);
    let mut ops = Vec::with_capacity(msgs.len() + 1);
    for (seq, message) in msgs {
        // The receiver accepts sequence numbers without gaps, so no message can be skipped: an
        // unreadable one (only damaged storage makes one) stops this destination, loudly.
        let entity = Envelope::decode(&message)
            .map_err(|e| {
                tracing::error!(partition = p, dest, seq, error = %e, "unreadable outbox message");
                Error::Unavailable(format!(
                    "outbox message {seq} of partition {p} is unreadable: {e}"
                ))
            })?
            .target;
        ops.push(Op::Receive {
            source: p,
            seq,
            entity,
            message,
        });
    }
    let n = ops.len() as u64;
    if dest == p {
        // Same partition: receive and acknowledge atomically.
        ops.push(Op::AckOutbox { dest, upto });
        let command = Command::new(ops).fenced(shared.term);
        check_received(&forward::propose_at(local, dest, command).await?, p, dest)?;
    } else {
        // The destination's leader may be another node: propose there, then acknowledge here.
        let results = forward::propose_at(local, dest, Command::new(ops)).await?;
        check_received(&results, p, dest)?;
        shared
            .proposer
            .propose(Command::single(Op::AckOutbox { dest, upto }).fenced(shared.term))
            .await?;
    }
    shared.metrics.delivered.fetch_add(n, Ordering::Relaxed);
    Ok(())
}

/// Tells the entities of partition `p` that received inbox messages to run them, when this node
/// runs `p` (otherwise its leader's periodic inbox scan finds them).
pub(crate) fn wake_inboxes(handles: &[PartitionHandle], p: PartitionId, entities: Vec<EntityId>) {
    if let Some(proc_) = handles.get(p as usize).and_then(|h| h.processor()) {
        let unique: BTreeSet<EntityId> = entities.into_iter().collect();
        for e in unique {
            let _ = proc_.cast(ProcessorMsg::Deliver(e, EntityMsg::ProcessInbox));
        }
    }
}

fn check_received(
    results: &[OpResult],
    source: PartitionId,
    dest: PartitionId,
) -> Result<(), Error> {
    for r in results {
        if let OpResult::Gap { expected } = r {
            // Never expected: the outbox is delivered in order and acknowledged only after receipt.
            tracing::error!(source, dest, expected, "outbox delivery found a gap");
            return Err(Error::Unavailable(format!(
                "partition {dest} expects sequence {expected} from {source}"
            )));
        }
    }
    Ok(())
}

/// Fires due timers into the outbox.
async fn timer_loop(shared: Arc<Shared>) {
    let p = shared.partition;
    loop {
        let now = now_ms();
        let state = match shared.partitions.local_state(p) {
            Ok(s) => s,
            Err(_) => return,
        };
        match state.timers().due(now, 1024) {
            Ok(due) if !due.is_empty() => {
                let n = due.len() as u64;
                let mut ops = Vec::with_capacity(due.len() * 2);
                for t in due {
                    ops.push(Op::RemoveTimer {
                        due: t.due,
                        id: t.id,
                    });
                    ops.push(Op::Send {
                        dest: shared.partitions.partition_of(&t.entity),
                        message: t.message,
                    });
                }
                match shared
                    .proposer
                    .propose(Command::new(ops).fenced(shared.term))
                    .await
                {
                    Ok(_) => {
                        shared.metrics.timers_fired.fetch_add(n, Ordering::Relaxed);
                        shared.outbox_notify.notify_one();
                    }
                    Err(e) => {
                        tracing::debug!(partition = p, error = %e, "timer firing deferred");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                continue;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(partition = p, error = %e, "timer scan failed"),
        }
        let wait = match state.timers().next_due() {
            Ok(Some(due)) => Duration::from_millis(due.saturating_sub(now).clamp(1, 1000)),
            _ => Duration::from_millis(1000),
        };
        tokio::select! {
            _ = shared.timer_notify.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Routes `msg` for `entity` to partition `p`'s processor, if this node leads it.
pub(crate) fn route(
    handles: &[PartitionHandle],
    p: PartitionId,
    entity: EntityId,
    msg: EntityMsg,
) -> Result<(), Error> {
    let Some(proc_) = handles.get(p as usize).and_then(|h| h.processor()) else {
        return Err(Error::Unavailable(format!(
            "partition {p} has no leader on this node"
        )));
    };
    proc_
        .cast(ProcessorMsg::Deliver(entity, msg))
        .map_err(|_| Error::Unavailable(format!("partition {p} is changing leadership; retry")))
}
