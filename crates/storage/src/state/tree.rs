//! One partition's key-value tree in its own redb file: the only code that talks to the store.
//!
//! The tables above see a sorted map of byte keys to byte values with point reads, bounded range
//! scans and one atomic write per apply batch ([`Tree::write`]). Reads are MVCC snapshots: they
//! never wait for a writer, and a writer never waits for them. [`Tree::snapshot`] pins one such
//! snapshot for as long as a snapshot build needs it.
//!
//! The tree is not a durability barrier (the Raft log and snapshot files are): most commits are
//! `Durability::None` (in the file, not fsynced), and one per [`DURABLE_EVERY`] is `Immediate`
//! with quick repair, which lets redb free pages and keeps the reopen after a crash short. A crash
//! loses at most the last 30 s of applies, which the log holds and re-applies. (Once a second
//! cost a third of the hot-key throughput: each partition's fsync competed with the WAL's.)

use crate::{Error, Result};
use redb::{Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The one table of a partition's file.
const TABLE: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("state");

/// How often a commit is made durable (frees redb's pages; bounds the work after a crash).
const DURABLE_EVERY: Duration = Duration::from_secs(30);

/// A partition's tree: cheap to clone, shared by the state machine and readers.
#[derive(Clone)]
pub(crate) struct Tree {
    db: Arc<redb::Database>,
    path: Arc<PathBuf>,
    /// When the last durable commit was made.
    durable_at: Arc<Mutex<Instant>>,
}

impl std::fmt::Debug for Tree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tree").field("path", &self.path).finish()
    }
}

/// A pinned, consistent read snapshot of a tree.
pub struct TreeSnapshot {
    table: redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
    path: Arc<PathBuf>,
}

impl std::fmt::Debug for TreeSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TreeSnapshot")
            .field("path", &self.path)
            .finish()
    }
}

fn err(path: &Path, source: impl Into<redb::Error>) -> Error {
    Error::State {
        path: path.to_path_buf(),
        source: Box::new(source.into()),
    }
}

impl Tree {
    /// Opens (or creates) the file at `path` with a page cache of `cache_bytes`.
    pub(crate) fn open(path: &Path, cache_bytes: usize) -> Result<Self> {
        let new = !path.exists();
        let db = redb::Builder::new()
            .set_cache_size(cache_bytes)
            .create(path)
            .map_err(|e| err(path, e))?;
        if new {
            // the file's name durable too: else a power cut drops the whole file with its
            // durable commits, and every restart rebuilds the state from scratch
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                crate::datadir::sync_dir(dir)?;
            }
        }
        let tree = Self {
            db: Arc::new(db),
            path: Arc::new(path.to_path_buf()),
            durable_at: Arc::new(Mutex::new(Instant::now())),
        };
        // the table exists from the start, so readers never meet a missing table
        tree.write(|_| Ok(()))?;
        Ok(tree)
    }

    /// The file, for error messages.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, source: impl Into<redb::Error>) -> Error {
        err(&self.path, source)
    }

    fn read(&self) -> Result<redb::ReadOnlyTable<&'static [u8], &'static [u8]>> {
        let rtx = self.db.begin_read().map_err(|e| self.err(e))?;
        rtx.open_table(TABLE).map_err(|e| self.err(e))
    }

    /// The value of `k`.
    pub(crate) fn get(&self, k: &[u8]) -> Result<Option<Vec<u8>>> {
        let t = self.read()?;
        let v = t.get(k).map_err(|e| self.err(e))?;
        Ok(v.map(|v| v.value().to_vec()))
    }

    /// Whether `k` is present.
    pub(crate) fn contains_key(&self, k: &[u8]) -> Result<bool> {
        let t = self.read()?;
        let v = t.get(k).map_err(|e| self.err(e))?;
        Ok(v.is_some())
    }

    /// Pairs with keys in `[start, end)`, in key order, at most `limit`.
    pub(crate) fn range(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let t = self.read()?;
        collect_range(&t, start, end, limit, &self.path)
    }

    /// Pairs whose key starts with `prefix`, in key order, at most `limit`.
    pub(crate) fn scan_prefix(
        &self,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.range(prefix, &super::keys::prefix_end(prefix), limit)
    }

    /// Calls `f` with the value of each key with `prefix`, in key order, at most `cap` of them,
    /// one at a time (bounded memory, for scans at scrape time).
    pub(crate) fn for_each_value(
        &self,
        prefix: &[u8],
        cap: usize,
        mut f: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        let t = self.read()?;
        let end = super::keys::prefix_end(prefix);
        let range = t.range(prefix..end.as_slice()).map_err(|e| self.err(e))?;
        for kv in range.take(cap) {
            let (_, v) = kv.map_err(|e| self.err(e))?;
            f(v.value())?;
        }
        Ok(())
    }

    /// Number of keys with `prefix`, counted up to `cap`.
    pub(crate) fn count_prefix(&self, prefix: &[u8], cap: usize) -> Result<usize> {
        let t = self.read()?;
        let end = super::keys::prefix_end(prefix);
        let range = t.range(prefix..end.as_slice()).map_err(|e| self.err(e))?;
        Ok(range.take(cap).count())
    }

    /// A consistent snapshot of the whole tree, pinned until dropped.
    pub(crate) fn snapshot(&self) -> Result<TreeSnapshot> {
        Ok(TreeSnapshot {
            table: self.read()?,
            path: self.path.clone(),
        })
    }

    /// Runs `f` over one write transaction and commits it atomically: all of `f`'s writes or,
    /// when `f` or the commit fails, none of them.
    pub(crate) fn write<R>(&self, f: impl FnOnce(&mut WriteTable<'_>) -> Result<R>) -> Result<R> {
        let mut wtx = self.db.begin_write().map_err(|e| self.err(e))?;
        let durable = {
            let mut at = self.durable_at.lock().unwrap_or_else(|p| p.into_inner());
            if at.elapsed() >= DURABLE_EVERY {
                *at = Instant::now();
                true
            } else {
                false
            }
        };
        if durable {
            wtx.set_quick_repair(true);
        } else {
            wtx.set_durability(Durability::None)
                .map_err(|e| self.err(e))?;
        }
        let r = {
            let table = wtx.open_table(TABLE).map_err(|e| self.err(e))?;
            let mut w = WriteTable {
                table,
                path: self.path.as_path(),
            };
            f(&mut w)?
        };
        wtx.commit().map_err(|e| self.err(e))?;
        Ok(r)
    }

    /// Makes everything committed so far durable (at close: the next start replays less).
    pub(crate) fn sync(&self) -> Result<()> {
        let mut wtx = self.db.begin_write().map_err(|e| self.err(e))?;
        wtx.set_quick_repair(true);
        wtx.commit().map_err(|e| self.err(e))?;
        *self.durable_at.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        Ok(())
    }
}

