//! Opening a log directory: validation of every file first (refusing without touching anything),
//! then the few repairs a crash can call for (leftover temporary files, a torn final write).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::format::{classify, segment_name, FileName};
use super::scan::{self, Refused};
use super::segment::{create_segment, open_for_append, sync_dir};
use super::writer::{SegmentInfo, Shared, Writer};
use super::{Record, RecordKind, WalOptions};
use crate::{Error, Result};

/// What the scan of one segment found.
struct Scanned {
    seq: u64,
    path: PathBuf,
    records: Vec<Record>,
    max_entries: HashMap<u32, u64>,
    /// End of the last whole record.
    valid_end: u64,
    /// File length.
    file_len: u64,
    /// Why the scan stopped before the end of the file: a torn final write (only possible for
    /// the last segment, with no intact record after the damage).
    tail: Option<String>,
    /// The previous segment's final length, from the header.
    prev_len: u64,
}

/// Recovers the log in `dir` and builds the writer that continues it.
pub(crate) fn recover(
    dir: &Path,
    opts: WalOptions,
    shared: Arc<Shared>,
) -> Result<(Writer, Vec<Record>)> {
    ensure_dir(dir)?;
    let (seqs, tmps) = list(dir)?;
    check_contiguous(dir, &seqs)?;

    // Read and validate everything before changing anything.
    let mut scanned = Vec::with_capacity(seqs.len());
    for (i, &seq) in seqs.iter().enumerate() {
        let last = i + 1 == seqs.len();
        scanned.push(scan(dir, seq, last)?);
    }
    check_successor_lengths(&scanned)?;
    repair(dir, &tmps, scanned.last())?;

    let Rebuilt {
        sticky,
        watermarks,
        mut segments,
        records,
        active,
    } = rebuild(scanned);
    let mut created = 0;
    let (file, path, len) = match active {
        Some((path, len)) => (open_for_append(&path)?, path, len),
        None => {
            let seq = 1;
            let (file, len) = create_segment(dir, seq, 0, &[])?;
            segments.push_back(SegmentInfo {
                seq,
                max_entries: HashMap::new(),
            });
            created = 1;
            (file, dir.join(segment_name(seq)), len)
        }
    };
    shared.update_stats(|s| {
        s.segments_created = created;
        s.live_segments = segments.len() as u64;
    });
    let mut writer = Writer {
        dir: dir.to_path_buf(),
        opts,
        shared,
        file,
        path,
        len,
        segments,
        sticky,
        watermarks,
        failed: None,
        buf: Vec::new(),
        scratch: Vec::new(),
        deferred_since: None,
    };
    writer.delete_purged()?;
    tracing::info!(dir = %dir.display(), records = records.len(),
        segments = writer.segments.len(), "write-ahead log recovered");
    Ok((writer, records))
}

/// A segment followed by another must have the length its successor recorded: this catches a
/// segment cut short exactly at a record boundary, which its own scan cannot see.
fn check_successor_lengths(scanned: &[Scanned]) -> Result<()> {
    for pair in scanned.windows(2) {
        let (s, next) = (&pair[0], &pair[1]);
        if s.file_len != next.prev_len {
            return Err(Error::Corrupt {
                path: s.path.clone(),
                offset: s.file_len.min(next.prev_len),
                reason: format!(
                    "segment is {} bytes long but was {} bytes when segment {} was started after it (cut short or extended), yet a later segment exists",
                    s.file_len, next.prev_len, next.seq
                ),
            });
        }
    }
    Ok(())
}

/// The repairs recovery makes, once everything was read and validated: unfinished segment files
/// are removed and a torn tail of the last segment is cut off, durably.
fn repair(dir: &Path, tmps: &[PathBuf], last: Option<&Scanned>) -> Result<()> {
    for tmp in tmps {
        tracing::warn!(file = %tmp.display(), "removing an unfinished write-ahead log segment");
        std::fs::remove_file(tmp).map_err(|e| Error::io(tmp, "delete", e))?;
    }
    if !tmps.is_empty() {
        sync_dir(dir)?;
    }
    if let Some(last) = last {
        if let Some(damage) = &last.tail {
            tracing::warn!(file = %last.path.display(), offset = last.valid_end,
                dropped = last.file_len - last.valid_end, %damage,
                "write-ahead log ends in a torn final write (a bad record with nothing intact after it: a write cut short by a crash); truncating it");
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&last.path)
                .map_err(|e| Error::io(&last.path, "open for truncation", e))?;
            f.set_len(last.valid_end)
                .map_err(|e| Error::io(&last.path, "truncate", e))?;
            f.sync_all()
                .map_err(|e| Error::io(&last.path, "fsync", e))?;
        }
    }
    Ok(())
}

