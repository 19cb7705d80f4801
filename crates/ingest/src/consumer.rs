//! The consumer of one source partition, run by the leader of its home partition.
//!
//! It starts at the checkpoint in the home partition's state (every record at or below it was
//! applied), reads batches after it, maps each record to an entity operation (or a dead
//! letter), groups the operations by the partition of their entity, and sends each group, in
//! position order, to that partition's leader (`Entities::ingest`): one sender task per target
//! partition, one request in flight each, so records to one entity arrive in order. Once every
//! record up to a position is answered, that position is the new checkpoint, written (with the
//! counts and dead letters since the last) at most every `checkpoint_interval_ms` as one
//! command fenced to the leader's term. Reading stops while `max_in_flight_records` are read and
//! not checkpointed: a slow cluster shows as lag, never as memory.
//!
//! Exactly once: a record is applied by its entity's actor only above the entity's mark for
//! this source, and the mark rises in the same command as the state. A consumer that restarts
//! (a crash, a leader change) starts from the checkpoint again, and what its predecessor applied
//! after it answers `Duplicate`.

use crate::mapping::Mapper;
use crate::metrics::IngestMetrics;
use crate::source::{Record, Source, SourceError};
use crate::status::StatusBoard;
use futures::future::BoxFuture;
use perdure_runtime::host::Leader;
use perdure_runtime::{Entities, IngestRecord, RecordOutcome};
use perdure_types::command::{Op, OpResult, SourceCheckpoint};
use perdure_types::config::IngestConfig;
use perdure_types::subscription::{
    truncated_text, DeadLetter, StartAt, Subscription, DEAD_LETTER_VALUE_BYTES,
};
use perdure_types::PartitionId;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Most records one request to a target partition carries (queued chunks are merged up to it).
const MAX_SEND_RECORDS: usize = 8192;
/// How long a read waits for a first record.
const READ_WAIT: Duration = Duration::from_millis(250);
/// How often the end of the source is asked (for lag).
const END_EVERY: Duration = Duration::from_millis(500);

/// What a consumer needs.
pub(crate) struct Consumer {
    pub sub: Subscription,
    pub partition: u32,
    pub source: Arc<dyn Source>,
    pub incarnation: String,
    pub leader: Arc<Leader>,
    pub entities: Arc<Entities>,
    pub board: Arc<StatusBoard>,
    pub metrics: IngestMetrics,
    pub config: IngestConfig,
    /// Turns true when the consumer is to stop gracefully (its subscription changed or was
    /// paused or deleted): it reads no more, waits for what is in flight, checkpoints, returns.
    pub stop: tokio::sync::watch::Receiver<bool>,
}

/// How long a stopping consumer waits for what it sent before it returns anyway.
const DRAIN_WITHIN: Duration = Duration::from_secs(5);

