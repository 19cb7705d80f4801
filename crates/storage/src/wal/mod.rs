//! The write-ahead log of a node: one sequence of segment files shared by every Raft partition
//! of the node, written by one thread that groups concurrent writes under one `fdatasync`.
//!
//! The promise: a write's completion (its [`Done`] callback, or the return of [`Wal::write`] /
//! [`Wal::write_blocking`]) is reported only after `fdatasync` returned for every byte of it.
//!
//! - **Layout**: segment files `{seq:020}.wal` in one directory, each starting with a 32-byte
//!   header (layout below) followed by checksummed frames, one record each. The header
//!   records the previous segment's final length, so a segment cut short at a record boundary
//!   is detected.
//!   A segment is created as `{seq:020}.wal.tmp`, its header and *sticky heads* written and
//!   synced, then renamed into place and the directory synced, so a segment that exists is
//!   whole up to its first record.
//! - **Sticky heads**: [`RecordKind::Purge`], [`RecordKind::Vote`] and [`RecordKind::Committed`]
//!   only matter in their latest version per partition. Every new segment starts with the latest
//!   of each (partition, kind) written so far, so no segment depends on older ones for them.
//! - **Deletion**: the oldest segments are deleted once every partition that has `Entries` in
//!   them has a durable `Purge` at or above their highest `Entries` index. A partition that never
//!   purges keeps every segment holding its entries alive.
//! - **Recovery** ([`Wal::open`]): damage in a segment followed by another segment is refused. In
//!   the last segment, an incomplete or damaged record with no intact record anywhere after it
//!   is a torn final write: it and everything after it are cut off with a warning. A damaged
//!   record followed by an intact one is damage to synced data, refused naming the file and
//!   the offset ([`Error::WalDamaged`]).
//!
//! Header layout (32 bytes, little-endian): `[magic "PERDWAL\0" 8][version u8 = 1]
//! [reserved 3 zero bytes][seq u64][previous segment's final length u64]
//! [crc32 of the preceding 28 bytes u32]`. Record layout: a
//! [`perdure_types::codec::frame`] (`[len u32][crc32 u32][body]`) whose body is
//! `[partition u32][kind u8][index u64][payload]`.

mod format;
#[doc(hidden)]
pub mod fuzz;
mod recovery;
mod resync;
mod scan;
mod segment;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub use format::{MAX_PAYLOAD, RECORD_OVERHEAD, SEGMENT_HEADER_LEN};

use crate::{Error, Result};
use writer::{Request, Shared};

/// What a record is. Stored as one byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordKind {
    /// Log entries; `index` is the highest log index in the payload.
    Entries = 1,
    /// The log was truncated; `index` is the first index removed.
    Truncate = 2,
    /// The log was purged; `index` is the highest index purged.
    Purge = 3,
    /// The vote; `index` is 0.
    Vote = 4,
    /// The committed index; `index` is 0.
    Committed = 5,
}

impl RecordKind {
    /// Purge, Vote, Committed: only the latest per (partition, kind) matters.
    pub fn is_sticky(self) -> bool {
        matches!(
            self,
            RecordKind::Purge | RecordKind::Vote | RecordKind::Committed
        )
    }

    /// The kind stored as `byte`, if any.
    pub fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            1 => RecordKind::Entries,
            2 => RecordKind::Truncate,
            3 => RecordKind::Purge,
            4 => RecordKind::Vote,
            5 => RecordKind::Committed,
            _ => return None,
        })
    }
}

/// One record of the log. The log does not interpret `payload`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The Raft partition it belongs to.
    pub partition: u32,
    /// What it is.
    pub kind: RecordKind,
    /// Entries: highest log index in the payload. Truncate: first index removed. Purge: highest
    /// index purged. Vote/Committed: 0.
    pub index: u64,
    /// Opaque bytes, at most [`MAX_PAYLOAD`].
    pub payload: Vec<u8>,
}

impl Record {
    /// Bytes this record occupies in a segment.
    pub fn encoded_len(&self) -> u64 {
        (RECORD_OVERHEAD + self.payload.len()) as u64
    }
}

/// Called once a submission is durable (`Ok`) or can never be (`Err`). Runs on the writer
/// thread (or, for a submission to a closed log, on the submitting thread): keep it short and
/// do not block on the log from inside it.
pub type Done = Box<dyn FnOnce(Result<()>) + Send + 'static>;

/// Tuning of the log.
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// A segment is closed and the next one started once it holds this many bytes.
    pub segment_bytes: u64,
    /// Most bytes one group commit gathers before it syncs (a single larger submission is
    /// still written whole).
    pub max_batch_bytes: u64,
}

impl From<&perdure_types::config::WalConfig> for WalOptions {
    fn from(c: &perdure_types::config::WalConfig) -> Self {
        Self {
            segment_bytes: c.segment_bytes,
            max_batch_bytes: c.max_batch_bytes,
        }
    }
}

