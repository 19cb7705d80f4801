//! The ingestion workload: on every partition this node leads, a supervisor that runs the
//! consumers of the source partitions whose home is that partition.
//!
//! Placement is perdure's own (no broker consumer groups): source partition `s` of subscription
//! `n` has the home partition `subscription::home_partition(n, s)`, a pinned hash; its consumer
//! runs only on that partition's leader, started after the leader's read barrier with the other
//! leader services and stopped when leadership goes, so failover and leader balancing move
//! consumers. The supervisor follows the subscriptions (the metadata group's copy on this node)
//! and the source's partitions, and restarts a consumer (from its checkpoint) when its
//! subscription changes; it forgets the checkpoints of deleted subscriptions.

use crate::consumer::Consumer;
use crate::metrics::IngestMetrics;
use crate::source::{Connector, Source, SourceInfo};
use crate::status::StatusBoard;
use futures::future::BoxFuture;
use perdure_runtime::host::{Leader, PartitionService, Workload};
use perdure_runtime::Entities;
use perdure_types::command::Op;
use perdure_types::config::IngestConfig;
use perdure_types::subscription::{home_partition, parse_source_key, Subscription};
use perdure_types::{PartitionId, Target};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How often a supervisor looks at the subscriptions.
const FOLLOW_EVERY: Duration = Duration::from_millis(250);
/// How long a source's partition list is reused before it is asked again.
const INFO_TTL: Duration = Duration::from_secs(5);
/// How often a supervisor forgets the checkpoints of subscriptions that are gone.
const FORGET_EVERY: Duration = Duration::from_secs(30);

/// A connected source and what it was last found to hold.
struct Connected {
    generation: u64,
    source: Arc<dyn Source>,
    info: Option<(Instant, SourceInfo)>,
}

/// One subscription's source on this node: connected, or when it last failed.
#[derive(Default)]
struct Slot {
    connected: Option<Connected>,
    /// The generation that failed and when: not tried again before [`RETRY_AFTER`].
    failed: Option<(u64, Instant)>,
}

/// How long a source that could not be reached is left alone before it is tried again (so
/// a broker that is down does not hold up the other subscriptions).
const RETRY_AFTER: Duration = Duration::from_secs(3);

/// What asking for a source gave.
enum Found {
    /// The source and its partitions.
    Ready(Arc<dyn Source>, SourceInfo),
    /// Not now: it failed recently, or another partition's supervisor is asking.
    NotNow,
    /// It failed now (the error is kept for the status).
    Failed,
}

/// What the workload and its supervisors share.
pub(crate) struct Shared {
    pub connector: Arc<dyn Connector>,
    /// Weak: the host holds this workload, and the entities facade holds the host's router.
    pub entities: OnceLock<std::sync::Weak<Entities>>,
    pub board: Arc<StatusBoard>,
    pub metrics: IngestMetrics,
    pub config: IngestConfig,
    /// Sources by subscription name (one connection per node, shared by its partitions; each
    /// behind its own lock, so one slow or unreachable broker holds up no other subscription).
    sources: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Slot>>>>,
    /// The last error connecting to or listing each subscription's source, by name.
    pub source_errors: Mutex<BTreeMap<String, String>>,
}

/// The stream-ingestion workload (add it to the host with the others).
pub struct IngestWorkload {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for IngestWorkload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestWorkload").finish_non_exhaustive()
    }
}

impl IngestWorkload {
    /// A workload opening sources through `connector`.
    pub fn new(
        connector: Arc<dyn Connector>,
        config: IngestConfig,
        metrics: IngestMetrics,
    ) -> Arc<Self> {
        Arc::new(Self {
            shared: Arc::new(Shared {
                connector,
                entities: OnceLock::new(),
                board: Arc::default(),
                metrics,
                config,
                sources: Default::default(),
                source_errors: Default::default(),
            }),
        })
    }

    /// Hands the workload the entity facade (built once the host started; supervisors wait
    /// for it).
    pub fn set_entities(&self, entities: Arc<Entities>) {
        let _ = self.shared.entities.set(Arc::downgrade(&entities));
    }

    /// The consumers running on this node.
    pub fn board(&self) -> &Arc<StatusBoard> {
        &self.shared.board
    }

    /// Its metrics (register them in the node's registry once it exists).
    pub fn metrics(&self) -> &IngestMetrics {
        &self.shared.metrics
    }
}