/// What the scanned segments rebuild: the writer's state and every record in order.
struct Rebuilt {
    sticky: BTreeMap<(u32, RecordKind), Record>,
    watermarks: HashMap<u32, u64>,
    segments: VecDeque<SegmentInfo>,
    records: Vec<Record>,
    /// The last segment's path and valid length, to append to.
    active: Option<(PathBuf, u64)>,
}

fn rebuild(scanned: Vec<Scanned>) -> Rebuilt {
    let mut sticky = BTreeMap::new();
    let mut watermarks = HashMap::new();
    let mut segments = VecDeque::with_capacity(scanned.len() + 1);
    let mut records = Vec::new();
    let mut active = None;
    let total = scanned.len();
    for (i, s) in scanned.into_iter().enumerate() {
        for r in &s.records {
            if r.kind == RecordKind::Purge {
                watermarks.insert(r.partition, r.index);
            }
            if r.kind.is_sticky() {
                sticky.insert((r.partition, r.kind), r.clone());
            }
        }
        records.extend(s.records);
        segments.push_back(SegmentInfo {
            seq: s.seq,
            max_entries: s.max_entries,
        });
        if i + 1 == total {
            active = Some((s.path, s.valid_end));
        }
    }
    Rebuilt {
        sticky,
        watermarks,
        segments,
        records,
        active,
    }
}

/// Creates `dir` (and its parents) if absent, making the new entry durable.
fn ensure_dir(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::Format {
            path: dir.to_path_buf(),
            reason: "the write-ahead log directory is not a directory".into(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create directory", e))?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
            Ok(())
        }
        Err(e) => Err(Error::io(dir, "stat", e)),
    }
}

/// The segment sequence numbers in `dir`, sorted, and the leftover temporary files. Anything
/// else in the directory is refused.
fn list(dir: &Path) -> Result<(Vec<u64>, Vec<PathBuf>)> {
    let mut seqs = Vec::new();
    let mut tmps = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, "list directory", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, "list directory", e))?;
        let path = entry.path();
        let kind = entry
            .file_name()
            .to_str()
            .map_or(FileName::Foreign, classify);
        match kind {
            FileName::Segment(seq) => {
                let meta = std::fs::metadata(&path).map_err(|e| Error::io(&path, "stat", e))?;
                if !meta.is_file() {
                    return Err(Error::Format {
                        path,
                        reason: "named like a write-ahead log segment but not a regular file"
                            .into(),
                    });
                }
                seqs.push(seq);
            }
            FileName::Tmp => {
                let meta = std::fs::symlink_metadata(&path)
                    .map_err(|e| Error::io(&path, "stat", e))?;
                if !meta.is_file() {
                    return Err(Error::Format {
                        path,
                        reason: "named like an unfinished write-ahead log segment but not a regular file; refusing to delete it".into(),
                    });
                }
                tmps.push(path);
            }
            FileName::Foreign => {
                return Err(Error::Format {
                    path,
                    reason: "unexpected file in the write-ahead log directory (only segments `{seq:020}.wal` belong there); move it elsewhere".into(),
                })
            }
        }
    }
    seqs.sort_unstable();
    Ok((seqs, tmps))
}

fn check_contiguous(dir: &Path, seqs: &[u64]) -> Result<()> {
    for pair in seqs.windows(2) {
        if pair[1] != pair[0] + 1 {
            let missing = pair[0] + 1;
            return Err(Error::Format {
                path: dir.join(segment_name(missing)),
                reason: format!(
                    "write-ahead log segment {missing} is missing (segments {} and {} exist); the log has a hole and cannot be replayed",
                    pair[0], pair[1]
                ),
            });
        }
    }
    Ok(())
}

/// Reads and checks one segment. Damage is an error unless `last` and it can be a torn tail.
fn scan(dir: &Path, seq: u64, last: bool) -> Result<Scanned> {
    let path = dir.join(segment_name(seq));
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, "read", e))?;
    let parsed = match scan::parse(&bytes, seq, last) {
        Ok(parsed) => parsed,
        Err(Refused::Format(reason)) => return Err(Error::Format { path, reason }),
        Err(Refused::Corrupt { offset, reason }) => {
            return Err(Error::Corrupt {
                path,
                offset,
                reason,
            })
        }
        Err(Refused::DamagedBeforeIntact {
            offset,
            intact_at,
            reason,
        }) => {
            return Err(Error::WalDamaged {
                path,
                offset,
                intact_at,
                reason,
            })
        }
    };
    Ok(Scanned {
        seq,
        path,
        file_len: bytes.len() as u64,
        records: parsed.records,
        max_entries: parsed.max_entries,
        valid_end: parsed.valid_end,
        tail: parsed.tail,
        prev_len: parsed.prev_len,
    })
}
