//! Snapshot files: one partition's whole state at a log position.
//!
//! Format (the same bytes travel to followers that install it):
//! ```text
//! "perdure snapshot\n"
//! frame(codec(SnapshotHeader { partition, meta, pairs }))
//! frame(codec((key, value)))   x pairs
//! ```
//! Nothing may follow the last pair; a missing pair or any damaged frame makes the file invalid.
//! A partition keeps only its latest snapshot, named `{ordinal:020}.snap` where the ordinal is
//! `last_log_id.index + 1` (0 for a snapshot of nothing), written with [`write_durably`].

use crate::datadir::{create_dir_durably, sync_dir, write_durably};
use crate::raft_types::SnapshotMeta;
use crate::{Error, Result};
use perdure_types::codec::{self, frame};
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const MAGIC: &[u8] = b"perdure snapshot\n";

#[derive(Debug, Serialize, Deserialize)]
struct SnapshotHeader {
    partition: u32,
    meta: SnapshotMeta,
    pairs: u64,
}

/// A decoded snapshot.
#[derive(Debug)]
pub struct SnapshotContent {
    /// Partition it belongs to.
    pub partition: u32,
    /// Its Raft metadata.
    pub meta: SnapshotMeta,
    /// Every key and value of the partition's state, in key order.
    pub pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn codec_err(path: &Path) -> impl FnOnce(codec::Error) -> Error + '_ {
    move |source| Error::Codec {
        path: path.to_path_buf(),
        source,
    }
}

/// Bytes without owning them: a snapshot is encoded straight from borrowed pairs. Written
/// as one byte string, which the codec lays out exactly as a `Vec<u8>` (a length, then the bytes;
/// tested), only copied at once instead of visited byte by byte (half the encode time: 23 ms
/// instead of 46 ms for 200,000 pairs, 26 MB).
struct Bytes<'a>(&'a [u8]);

impl serde::Serialize for Bytes<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// Encodes a snapshot file from `(key, value)` pairs (owned or borrowed).
pub fn encode<K: AsRef<[u8]>, V: AsRef<[u8]>>(
    partition: u32,
    meta: &SnapshotMeta,
    pairs: &[(K, V)],
) -> Result<Vec<u8>> {
    let p = Path::new("<snapshot>");
    let mut out = MAGIC.to_vec();
    let header = SnapshotHeader {
        partition,
        meta: meta.clone(),
        pairs: pairs.len() as u64,
    };
    frame::encode(&codec::encode(&header).map_err(codec_err(p))?, &mut out);
    let mut body = Vec::new();
    for (k, v) in pairs {
        body.clear();
        codec::encode_into(&(Bytes(k.as_ref()), Bytes(v.as_ref())), &mut body)
            .map_err(codec_err(p))?;
        frame::encode(&body, &mut out);
    }
    Ok(out)
}

/// Decodes and verifies a snapshot file's bytes; `path` names the source in errors.
pub fn decode(bytes: &[u8], path: &Path) -> Result<SnapshotContent> {
    let corrupt = |offset: usize, reason: String| Error::Corrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason,
    };
    let Some(mut rest) = bytes.strip_prefix(MAGIC) else {
        return Err(Error::Format {
            path: path.to_path_buf(),
            reason: "not a perdure snapshot (bad magic)".into(),
        });
    };
    let next_frame = |rest: &mut &[u8]| -> Result<Vec<u8>> {
        let offset = bytes.len() - rest.len();
        match frame::decode(rest) {
            frame::Decoded::Frame { body, len } => {
                *rest = &rest[len..];
                Ok(body.to_vec())
            }
            frame::Decoded::Incomplete => Err(corrupt(offset, "truncated".into())),
            frame::Decoded::Corrupt(c) => Err(corrupt(offset, c.to_string())),
        }
    };
    let header: SnapshotHeader = codec::decode(&next_frame(&mut rest)?).map_err(codec_err(path))?;
    let mut pairs = Vec::with_capacity(header.pairs.min(1 << 20) as usize);
    for _ in 0..header.pairs {
        pairs.push(codec::decode(&next_frame(&mut rest)?).map_err(codec_err(path))?);
    }
    if !rest.is_empty() {
        return Err(corrupt(
            bytes.len() - rest.len(),
            format!("{} unexpected bytes after the last pair", rest.len()),
        ));
    }
    Ok(SnapshotContent {
        partition: header.partition,
        meta: header.meta,
        pairs,
    })
}