impl Workload for IngestWorkload {
    fn name(&self) -> &'static str {
        "ingest"
    }

    fn lead(
        &self,
        leader: Arc<Leader>,
    ) -> BoxFuture<'_, Result<Vec<Box<dyn PartitionService>>, perdure_runtime::Error>> {
        let services: Vec<Box<dyn PartitionService>> = if self.shared.config.enabled {
            vec![Box::new(Supervisor {
                shared: self.shared.clone(),
            })]
        } else {
            Vec::new()
        };
        let _ = leader;
        Box::pin(async move { Ok(services) })
    }

    fn resign(&self, _partition: PartitionId) -> BoxFuture<'_, ()> {
        // the supervisor and its consumers are services: aborted with the leadership
        Box::pin(async {})
    }

    fn wake(&self, _partition: PartitionId, _targets: &[Target]) {}
}

/// Runs the consumers of one led partition.
struct Supervisor {
    shared: Arc<Shared>,
}

/// What a running consumer was started with, to keep it as it is.
fn keep(sub: &Subscription, r: &Running) -> (Subscription, u32, Arc<dyn Source>, String) {
    let mut sub = sub.clone();
    sub.version = r.version;
    (sub, r.partition, r.source.clone(), r.incarnation.clone())
}

/// A consumer task, aborted when dropped.
struct Running {
    version: u64,
    task: tokio::task::JoinHandle<()>,
    /// Asks it to stop gracefully (drain and checkpoint).
    stop: tokio::sync::watch::Sender<bool>,
    /// Its source partition, source and incarnation (kept when the source cannot be asked).
    partition: u32,
    source: Arc<dyn Source>,
    incarnation: String,
}

/// How long a supervisor waits for a consumer it stopped (it drains and checkpoints) before it
/// aborts it.
const STOP_WITHIN: Duration = Duration::from_secs(6);

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PartitionService for Supervisor {
    fn name(&self) -> &'static str {
        "ingest"
    }

    fn run(self: Box<Self>, leader: Arc<Leader>) -> BoxFuture<'static, ()> {
        Box::pin(async move { self.supervise(leader).await })
    }
}

