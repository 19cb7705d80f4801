//! The orchestration workload on the partition host: per partition this node leads, the live
//! instances (one task each, see `instance.rs`), the scan that finds instances with work after a
//! leader change, and the retention service.

use super::instance::{self, InstanceMsg};
use super::shared::Shared;
use crate::host::{Leader, PartitionService, Workload};
use crate::Error;
use futures::future::BoxFuture;
use perdure_types::command::{Op, OpResult};
use perdure_types::{InstanceId, PartitionId, Target};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

/// A live instance: its task's mailbox, the task, and when it was last sent something.
struct Live {
    tx: mpsc::UnboundedSender<InstanceMsg>,
    task: AbortHandle,
    last: std::time::Instant,
}

/// Live instances asked to passivate at once when a partition is over its share.
const EVICT_BATCH: usize = 4;

/// One partition's orchestration runtime while this node leads it.
pub(crate) struct PartitionRt {
    pub leader: Arc<Leader>,
    pub shared: Arc<Shared>,
    /// Live instances: the sender of each one's task. Messages are sent under this lock and an
    /// instance leaves it only with an empty mailbox (under the lock too), so none is lost.
    instances: Mutex<HashMap<InstanceId, Live>>,
    /// Most live instances here (`orchestrations.max_live / partitions`, at least 1).
    max_live: usize,
    /// False once leadership ended: nothing more is started.
    alive: AtomicBool,
}

impl PartitionRt {
    /// Sends `msg` to `id`'s task, starting one if it has none.
    pub fn deliver(self: &Arc<Self>, id: &InstanceId, msg: InstanceMsg) {
        if !self.alive.load(Ordering::Acquire) {
            return;
        }
        let mut map = self.instances.lock().unwrap_or_else(|e| e.into_inner());
        let msg = match map.get_mut(id) {
            Some(live) => match live.tx.send(msg) {
                Ok(()) => {
                    live.last = std::time::Instant::now();
                    return;
                }
                Err(mpsc::error::SendError(m)) => m,
            },
            None => msg,
        };
        if map.len() >= self.max_live {
            // over the share: the instances sent nothing the longest are asked to leave (each
            // leaves only when idle, so none loses work)
            let mut by_age: Vec<(&InstanceId, &Live)> = map.iter().collect();
            by_age.sort_by_key(|(_, l)| l.last);
            for (_, l) in by_age.into_iter().take(EVICT_BATCH) {
                let _ = l.tx.send(InstanceMsg::Passivate);
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(msg);
        let task = tokio::spawn(instance::run(self.clone(), id.clone(), rx));
        map.insert(
            id.clone(),
            Live {
                tx,
                task: task.abort_handle(),
                last: std::time::Instant::now(),
            },
        );
    }

    /// Wakes `id`: it looks at its inbox.
    pub fn wake(self: &Arc<Self>, id: &InstanceId) {
        self.deliver(id, InstanceMsg::Wake);
    }

    /// The task of `id` leaves, if its mailbox is empty (called by the task itself).
    pub fn leave_if_idle(
        &self,
        id: &InstanceId,
        rx: &mpsc::UnboundedReceiver<InstanceMsg>,
    ) -> bool {
        let mut map = self.instances.lock().unwrap_or_else(|e| e.into_inner());
        if !rx.is_empty() {
            return false;
        }
        map.remove(id);
        true
    }

    /// The task of `id` ended on its own (an error it cannot get past, leadership lost).
    pub fn left(&self, id: &InstanceId) {
        self.instances
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// Live instances now.
    pub fn live(&self) -> usize {
        self.instances
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Whether this node still leads the partition (its instances run).
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    fn stop(&self) {
        self.alive.store(false, Ordering::Release);
        let map = std::mem::take(&mut *self.instances.lock().unwrap_or_else(|e| e.into_inner()));
        for (_, live) in map {
            live.task.abort();
        }
    }
}

/// The orchestration workload: what runs on each partition this node leads.
pub struct OrchestrationWorkload {
    pub(crate) shared: Arc<Shared>,
    parts: Vec<RwLock<Option<Arc<PartitionRt>>>>,
}

impl std::fmt::Debug for OrchestrationWorkload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrchestrationWorkload")
            .finish_non_exhaustive()
    }
}

impl OrchestrationWorkload {
    /// The workload for `partitions` partitions, running the orchestrators and activities of
    /// `registry`.
    pub fn new(
        registry: super::model::OrchestrationRegistry,
        config: perdure_types::config::OrchestrationsConfig,
        partitions: u32,
        remote: Arc<crate::remote::queue::WorkQueue>,
    ) -> Self {
        let shared = Arc::new(Shared {
            activity_slots: Arc::new(tokio::sync::Semaphore::new(
                config.max_concurrent_activities as usize,
            )),
            registry,
            config,
            waiters: Default::default(),
            metrics: Default::default(),
            remote,
        });
        Self {
            shared,
            parts: (0..partitions).map(|_| RwLock::new(None)).collect(),
        }
    }

    /// Partition `p`'s runtime, while this node leads it.
    pub(crate) fn part(&self, p: PartitionId) -> Option<Arc<PartitionRt>> {
        self.parts
            .get(p as usize)?
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_part(&self, p: PartitionId, rt: Option<Arc<PartitionRt>>) -> Option<Arc<PartitionRt>> {
        let slot = self.parts.get(p as usize)?;
        std::mem::replace(&mut *slot.write().unwrap_or_else(|e| e.into_inner()), rt)
    }

    /// Live orchestrators on this node now.
    pub fn live(&self) -> usize {
        self.parts
            .iter()
            .filter_map(|s| s.read().unwrap_or_else(|e| e.into_inner()).clone())
            .map(|p| p.live())
            .sum()
    }
}

impl Workload for OrchestrationWorkload {
    fn name(&self) -> &'static str {
        "orchestrations"
    }

    fn lead(
        &self,
        leader: Arc<Leader>,
    ) -> BoxFuture<'_, Result<Vec<Box<dyn PartitionService>>, Error>> {
        Box::pin(async move {
            let p = leader.partition();
            let share = self.shared.config.max_live / u64::from(leader.partitions().count().max(1));
            let rt = Arc::new(PartitionRt {
                leader,
                shared: self.shared.clone(),
                instances: Mutex::new(HashMap::new()),
                max_live: usize::try_from(share.max(1)).unwrap_or(usize::MAX),
                alive: AtomicBool::new(true),
            });
            if let Some(old) = self.set_part(p, Some(rt.clone())) {
                old.stop();
            }
            let scan: Box<dyn PartitionService> = Box::new(Scan { rt: rt.clone() });
            let mut services = vec![scan];
            if self.shared.config.retention_ms > 0 {
                services.push(Box::new(Retention { rt }));
            }
            Ok(services)
        })
    }

    fn resign(&self, p: PartitionId) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(rt) = self.set_part(p, None) {
                rt.stop();
                let n = rt.leader.partitions().count();
                self.shared
                    .waiters
                    .drop_where(|id| Target::Instance(id.clone()).partition(n) == p);
            }
        })
    }

    fn wake(&self, p: PartitionId, targets: &[Target]) {
        if let Some(rt) = self.part(p) {
            for t in targets {
                if let Target::Instance(id) = t {
                    rt.wake(id);
                }
            }
        }
    }
}