fn collect_range(
    t: &impl ReadableTable<&'static [u8], &'static [u8]>,
    start: &[u8],
    end: &[u8],
    limit: usize,
    path: &Path,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    if start >= end || limit == 0 {
        return Ok(out);
    }
    for kv in t.range(start..end).map_err(|e| err(path, e))? {
        let (k, v) = kv.map_err(|e| err(path, e))?;
        out.push((k.value().to_vec(), v.value().to_vec()));
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

impl TreeSnapshot {
    /// Number of pairs.
    pub fn len(&self) -> Result<u64> {
        self.table.len().map_err(|e| err(&self.path, e))
    }

    /// Whether the snapshot holds no pair.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Every pair, in key order.
    pub fn pairs(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::with_capacity(self.len()? as usize);
        for kv in self.table.iter().map_err(|e| err(&self.path, e))? {
            let (k, v) = kv.map_err(|e| err(&self.path, e))?;
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }
}

/// The table inside one write transaction (see [`Tree::write`]).
pub(crate) struct WriteTable<'t> {
    table: redb::Table<'t, &'static [u8], &'static [u8]>,
    path: &'t Path,
}

impl WriteTable<'_> {
    /// The value of `k`, including this transaction's own writes.
    pub(crate) fn get(&self, k: &[u8]) -> Result<Option<Vec<u8>>> {
        let v = self.table.get(k).map_err(|e| err(self.path, e))?;
        Ok(v.map(|v| v.value().to_vec()))
    }

    /// Keys in `[start, end)`, in key order, at most `limit`.
    pub(crate) fn keys(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        if start >= end || limit == 0 {
            return Ok(out);
        }
        for kv in self
            .table
            .range(start..end)
            .map_err(|e| err(self.path, e))?
        {
            let (k, _) = kv.map_err(|e| err(self.path, e))?;
            out.push(k.value().to_vec());
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Writes `k`.
    pub(crate) fn insert(&mut self, k: &[u8], v: &[u8]) -> Result<()> {
        self.table.insert(k, v).map_err(|e| err(self.path, e))?;
        Ok(())
    }

    /// Deletes `k`.
    pub(crate) fn remove(&mut self, k: &[u8]) -> Result<()> {
        self.table.remove(k).map_err(|e| err(self.path, e))?;
        Ok(())
    }

    /// Deletes every pair.
    pub(crate) fn clear(&mut self) -> Result<()> {
        self.table
            .retain(|_, _| false)
            .map_err(|e| err(self.path, e))
    }
}