impl Supervisor {
    async fn supervise(self, leader: Arc<Leader>) {
        let me = leader.partition();
        let n = leader.partitions().count();
        let entities = loop {
            // held by this task only while it runs (aborted with the leadership or at stop)
            if let Some(e) = self
                .shared
                .entities
                .get()
                .and_then(std::sync::Weak::upgrade)
            {
                break e;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let mut running: HashMap<String, Running> = HashMap::new();
        let mut last_forget = Instant::now();
        let mut seen_version = u64::MAX;
        let mut last_full = Instant::now() - INFO_TTL;
        loop {
            let subs = match leader.partitions().subscriptions() {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(partition = me, error = %e, "cannot read the subscriptions");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            // look again when the subscriptions changed, and now and then (new source
            // partitions, a broker back)
            if subs.version != seen_version || last_full.elapsed() >= INFO_TTL {
                seen_version = subs.version;
                last_full = Instant::now();
                let mut wanted: HashMap<String, (Subscription, u32, Arc<dyn Source>, String)> =
                    HashMap::new();
                self.shared
                    .sources
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .retain(|name, _| subs.by_name.contains_key(name));
                let mut again_soon = false;
                for sub in subs.by_name.values().filter(|s| !s.paused) {
                    let (source, info) = match self.source_of(sub).await {
                        Found::Ready(source, info) => (source, info),
                        not_ready => {
                            // keep its running consumers (they retry and report on their own);
                            // when another supervisor was asking, look again at the next round
                            again_soon |= matches!(not_ready, Found::NotNow);
                            for (key, r) in &running {
                                if parse_source_key(key)
                                    .is_some_and(|(n, g, _)| n == sub.name && g == sub.generation)
                                {
                                    wanted.insert(key.clone(), keep(sub, r));
                                }
                            }
                            continue;
                        }
                    };
                    for &s in &info.partitions {
                        if home_partition(&sub.name, s, n) == me {
                            wanted.insert(
                                sub.source_key(s),
                                (sub.clone(), s, source.clone(), info.incarnation.clone()),
                            );
                        }
                    }
                }
                // consumers whose subscription changed, paused or went: stopped gracefully (they
                // drain and checkpoint, so a new mapping starts exactly where the old one ended)
                let gone: Vec<String> = running
                    .iter()
                    .filter(|(key, r)| {
                        wanted
                            .get(*key)
                            .is_none_or(|(sub, ..)| sub.version != r.version)
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                let mut stopped = Vec::new();
                for key in gone {
                    if let Some(mut r) = running.remove(&key) {
                        let _ = r.stop.send(true);
                        stopped.push(async move {
                            if tokio::time::timeout(STOP_WITHIN, &mut r.task).await.is_err() {
                                tracing::warn!(source = %key, "a stopped consumer did not finish in time; aborted");
                            }
                        });
                    }
                }
                futures::future::join_all(stopped).await;
                for (key, (sub, s, source, incarnation)) in wanted {
                    if running.contains_key(&key) {
                        continue;
                    }
                    let version = sub.version;
                    let kept = (s, source.clone(), incarnation.clone());
                    let (stop, stop_rx) = tokio::sync::watch::channel(false);
                    let consumer = Consumer {
                        stop: stop_rx,
                        sub,
                        partition: s,
                        source,
                        incarnation,
                        leader: leader.clone(),
                        entities: entities.clone(),
                        board: self.shared.board.clone(),
                        metrics: self.shared.metrics.clone(),
                        config: self.shared.config.clone(),
                    };
                    tracing::info!(partition = me, source = %key, "consumer started");
                    running.insert(
                        key,
                        Running {
                            version,
                            task: tokio::spawn(consumer.run()),
                            stop,
                            partition: kept.0,
                            source: kept.1,
                            incarnation: kept.2,
                        },
                    );
                }
                if again_soon {
                    last_full = Instant::now() - INFO_TTL;
                }
            }
            if last_forget.elapsed() >= FORGET_EVERY {
                last_forget = Instant::now();
                self.forget_gone(&leader, &subs).await;
            }
            tokio::time::sleep(FOLLOW_EVERY).await;
        }
    }

    /// The source of `sub` and its partitions (connected once per node and generation, listed
    /// at most every [`INFO_TTL`]); after an error (kept for the status) it is not tried again
    /// for [`RETRY_AFTER`], and while another supervisor asks, this one does not wait.
    async fn source_of(&self, sub: &Subscription) -> Found {
        let slot = self
            .shared
            .sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(sub.name.clone())
            .or_default()
            .clone();
        let Ok(mut slot) = slot.try_lock() else {
            return Found::NotNow;
        };
        if slot
            .failed
            .is_some_and(|(g, at)| g == sub.generation && at.elapsed() < RETRY_AFTER)
        {
            return Found::Failed;
        }
        let fresh = slot
            .connected
            .as_ref()
            .is_some_and(|c| c.generation == sub.generation);
        if !fresh {
            match self
                .shared
                .connector
                .connect(&sub.name, &sub.spec.source)
                .await
            {
                Ok(source) => {
                    slot.connected = Some(Connected {
                        generation: sub.generation,
                        source,
                        info: None,
                    });
                }
                Err(e) => {
                    self.source_error(sub, &e);
                    slot.connected = None;
                    slot.failed = Some((sub.generation, Instant::now()));
                    return Found::Failed;
                }
            }
        }
        let c = slot.connected.as_mut().expect("connected above");
        if let Some((at, info)) = &c.info {
            if at.elapsed() < INFO_TTL {
                return Found::Ready(c.source.clone(), info.clone());
            }
        }
        match c.source.info().await {
            Ok(info) => {
                c.info = Some((Instant::now(), info.clone()));
                let source = c.source.clone();
                slot.failed = None;
                self.shared
                    .source_errors
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&sub.name);
                Found::Ready(source, info)
            }
            Err(e) => {
                self.source_error(sub, &e);
                // a source that failed is connected again later
                slot.connected = None;
                slot.failed = Some((sub.generation, Instant::now()));
                Found::Failed
            }
        }
    }

    fn source_error(&self, sub: &Subscription, e: &crate::source::SourceError) {
        tracing::warn!(subscription = %sub.name, error = %e, "cannot list the source's partitions");
        self.shared
            .source_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sub.name.clone(), e.to_string());
    }

    /// Forgets the checkpoints (and dead letters) kept here for subscriptions deleted or moved
    /// to another source.
    async fn forget_gone(
        &self,
        leader: &Leader,
        subs: &perdure_types::subscription::Subscriptions,
    ) {
        let Ok(kept) = leader.read(|st| st.ingest().checkpoints("", 100_000)).await else {
            return;
        };
        for (key, _) in kept {
            let current = parse_source_key(&key).is_some_and(|(name, generation, _)| {
                subs.by_name
                    .get(name)
                    .is_some_and(|s| s.generation == generation)
            });
            if !current {
                if let Err(e) = leader
                    .propose(vec![Op::ForgetSource {
                        source: key.clone(),
                    }])
                    .await
                {
                    tracing::debug!(source = %key, error = %e, "could not forget a source");
                    return;
                }
                tracing::info!(source = %key, "forgot the checkpoint of a deleted subscription");
            }
        }
    }
}