/// The snapshot files of one partition.
#[derive(Debug)]
pub struct SnapshotStore {
    dir: PathBuf,
    /// Serializes saves and purges (a build may race an install).
    lock: Mutex<()>,
    /// Where snapshot builds are timed, if the node measures them (see [`crate::metrics`]).
    build_seconds: Option<prometheus::Histogram>,
}

fn ordinal(meta: &SnapshotMeta) -> u64 {
    meta.last_log_id.map(|l| l.index + 1).unwrap_or(0)
}

impl SnapshotStore {
    /// The store in `dir` (created if absent).
    pub fn open(dir: PathBuf) -> Result<Self> {
        create_dir_durably(&dir)?;
        Ok(Self {
            dir,
            lock: Mutex::new(()),
            build_seconds: None,
        })
    }

    /// Times every snapshot built for this partition into `histogram` (seconds).
    pub fn with_build_histogram(mut self, histogram: prometheus::Histogram) -> Self {
        self.build_seconds = Some(histogram);
        self
    }

    /// Records that a snapshot was built in `seconds`.
    pub fn observe_build(&self, seconds: f64) {
        if let Some(h) = &self.build_seconds {
            h.observe(seconds);
        }
    }

    /// Durably saves an encoded snapshot and deletes older ones. A snapshot older than the
    /// newest saved one is not saved (an install may have overtaken a build).
    pub fn save(&self, meta: &SnapshotMeta, bytes: &[u8]) -> Result<()> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let ord = ordinal(meta);
        if let Some((newest, _)) = self.newest_file()? {
            if newest > ord {
                return Ok(());
            }
        }
        let path = self.dir.join(format!("{ord:020}.snap"));
        write_durably(&path, bytes)?;
        let mut removed = false;
        for (o, p) in self.files()? {
            if o < ord {
                fs::remove_file(&p).map_err(|e| Error::io(&p, "remove", e))?;
                removed = true;
            }
        }
        if removed {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// The newest snapshot's path and bytes, if any.
    pub fn latest(&self) -> Result<Option<(PathBuf, Vec<u8>)>> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        match self.newest_file()? {
            None => Ok(None),
            Some((_, path)) => {
                let bytes = fs::read(&path).map_err(|e| Error::io(&path, "read", e))?;
                Ok(Some((path, bytes)))
            }
        }
    }

    fn newest_file(&self) -> Result<Option<(u64, PathBuf)>> {
        Ok(self.files()?.into_iter().max_by_key(|(o, _)| *o))
    }

    fn files(&self) -> Result<Vec<(u64, PathBuf)>> {
        let mut out = Vec::new();
        let rd = fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, "list", e))?;
        for entry in rd {
            let entry = entry.map_err(|e| Error::io(&self.dir, "list", e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(stem) = name.strip_suffix(".snap") {
                match stem.parse::<u64>() {
                    Ok(o) => out.push((o, entry.path())),
                    Err(_) => {
                        return Err(Error::Format {
                            path: entry.path(),
                            reason: "unexpected file in a snapshot directory".into(),
                        })
                    }
                }
            } else if name.ends_with(".tmp") {
                // an interrupted save: never renamed, so never valid
                let p = entry.path();
                fs::remove_file(&p).map_err(|e| Error::io(&p, "remove", e))?;
            } else {
                return Err(Error::Format {
                    path: entry.path(),
                    reason: "unexpected file in a snapshot directory".into(),
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_buffers_encode_byte_identical_to_owned_pairs() {
        let meta = SnapshotMeta::default();
        let owned: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (b"k1".to_vec(), b"a value".to_vec()),
            (vec![0, 255, 7], vec![]),
            (vec![9; 300], vec![1; 70_000]),
        ];
        let shared: Vec<(&[u8], &[u8])> = owned
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
            .collect();
        let a = encode(3, &meta, &owned).unwrap();
        assert_eq!(a, encode(3, &meta, &shared).unwrap());
        // and the owned encoding is the pair's own serde form, as files written before
        let mut body = Vec::new();
        codec::encode_into(&owned[2], &mut body).unwrap();
        assert!(a.windows(body.len()).any(|w| w == body.as_slice()));
        let back = decode(&a, Path::new("t")).unwrap();
        assert_eq!(back.pairs, owned);
    }
}
