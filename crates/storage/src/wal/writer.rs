//! The writer thread: group commit, rollover, deletion of purged segments, poisoning.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::File;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use super::format::{encode_record, segment_name, MAX_PAYLOAD};
use super::segment::{create_segment, sync_dir};
use super::{Done, Record, RecordKind, WalOptions, WalStats};
use crate::{Error, Result};

/// One submission.
pub(crate) struct Request {
    pub(crate) records: Vec<Record>,
    pub(crate) done: Option<Done>,
    /// Bytes the records occupy on disk.
    pub(crate) bytes: u64,
}

struct Queue {
    requests: VecDeque<Request>,
    closing: bool,
}

/// What the handles and the writer thread share.
pub(crate) struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    stats: Mutex<WalStats>,
    pub(crate) inject_failure: AtomicBool,
    /// `fdatasync` latency (see [`crate::metrics`]).
    pub(crate) fsync_seconds: prometheus::Histogram,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; if something did, the data is still consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The error given to a waiter whose callback was dropped without being called.
pub(crate) fn stopped() -> Error {
    Error::WalFailed("the write-ahead log thread stopped without answering".into())
}

impl Shared {
    pub(crate) fn new() -> Self {
        Self {
            queue: Mutex::new(Queue {
                requests: VecDeque::new(),
                closing: false,
            }),
            wake: Condvar::new(),
            stats: Mutex::new(WalStats::default()),
            inject_failure: AtomicBool::new(false),
            fsync_seconds: crate::metrics::fsync_histogram(),
        }
    }

    /// Queues a request, or hands it back if the log is closing.
    pub(crate) fn push(&self, request: Request) -> std::result::Result<(), Request> {
        let mut q = lock(&self.queue);
        if q.closing {
            return Err(request);
        }
        q.requests.push_back(request);
        drop(q);
        self.wake.notify_one();
        Ok(())
    }

    pub(crate) fn begin_close(&self) {
        lock(&self.queue).closing = true;
        self.wake.notify_all();
    }

    pub(crate) fn stats(&self) -> WalStats {
        lock(&self.stats).clone()
    }

    pub(crate) fn update_stats(&self, f: impl FnOnce(&mut WalStats)) {
        f(&mut lock(&self.stats));
    }