/// Finds the instances with work after a leader change (inbox messages, activity work items)
/// and wakes them; then again every few seconds, a safety net for a wake that was lost.
struct Scan {
    rt: Arc<PartitionRt>,
}

const SCAN_EVERY: Duration = Duration::from_secs(5);
const SCAN_PAGE: usize = 1_000;

impl PartitionService for Scan {
    fn name(&self) -> &'static str {
        "orchestration-scan"
    }

    fn run(self: Box<Self>, leader: Arc<Leader>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            loop {
                if let Err(e) = scan(&self.rt, &leader).await {
                    tracing::warn!(partition = leader.partition(), error = %e, "orchestration scan");
                }
                tokio::time::sleep(SCAN_EVERY).await;
            }
        })
    }
}

async fn scan(rt: &Arc<PartitionRt>, leader: &Leader) -> Result<(), Error> {
    let targets = leader.read(|s| s.inbox().targets(usize::MAX)).await?;
    for t in targets {
        if let Target::Instance(id) = t {
            rt.wake(&id);
        }
    }
    let mut after: Option<InstanceId> = None;
    loop {
        let from = after.clone();
        let page = leader
            .read(move |s| s.instances().with_work_items(from.as_ref(), SCAN_PAGE))
            .await?;
        let done = page.len() < SCAN_PAGE;
        for id in page {
            rt.wake(&id);
            after = Some(id);
        }
        if done {
            return Ok(());
        }
    }
}

/// Purges instances that finished longer than `orchestrations.retention_ms` ago, in bounded
/// batches.
struct Retention {
    rt: Arc<PartitionRt>,
}

const RETENTION_EVERY: Duration = Duration::from_secs(60);
const RETENTION_BATCH: u32 = 100;

impl PartitionService for Retention {
    fn name(&self) -> &'static str {
        "orchestration-retention"
    }

    fn run(self: Box<Self>, leader: Arc<Leader>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let keep = self.rt.shared.config.retention_ms;
            loop {
                let before = crate::host::now_ms().saturating_sub(keep);
                loop {
                    let op = Op::PurgeFinished {
                        before,
                        limit: RETENTION_BATCH,
                    };
                    match leader.propose(vec![op]).await.as_deref() {
                        Ok([OpResult::Count(n)]) => {
                            self.rt
                                .shared
                                .metrics
                                .purged
                                .fetch_add(*n, Ordering::Relaxed);
                            if *n < u64::from(RETENTION_BATCH) {
                                break;
                            }
                        }
                        Ok(_) => break,
                        Err(e) => {
                            tracing::debug!(partition = leader.partition(), error = %e, "retention purge");
                            break;
                        }
                    }
                }
                tokio::time::sleep(RETENTION_EVERY).await;
            }
        })
    }
}