/// Why a consumer run ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StopError {
    /// The source failed (retried with backoff).
    #[error("source: {0}")]
    Source(#[from] SourceError),
    /// The cluster failed (retried with backoff).
    #[error("cluster: {0}")]
    Cluster(#[from] perdure_runtime::Error),
    /// The source went back behind the checkpoint: recreated or truncated. Retried slowly; an
    /// operator recreates the subscription to read the new source from its start.
    #[error("{0}")]
    Reset(String),
}

/// A batch read from the source, until all of its records are answered.
struct Pending {
    id: u64,
    /// Its last position.
    last: u64,
    /// Target requests not answered yet.
    waiting: usize,
    records: u64,
    applied: u64,
    duplicate: u64,
    failed: u64,
    dead: Vec<DeadLetter>,
}

/// Records for one target partition, from one batch.
struct Chunk {
    batch: u64,
    records: Vec<IngestRecord>,
    timestamps: Vec<Option<u64>>,
}

/// A target partition's answer to a chunk.
struct ChunkDone {
    batch: u64,
    outcomes: Vec<(u64, RecordOutcome)>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Consumer {
    fn key(&self) -> String {
        self.sub.source_key(self.partition)
    }

    fn labels(&self) -> [String; 2] {
        [self.sub.name.clone(), self.partition.to_string()]
    }

    /// Runs until aborted (leadership gone, subscription changed): every failure is reported on
    /// the status board and retried with backoff.
    pub(crate) async fn run(self) {
        let key = self.key();
        let home = self.leader.partition();
        self.board.update(&key, |s| {
            s.subscription.clone_from(&self.sub.name);
            s.generation = self.sub.generation;
            s.source_partition = self.partition;
            s.home_partition = home;
            s.node = self.leader.partitions().node_id();
            s.state = "starting".into();
        });
        self.metrics
            .consumers
            .with_label_values(&[self.sub.name.as_str()])
            .inc();
        let _cleanup = Cleanup {
            board: self.board.clone(),
            key: key.clone(),
            metrics: self.metrics.clone(),
            sub: self.sub.name.clone(),
            partition: self.partition.to_string(),
        };
        let mut backoff = Duration::from_millis(100);
        loop {
            let started = Instant::now();
            let e = match self.run_once().await {
                Ok(()) if *self.stop.borrow() => return,
                Ok(()) => return,
                Err(e) => e,
            };
            let (kind, state, wait) = match &e {
                StopError::Source(s) => (source_kind(s), "retrying", backoff),
                StopError::Cluster(_) => ("cluster", "retrying", backoff),
                StopError::Reset(_) => ("reset", "stopped", Duration::from_secs(10)),
            };
            if kind != "cluster" {
                self.metrics
                    .errors
                    .with_label_values(&[self.sub.name.as_str(), kind])
                    .inc();
            }
            tracing::warn!(subscription = %self.sub.name, source_partition = self.partition, error = %e, "consumer stopped; retrying");
            self.board.update(&key, |s| {
                s.state = state.into();
                s.error = Some(e.to_string());
                s.in_flight = 0;
            });
            tokio::time::sleep(wait).await;
            backoff = if started.elapsed() > Duration::from_secs(10) {
                Duration::from_millis(100)
            } else {
                (backoff * 2).min(Duration::from_secs(5))
            };
        }
    }

    /// One run from the checkpoint; returns only on an error.
    async fn run_once(&self) -> Result<(), StopError> {
        let mut stop = self.stop.clone();
        self.run_until(&mut stop).await
    }

    /// One run from the checkpoint until `stop` turns true (then `Ok` once drained and
    /// checkpointed) or an error.
    async fn run_until(
        &self,
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), StopError> {
        let key = self.key();
        let k = key.clone();
        let stored = self
            .leader
            .read(move |st| st.ingest().checkpoint(&k))
            .await?;
        let end = self.source.end(self.partition).await?;
        let mut position = match &stored {
            Some(c) => {
                if !c.incarnation.is_empty()
                    && !self.incarnation.is_empty()
                    && c.incarnation != self.incarnation
                {
                    return Err(StopError::Reset(format!(
                        "the source was deleted and created again (incarnation {:?}, the checkpoint's was {:?}); \
                         nothing more is read from it: delete and create the subscription again to read the new one from its start",
                        self.incarnation, c.incarnation
                    )));
                }
                if c.position > end {
                    return Err(StopError::Reset(format!(
                        "the source holds positions up to {end}, below the checkpoint {}: it was recreated or truncated; \
                         nothing more is read from it: delete and create the subscription again to read it from its start",
                        c.position
                    )));
                }
                c.position
            }
            None => {
                let first = match self.sub.spec.start {
                    StartAt::Earliest => 0,
                    StartAt::Latest => end,
                };
                // the first checkpoint records where it starts and the source's incarnation
                self.checkpoint(first, &mut Tally::default(), true).await?;
                first
            }
        };
        let mut checkpoint_at = now_ms();
        self.board.update(&key, |s| {
            s.state = "running".into();
            s.error = None;
            s.position = position;
            s.read_position = position;
            s.end = end;
            s.lag = end.saturating_sub(position);
            s.checkpoint_at_ms = checkpoint_at;
        });
        let [sub_label, part_label] = self.labels();
        let lag_gauge = self
            .metrics
            .lag
            .with_label_values(&[sub_label.as_str(), part_label.as_str()]);
        let age_gauge = self
            .metrics
            .checkpoint_age
            .with_label_values(&[sub_label.as_str(), part_label.as_str()]);
        let latency = self
            .metrics
            .latency
            .with_label_values(&[sub_label.as_str()]);
        let records_c = |r: &str| {
            self.metrics
                .records
                .with_label_values(&[sub_label.as_str(), r])
        };
        let (applied_c, duplicate_c, failed_c, dead_c) = (
            records_c("applied"),
            records_c("duplicate"),
            records_c("failed"),
            records_c("dead_letter"),
        );
        lag_gauge.set(end.saturating_sub(position) as i64);

        let mapper = Mapper::new(&self.sub.spec.mapping);
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Result<ChunkDone, StopError>>();
        let mut senders: HashMap<PartitionId, mpsc::UnboundedSender<Chunk>> = HashMap::new();
        let mut tasks = tokio::task::JoinSet::new();
        let mut pending: VecDeque<Pending> = VecDeque::new();
        let mut next_id = 0u64;
        let mut read_after = position;
        let mut in_flight: u64 = 0;
        let mut tally = Tally::default();
        let mut done_upto = position;
        let mut last_checkpoint = Instant::now();
        let mut last_end = Instant::now();
        let mut end = end;
        let interval = Duration::from_millis(self.config.checkpoint_interval_ms);
        let mut tick = tokio::time::interval(interval.min(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reading: Option<BoxFuture<'_, Result<Vec<Record>, SourceError>>> = None;
        let partitions = self.leader.partitions().count();
        let mut stopping: Option<Instant> = None;
        loop {
            if stopping.is_none() && *stop.borrow() {
                // read no more; what is in flight is waited for and checkpointed below
                stopping = Some(Instant::now());
                reading = None;
            }
            if let Some(since) = stopping {
                if pending.is_empty() && done_upto == position {
                    return Ok(());
                }
                if since.elapsed() > DRAIN_WITHIN {
                    tracing::warn!(subscription = %self.sub.name, source_partition = self.partition,
                        "a stopping consumer's records were not all answered in time; its successor starts from the checkpoint");
                    return Ok(());
                }
            }
            if stopping.is_none()
                && reading.is_none()
                && in_flight < self.config.max_in_flight_records
            {
                reading = Some(self.source.read(
                    self.partition,
                    read_after,
                    self.config.fetch_max_records as usize,
                    self.config.fetch_max_bytes as usize,
                    READ_WAIT,
                ));
            }
            tokio::select! {
                got = async { reading.as_mut().expect("checked").await }, if reading.is_some() => {
                    reading = None;
                    let records = match got {
                        Ok(r) => r,
                        Err(SourceError::OutOfRange(e)) => {
                            // retention removed records not applied yet: go on from what is left
                            let start = self.source.start(self.partition).await?;
                            if start > read_after + 1 {
                                tracing::error!(subscription = %self.sub.name, source_partition = self.partition,
                                    lost_from = read_after + 1, lost_to = start - 1, error = %e,
                                    "records the subscription had not applied were removed by the source's retention; going on after them");
                                read_after = start - 1;
                                continue;
                            }
                            return Err(SourceError::OutOfRange(e).into());
                        }
                        Err(e) => return Err(e.into()),
                    };
                    let Some(last) = records.last().map(|r| r.position) else { continue };
                    read_after = last;
                    next_id += 1;
                    let mut batch = Pending {
                        id: next_id,
                        last,
                        waiting: 0,
                        records: records.len() as u64,
                        applied: 0,
                        duplicate: 0,
                        failed: 0,
                        dead: Vec::new(),
                    };
                    in_flight += batch.records;
                    let mut chunks: HashMap<PartitionId, Chunk> = HashMap::new();
                    for r in &records {
                        match mapper.map(r, &self.entities) {
                            Ok(op) => {
                                let p = perdure_types::partition::partition_of(&op.entity, partitions);
                                let c = chunks.entry(p).or_insert_with(|| Chunk {
                                    batch: next_id,
                                    records: Vec::new(),
                                    timestamps: Vec::new(),
                                });
                                c.records.push(op);
                                c.timestamps.push(r.timestamp_ms);
                            }
                            Err(reason) => batch.dead.push(self.dead_letter(r, reason)),
                        }
                    }
                    dead_c.inc_by(batch.dead.len() as u64);
                    batch.waiting = chunks.len();
                    pending.push_back(batch);
                    for (p, chunk) in chunks {
                        let tx = senders.entry(p).or_insert_with(|| {
                            let (tx, rx) = mpsc::unbounded_channel();
                            tasks.spawn(send_loop(
                                self.entities.clone(),
                                p,
                                key.clone(),
                                rx,
                                done_tx.clone(),
                                latency.clone(),
                            ));
                            tx
                        });
                        let _ = tx.send(chunk);
                    }
                    self.board.update(&key, |s| {
                        s.read_position = last;
                        s.in_flight = in_flight;
                    });
                }
                done = done_rx.recv() => {
                    let done = done.expect("this loop holds a sender")?;
                    let Some(b) = pending.iter_mut().find(|b| b.id == done.batch) else { continue };
                    b.waiting -= 1;
                    for (position, o) in done.outcomes {
                        match o {
                            RecordOutcome::Applied => { b.applied += 1; applied_c.inc(); }
                            RecordOutcome::Duplicate => { b.duplicate += 1; duplicate_c.inc(); }
                            RecordOutcome::Failed(e) => {
                                b.failed += 1;
                                failed_c.inc();
                                tracing::debug!(subscription = %self.sub.name, position, error = %e, "a record's operation failed");
                            }
                        }
                    }
                }
                _ = tick.tick() => {}
                _ = stop.changed(), if stopping.is_none() => {}
            }
            // every record up to the front's last position is answered: it can be checkpointed
            while pending.front().is_some_and(|b| b.waiting == 0) {
                let b = pending.pop_front().expect("checked");
                done_upto = b.last;
                in_flight -= b.records;
                // a duplicate was applied by a predecessor whose count never reached a
                // checkpoint: each position is counted in exactly one checkpoint
                tally.applied += b.applied + b.failed + b.duplicate;
                tally.failed += b.failed;
                tally.dead.extend(b.dead);
            }
            if done_upto > position
                && (last_checkpoint.elapsed() >= interval
                    || tally.dead.len() >= 1000
                    || stopping.is_some())
            {
                self.checkpoint(done_upto, &mut tally, false).await?;
                position = done_upto;
                last_checkpoint = Instant::now();
                checkpoint_at = now_ms();
                let (source, p) = (self.source.clone(), self.partition);
                tokio::spawn(async move {
                    let _ = source.committed(p, done_upto).await;
                });
            } else if done_upto == position && pending.is_empty() {
                // nothing to checkpoint: the checkpoint is current
                last_checkpoint = Instant::now();
                checkpoint_at = now_ms();
            }
            if last_end.elapsed() >= END_EVERY {
                last_end = Instant::now();
                if let Ok(e) = self.source.end(self.partition).await {
                    end = e;
                }
            }
            let lag = end.max(read_after).saturating_sub(position);
            lag_gauge.set(lag as i64);
            age_gauge.set(now_ms().saturating_sub(checkpoint_at) as f64 / 1000.0);
            self.board.update(&key, |s| {
                s.position = position;
                s.end = end.max(read_after);
                s.lag = lag;
                s.in_flight = in_flight;
                s.checkpoint_at_ms = checkpoint_at;
            });
        }
    }

    /// Writes the checkpoint `position` with what `tally` counted since the last (then empty).
    async fn checkpoint(
        &self,
        position: u64,
        tally: &mut Tally,
        first: bool,
    ) -> Result<(), StopError> {
        let cp = SourceCheckpoint {
            source: self.key(),
            position,
            applied: tally.applied,
            failed: tally.failed,
            dead: std::mem::take(&mut tally.dead),
            incarnation: self.incarnation.clone(),
            at_ms: now_ms(),
        };
        let r = self
            .leader
            .propose(vec![Op::SourceCheckpoint(Box::new(cp))])
            .await?;
        *tally = Tally::default();
        match r.first() {
            Some(OpResult::Done) => Ok(()),
            Some(OpResult::Duplicate) if first => Ok(()),
            other => Err(StopError::Cluster(perdure_runtime::Error::Unavailable(
                format!("the checkpoint at {position} did not apply ({other:?}): another consumer moved it; starting again from it"),
            ))),
        }
    }

    fn dead_letter(&self, r: &Record, reason: String) -> DeadLetter {
        DeadLetter {
            partition: self.partition,
            position: r.position,
            reason,
            key: r.key.as_deref().map(|k| truncated_text(k, 256)),
            value: truncated_text(&r.value, DEAD_LETTER_VALUE_BYTES),
            at_ms: now_ms(),
        }
    }
}

/// What was counted since the last checkpoint.
#[derive(Default)]
struct Tally {
    applied: u64,
    failed: u64,
    dead: Vec<DeadLetter>,
}

/// Sends the chunks for target partition `p`, one request at a time (merging queued chunks),
/// retrying a request until it is answered (what it applied before answers `Duplicate`).
async fn send_loop(
    entities: Arc<Entities>,
    p: PartitionId,
    source: String,
    mut rx: mpsc::UnboundedReceiver<Chunk>,
    done: mpsc::UnboundedSender<Result<ChunkDone, StopError>>,
    latency: prometheus::Histogram,
) {
    while let Some(first) = rx.recv().await {
        let mut chunks = vec![first];
        let mut n = chunks[0].records.len();
        while n < MAX_SEND_RECORDS {
            match rx.try_recv() {
                Ok(c) => {
                    n += c.records.len();
                    chunks.push(c);
                }
                Err(_) => break,
            }
        }
        let mut backoff = Duration::from_millis(20);
        let mut tries = 0;
        let outcomes = loop {
            // copied from the chunks for each attempt: one copy when the first one is answered
            let records: Vec<IngestRecord> = chunks
                .iter()
                .flat_map(|c| c.records.iter().cloned())
                .collect();
            let n = records.len();
            match entities.ingest(p, &source, records).await {
                Ok(o) if o.len() == n => break o,
                Ok(o) => {
                    let _ = done.send(Err(StopError::Cluster(
                        perdure_runtime::Error::Unavailable(format!(
                            "partition {p} answered {} outcomes for {n} records",
                            o.len()
                        )),
                    )));
                    return;
                }
                Err(e) => {
                    tries += 1;
                    if tries % 10 == 0 {
                        tracing::warn!(partition = p, %source, error = %e, tries, "stream records not applied yet; retrying");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        };
        let now = now_ms();
        let mut outcomes = outcomes.into_iter();
        for c in chunks {
            for ts in c.timestamps.iter().flatten() {
                latency.observe(now.saturating_sub(*ts) as f64 / 1000.0);
            }
            let got: Vec<(u64, RecordOutcome)> = c
                .records
                .iter()
                .map(|r| r.position)
                .zip(outcomes.by_ref())
                .collect();
            if done
                .send(Ok(ChunkDone {
                    batch: c.batch,
                    outcomes: got,
                }))
                .is_err()
            {
                return;
            }
        }
    }
}

fn source_kind(e: &SourceError) -> &'static str {
    match e {
        SourceError::Unreachable(_) => "unreachable",
        SourceError::NotFound(_) => "not_found",
        SourceError::Auth(_) => "auth",
        SourceError::OutOfRange(_) => "out_of_range",
        SourceError::Other(_) => "other",
    }
}

/// Takes a consumer off the board and its series out of the metrics when it stops.
struct Cleanup {
    board: Arc<StatusBoard>,
    key: String,
    metrics: IngestMetrics,
    sub: String,
    partition: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.board.remove(&self.key);
        let l = [self.sub.as_str(), self.partition.as_str()];
        let _ = self.metrics.lag.remove_label_values(&l);
        let _ = self.metrics.checkpoint_age.remove_label_values(&l);
        self.metrics
            .consumers
            .with_label_values(&[self.sub.as_str()])
            .dec();
    }
}