    /// Blocks for the first request (at most `wait`, when given), then takes every request
    /// already queued, up to `max_bytes` (at least one). Answers whether the log is closing
    /// and drained (then the batch is empty).
    fn next_batch(
        &self,
        max_bytes: u64,
        batch: &mut Vec<Request>,
        wait: Option<std::time::Duration>,
    ) -> bool {
        let mut q = lock(&self.queue);
        let deadline = wait.map(|w| std::time::Instant::now() + w);
        while q.requests.is_empty() && !q.closing {
            match deadline {
                None => q = self.wake.wait(q).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    q = self
                        .wake
                        .wait_timeout(q, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
        let closed = q.requests.is_empty() && q.closing;
        let mut bytes = 0u64;
        while let Some(front) = q.requests.front() {
            if !batch.is_empty() && bytes.saturating_add(front.bytes) > max_bytes {
                break;
            }
            bytes = bytes.saturating_add(front.bytes);
            batch.extend(q.requests.pop_front());
        }
        closed
    }

    /// Closes the queue and takes what is left in it.
    fn close_and_drain(&self) -> Vec<Request> {
        let mut q = lock(&self.queue);
        q.closing = true;
        q.requests.drain(..).collect()
    }
}

/// A live segment.
#[derive(Debug)]
pub(crate) struct SegmentInfo {
    pub(crate) seq: u64,
    /// Highest `Entries` index per partition in this segment.
    pub(crate) max_entries: HashMap<u32, u64>,
}

/// The writer thread's state.
pub(crate) struct Writer {
    pub(crate) dir: PathBuf,
    pub(crate) opts: WalOptions,
    pub(crate) shared: std::sync::Arc<Shared>,
    /// The active (last) segment.
    pub(crate) file: File,
    pub(crate) path: PathBuf,
    /// Bytes in the active segment.
    pub(crate) len: u64,
    /// Live segments, oldest first; the last is the active one.
    pub(crate) segments: VecDeque<SegmentInfo>,
    /// Latest record per (partition, kind) of the sticky kinds.
    pub(crate) sticky: BTreeMap<(u32, RecordKind), Record>,
    /// Index of the latest durable Purge per partition.
    pub(crate) watermarks: HashMap<u32, u64>,
    /// Set after the first I/O failure; the message every later callback gets.
    pub(crate) failed: Option<String>,
    pub(crate) buf: Vec<u8>,
    pub(crate) scratch: Vec<u8>,
    /// Since when `buf` holds records nobody waits for (written, not yet synced; see
    /// [`DEFER_MAX`]).
    pub(crate) deferred_since: Option<std::time::Instant>,
}

/// Longest a record nobody waits for (a committed index) stays unsynced. Such records ride
/// along with the next sync somebody needs instead of costing one of their own: after each
/// append, openraft saves the committed index, which would otherwise double the fsyncs.
const DEFER_MAX: std::time::Duration = std::time::Duration::from_millis(100);

/// What one request's callback will get.
enum Outcome {
    Written,
    Rejected(Error),
}

impl Writer {
    /// The writer thread's body.
    pub(crate) fn run(mut self) {
        // Whatever happens (even a bug that panics), nobody is left waiting forever.
        let guard = DrainOnExit(self.shared.clone());
        let mut batch = Vec::new();
        loop {
            let wait = self
                .deferred_since
                .map(|t| DEFER_MAX.saturating_sub(t.elapsed()));
            let closed = self
                .shared
                .next_batch(self.opts.max_batch_bytes.max(1), &mut batch, wait);
            if batch.is_empty() {
                self.sync_deferred();
                if closed {
                    break;
                }
                continue;
            }
            self.commit(&mut batch);
        }
        drop(guard);
        tracing::debug!(dir = %self.dir.display(), "write-ahead log closed");
    }

    /// Writes, syncs and answers one batch.
    fn commit(&mut self, batch: &mut Vec<Request>) {
        let mut outcomes = Vec::with_capacity(batch.len());
        let result = if self.failed.is_some() {
            Err(())
        } else {
            match self.write_batch(batch, &mut outcomes) {
                Ok(()) => Ok(()),
                Err(e) => {
                    self.fail(e);
                    Err(())
                }
            }
        };
        for (i, request) in batch.drain(..).enumerate() {
            let Some(done) = request.done else { continue };
            let answer = match (&result, outcomes.get_mut(i)) {
                (Ok(()), Some(Outcome::Rejected(e))) => Err(std::mem::replace(e, Error::WalClosed)),
                (Ok(()), _) => Ok(()),
                (Err(()), _) => Err(Error::WalFailed(self.failed.clone().unwrap_or_default())),
            };
            call(done, answer);
        }
    }

    /// Syncs records nobody waited for.
    fn sync_deferred(&mut self) {
        if self.deferred_since.take().is_some() && self.failed.is_none() {
            if let Err(e) = self.flush() {
                self.fail(e);
            }
        }
    }

    /// Records the first failure: from now on every callback gets it.
    fn fail(&mut self, e: Error) {
        let msg = e.to_string();
        tracing::error!(dir = %self.dir.display(), error = %msg,
            "write-ahead log failed; it accepts no more writes");
        self.failed = Some(msg);
    }

    fn write_batch(&mut self, batch: &[Request], outcomes: &mut Vec<Outcome>) -> Result<()> {
        let mut purges = Vec::new();
        let mut records = 0u64;
        for request in batch {
            if let Some(r) = request
                .records
                .iter()
                .find(|r| r.payload.len() > MAX_PAYLOAD)
            {
                outcomes.push(Outcome::Rejected(Error::Format {
                    path: self.dir.clone(),
                    reason: format!(
                        "a record payload of {} bytes exceeds the largest the write-ahead log holds ({MAX_PAYLOAD})",
                        r.payload.len()
                    ),
                }));
                continue;
            }
            outcomes.push(Outcome::Written);
            for record in &request.records {
                encode_record(record, &mut self.scratch, &mut self.buf);
                records += 1;
                let active = self.segments.back_mut().expect("the active segment");
                match record.kind {
                    RecordKind::Entries => {
                        let max = active.max_entries.entry(record.partition).or_insert(0);
                        *max = (*max).max(record.index);
                    }
                    RecordKind::Purge => purges.push((record.partition, record.index)),
                    _ => {}
                }
                if record.kind.is_sticky() {
                    self.sticky
                        .insert((record.partition, record.kind), record.clone());
                }
                if self.len + self.buf.len() as u64 >= self.opts.segment_bytes {
                    self.flush()?;
                    self.roll()?;
                }
            }
        }
        // Sync now if anybody waits (or a purge must be durable before segments go); else let
        // the records ride along with the next sync, at most DEFER_MAX from now.
        let waited = batch.iter().any(|r| r.done.is_some()) || !purges.is_empty();
        let overdue = self
            .deferred_since
            .is_some_and(|t| t.elapsed() >= DEFER_MAX);
        if waited || overdue {
            self.flush()?;
            self.deferred_since = None;
        } else if !self.buf.is_empty() {
            self.deferred_since
                .get_or_insert_with(std::time::Instant::now);
        }
        self.shared.update_stats(|s| s.records += records);
        for (partition, index) in purges {
            self.watermarks.insert(partition, index);
        }
        // The batch is durable. Dropping purged segments cannot lose anything: a failure leaves
        // the segment in place to be retried after the next batch, so it neither fails this
        // batch (whose records ARE durable) nor stops the log.
        if let Err(e) = self.delete_purged() {
            tracing::warn!(dir = %self.dir.display(), error = %e,
                "deleting a purged write-ahead log segment failed; will retry");
        }
        Ok(())
    }

    /// Writes the buffer to the active segment and fdatasyncs it.
    fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if self.shared.inject_failure.swap(false, Ordering::SeqCst) {
            return Err(Error::io(
                &self.path,
                "write",
                std::io::Error::other("injected failure"),
            ));
        }
        self.file
            .write_all(&self.buf)
            .map_err(|e| Error::io(&self.path, "write", e))?;
        let synced = std::time::Instant::now();
        self.file
            .sync_data()
            .map_err(|e| Error::io(&self.path, "fdatasync", e))?;
        self.shared
            .fsync_seconds
            .observe(synced.elapsed().as_secs_f64());
        let n = self.buf.len() as u64;
        self.len += n;
        self.buf.clear();
        self.shared.update_stats(|s| {
            s.syncs += 1;
            s.bytes += n;
        });
        Ok(())
    }

    /// Starts the next segment, headed by the latest sticky records. The buffer must be empty
    /// (flushed into the previous segment).
    fn roll(&mut self) -> Result<()> {
        debug_assert!(self.buf.is_empty());
        let seq = self.segments.back().map_or(1, |s| s.seq + 1);
        let mut heads = Vec::new();
        for record in self.sticky.values() {
            encode_record(record, &mut self.scratch, &mut heads);
        }
        let (file, len) = create_segment(&self.dir, seq, self.len, &heads)?;
        self.file = file;
        self.path = self.dir.join(segment_name(seq));
        self.len = len;
        self.segments.push_back(SegmentInfo {
            seq,
            max_entries: HashMap::new(),
        });
        let live = self.segments.len() as u64;
        self.shared.update_stats(|s| {
            s.segments_created += 1;
            s.live_segments = live;
            s.bytes += heads.len() as u64;
        });
        tracing::debug!(segment = %self.path.display(), heads = self.sticky.len(), "write-ahead log segment started");
        Ok(())
    }

    /// Deletes the longest prefix of non-active segments whose entries are all purged.
    pub(crate) fn delete_purged(&mut self) -> Result<()> {
        while self.segments.len() > 1 {
            let oldest = &self.segments[0];
            let purged = oldest
                .max_entries
                .iter()
                .all(|(p, max)| self.watermarks.get(p).is_some_and(|w| max <= w));
            if !purged {
                break;
            }
            let path = self.dir.join(segment_name(oldest.seq));
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, "delete", e))?;
            self.segments.pop_front();
            // One directory sync per deletion: segments disappear oldest first even across a
            // crash, so recovery never sees a gap.
            sync_dir(&self.dir)?;
            let live = self.segments.len() as u64;
            self.shared.update_stats(|s| {
                s.segments_deleted += 1;
                s.live_segments = live;
            });
            tracing::debug!(segment = %path.display(), "purged write-ahead log segment deleted");
        }
        Ok(())
    }
}

/// Runs a callback; a panic in it is logged, not allowed to stop the writer.
fn call(done: Done, answer: Result<()>) {
    if catch_unwind(AssertUnwindSafe(move || done(answer))).is_err() {
        tracing::error!("a write-ahead log completion callback panicked");
    }
}

/// On the writer thread's exit, closes the queue and fails whatever is still in it.
struct DrainOnExit(std::sync::Arc<Shared>);

impl Drop for DrainOnExit {
    fn drop(&mut self) {
        for request in self.0.close_and_drain() {
            if let Some(done) = request.done {
                call(done, Err(stopped()));
            }
        }
    }
}