impl Default for WalOptions {
    fn default() -> Self {
        Self::from(&perdure_types::config::WalConfig::default())
    }
}

/// Counters since [`Wal::open`].
#[derive(Debug, Clone, Default)]
pub struct WalStats {
    /// `fdatasync` calls on segment data.
    pub syncs: u64,
    /// Records written for callers (sticky heads not counted).
    pub records: u64,
    /// Record bytes written, frames included (sticky heads counted, segment headers not).
    pub bytes: u64,
    /// Segments created.
    pub segments_created: u64,
    /// Segments deleted after purges.
    pub segments_deleted: u64,
    /// Segment files in the directory now.
    pub live_segments: u64,
}

/// A handle on the node's write-ahead log. Cheap to clone; the log closes when the last handle
/// is dropped (or on [`Wal::close`]).
#[derive(Clone)]
pub struct Wal {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.inner.dir)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Wal {
    /// Opens (creating `dir` if absent) and recovers. Returns every surviving record in write
    /// order, sticky heads included (so a sticky record may come back more than once).
    ///
    /// Refuses, touching no file, a directory holding anything but segments, a segment this
    /// build cannot read, or damage that cannot be a torn final write (damage in a segment that
    /// is not the last, or damage followed by an intact record: [`Error::WalDamaged`]).
    pub fn open(dir: &Path, opts: WalOptions) -> Result<(Wal, Vec<Record>)> {
        let shared = Arc::new(Shared::new());
        let (writer, records) = recovery::recover(dir, opts, shared.clone())?;
        let thread = std::thread::Builder::new()
            .name("perdure-wal".into())
            .spawn(move || writer.run())
            .map_err(|e| Error::io(dir, "spawn the write-ahead log thread", e))?;
        let wal = Wal {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                shared,
                thread: Mutex::new(Some(thread)),
            }),
        };
        Ok((wal, records))
    }

    /// The directory of the log.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Queues `records` to be written in order, after everything submitted earlier. `done`
    /// runs (on the writer thread) only after the records are durable (fdatasync returned), or
    /// with an error. Callbacks run in submission order. Records without `done` (nobody waits)
    /// cost no sync of their own: they are written with the next sync somebody needs, or at
    /// the latest 100 ms later, or at close.
    pub fn submit(&self, records: Vec<Record>, done: Option<Done>) {
        let bytes = records.iter().map(Record::encoded_len).sum();
        let request = Request {
            records,
            done,
            bytes,
        };
        if let Err(request) = self.inner.shared.push(request) {
            if let Some(done) = request.done {
                done(Err(Error::WalClosed));
            }
        }
    }

    /// submit + wait for durability, for async callers. Dropping the future does not withdraw
    /// the records: they may still be written.
    pub async fn write(&self, records: Vec<Record>) -> Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(
            records,
            Some(Box::new(move |r| {
                let _ = tx.send(r);
            })),
        );
        rx.await.unwrap_or_else(|_| Err(writer::stopped()))
    }

    /// Blocking variant of [`Wal::write`] for non-async callers and tests. Must not be called
    /// from a [`Done`] callback (it would wait for itself).
    pub fn write_blocking(&self, records: Vec<Record>) -> Result<()> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.submit(
            records,
            Some(Box::new(move |r| {
                let _ = tx.send(r);
            })),
        );
        rx.recv().unwrap_or_else(|_| Err(writer::stopped()))
    }

    /// Counters since open.
    pub fn stats(&self) -> WalStats {
        self.inner.shared.stats()
    }

    /// The latency histogram of this log's `fdatasync` calls, in seconds (registered by the node
    /// in its metrics registry; see [`crate::metrics`]).
    pub fn fsync_seconds(&self) -> &prometheus::Histogram {
        &self.inner.shared.fsync_seconds
    }

    /// Drains queued work, syncs, stops the writer thread. Later submits fail with
    /// [`Error::WalClosed`]. Also done on drop of the last handle. Called from a [`Done`]
    /// callback, it stops the log without waiting for the writer thread.
    pub fn close(&self) {
        self.inner.close();
    }

    /// Test hook: the next write to a segment fails as if the disk had returned an I/O error,
    /// which poisons the log like a real failure would.
    #[doc(hidden)]
    pub fn inject_write_failure(&self) {
        self.inner
            .shared
            .inject_failure
            .store(true, Ordering::SeqCst);
    }
}

impl Inner {
    fn close(&self) {
        self.shared.begin_close();
        let handle = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = handle {
            // From a callback on the writer thread itself: it stops once this callback returns.
            let on_writer = handle.thread().id() == std::thread::current().id();
            if !on_writer && handle.join().is_err() {
                tracing::error!(dir = %self.dir.display(), "the write-ahead log thread panicked");
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod damage_tests;
#[cfg(test)]
mod tests;
