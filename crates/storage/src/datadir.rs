//! The data directory: its identity file, its lock, and where each part lives.
//!
//! ```text
//! DATA_DIR/
//!   perdure.meta   identity: magic line + one checksummed frame of DataDirMeta (codec)
//!   LOCK           held (flock) by the one process using the directory
//!   wal/           write-ahead log segments, shared by every partition
//!   state/         one redb file per partition group (pNNNNN.redb); derived data, rebuilt from
//!                  snapshots + log when missing or damaged
//!   snapshots/pNNNNN/   the latest snapshot file of each partition
//! ```
//!
//! The partition count is recorded when the directory is created; a later start with another
//! count is refused ([`Error::PartitionCountMismatch`]). A non-empty directory without
//! `perdure.meta` is refused, never written into.

use crate::{Error, Result};
use perdure_types::codec::{self, frame};
use perdure_types::NodeId;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

const META_FILE: &str = "perdure.meta";
const META_MAGIC: &[u8] = b"perdure data directory\n";

/// What `perdure.meta` records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataDirMeta {
    /// Number of partitions, fixed at creation.
    pub partitions: u32,
    /// The node this directory belongs to.
    pub node_id: NodeId,
    /// Creation time, milliseconds since the epoch.
    pub created_at_ms: u64,
}

/// An open, locked data directory.
#[derive(Debug)]
pub struct DataDir {
    root: PathBuf,
    meta: DataDirMeta,
    /// Held for the life of this value: the OS lock that keeps a second process out.
    _lock: File,
}

impl DataDir {
    /// Opens `root`, creating and initializing it if it does not exist or is empty.
    pub fn open(root: &Path, partitions: u32, node_id: NodeId) -> Result<Self> {
        create_dir_durably(root)?;
        let meta_path = root.join(META_FILE);
        let lock_path = root.join("LOCK");
        let meta = if meta_path.exists() {
            let meta = read_meta(&meta_path)?;
            if meta.partitions != partitions {
                return Err(Error::PartitionCountMismatch {
                    path: meta_path,
                    found: meta.partitions,
                    configured: partitions,
                });
            }
            if meta.node_id != node_id {
                return Err(Error::Format {
                    path: meta_path,
                    reason: format!(
                        "this data directory belongs to node {}, the configuration says node_id = {node_id}",
                        meta.node_id
                    ),
                });
            }
            None
        } else {
            let mut entries = fs::read_dir(root).map_err(|e| Error::io(root, "list", e))?;
            if let Some(first) = entries.next() {
                let name = first
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .unwrap_or_default();
                return Err(Error::Format {
                    path: root.to_path_buf(),
                    reason: format!(
                        "not a perdure data directory: it is not empty (holds {name:?}) and has no {META_FILE}; refusing to use it"
                    ),
                });
            }
            Some(DataDirMeta {
                partitions,
                node_id,
                created_at_ms: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0),
            })
        };
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(&lock_path, "open", e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(Error::Format {
                    path: root.to_path_buf(),
                    reason: "another perdure process is using this data directory".into(),
                })
            }
            Err(fs::TryLockError::Error(e)) => return Err(Error::io(&lock_path, "lock", e)),
        }
        let meta = match meta {
            Some(new) => {
                write_meta(&meta_path, &new)?;
                new
            }
            None => read_meta(&meta_path)?,
        };
        Ok(Self {
            root: root.to_path_buf(),
            meta,
            _lock: lock,
        })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// Its recorded identity.
    pub fn meta(&self) -> &DataDirMeta {
        &self.meta
    }
    /// Write-ahead log segments.
    pub fn wal_dir(&self) -> PathBuf {
        self.root.join("wal")
    }
    /// The state store: one redb file per partition group.
    pub fn state_dir(&self) -> PathBuf {
        self.root.join("state")
    }
    /// Snapshot files of one partition.
    pub fn snapshot_dir(&self, partition: u32) -> PathBuf {
        self.root.join("snapshots").join(format!("p{partition:05}"))
    }
}

fn read_meta(path: &Path) -> Result<DataDirMeta> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, "read", e))?;
    let Some(rest) = bytes.strip_prefix(META_MAGIC) else {
        return Err(Error::Format {
            path: path.to_path_buf(),
            reason: "not a perdure metadata file (bad magic)".into(),
        });
    };
    match frame::decode(rest) {
        frame::Decoded::Frame { body, .. } => codec::decode(body).map_err(|source| Error::Codec {
            path: path.to_path_buf(),
            source,
        }),
        frame::Decoded::Incomplete => Err(Error::Corrupt {
            path: path.to_path_buf(),
            offset: META_MAGIC.len() as u64,
            reason: "truncated".into(),
        }),
        frame::Decoded::Corrupt(c) => Err(Error::Corrupt {
            path: path.to_path_buf(),
            offset: META_MAGIC.len() as u64,
            reason: c.to_string(),
        }),
    }
}

fn write_meta(path: &Path, meta: &DataDirMeta) -> Result<()> {
    let mut bytes = META_MAGIC.to_vec();
    let body = codec::encode(meta).map_err(|source| Error::Codec {
        path: path.to_path_buf(),
        source,
    })?;
    frame::encode(&body, &mut bytes);
    write_durably(path, &bytes)
}

/// Writes `bytes` to `path` atomically and durably: a temporary file, fsync, rename, fsync of the
/// directory.
pub(crate) fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(|e| Error::io(&tmp, "create", e))?;
    f.write_all(bytes)
        .map_err(|e| Error::io(&tmp, "write", e))?;
    f.sync_all().map_err(|e| Error::io(&tmp, "fsync", e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io(path, "rename", e))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Creates `dir` and its missing parents, and fsyncs the parent of each (and of `dir` even when
/// it existed: an earlier process may have crashed between creating it and syncing): a
/// directory's entry is durable only once its parent is synced, and a file synced inside a
/// directory whose entry is not vanishes with it at a power cut. (Found by the chaos power-loss
/// nemesis: `snapshots/` and `snapshots/pNNNNN/` were never synced in their parents, so a power
/// cut lost every snapshot, and a log purged behind one left the node unable to start.)
pub(crate) fn create_dir_durably(dir: &Path) -> Result<()> {
    let mut new = Vec::new();
    let mut p = dir;
    while !p.as_os_str().is_empty() {
        match fs::symlink_metadata(p) {
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => new.push(p),
            Err(e) => return Err(Error::io(p, "stat", e)),
        }
        match p.parent() {
            Some(parent) => p = parent,
            None => break,
        }
    }
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create directory", e))?;
    if new.is_empty() {
        new.push(dir);
    }
    for d in new {
        if let Some(parent) = d.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

/// fsyncs a directory, making creations, renames and deletions in it durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, "fsync directory", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_then_reopens() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("d");
        let meta = DataDir::open(&root, 8, 1).unwrap().meta().clone();
        assert_eq!(meta.partitions, 8);
        let again = DataDir::open(&root, 8, 1).unwrap();
        assert_eq!(again.meta(), &meta);
    }

    #[test]
    fn second_process_is_kept_out() {
        let t = tempfile::tempdir().unwrap();
        let _held = DataDir::open(t.path(), 4, 1).unwrap();
        let e = DataDir::open(t.path(), 4, 1).unwrap_err();
        assert!(e.to_string().contains("another perdure process"), "{e}");
    }

    #[test]
    fn partition_count_cannot_change() {
        let t = tempfile::tempdir().unwrap();
        drop(DataDir::open(t.path(), 8, 1).unwrap());
        let e = DataDir::open(t.path(), 16, 1).unwrap_err();
        let s = e.to_string();
        assert!(matches!(
            e,
            Error::PartitionCountMismatch {
                found: 8,
                configured: 16,
                ..
            }
        ));
        assert!(
            s.contains("perdure.meta") && s.contains("8 partitions"),
            "{s}"
        );
    }

    #[test]
    fn foreign_directory_is_refused_untouched() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("photo.jpg"), b"not ours").unwrap();
        let e = DataDir::open(t.path(), 8, 1).unwrap_err();
        assert!(
            e.to_string().contains("not a perdure data directory"),
            "{e}"
        );
        let names: Vec<_> = fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("photo.jpg")]);
    }

    #[test]
    fn damaged_newer_or_older_meta_is_refused_with_the_file_named() {
        let t = tempfile::tempdir().unwrap();
        drop(DataDir::open(t.path(), 8, 1).unwrap());
        let path = t.path().join(META_FILE);
        let good = fs::read(&path).unwrap();

        let mut newer = good.clone();
        // the version byte is the first byte of the frame body
        let at = META_MAGIC.len() + frame::HEADER_LEN;
        newer[at] = codec::FORMAT_VERSION + 1;
        let body = newer[at..].to_vec();
        newer.truncate(META_MAGIC.len());
        frame::encode(&body, &mut newer);
        fs::write(&path, &newer).unwrap();
        let e = DataDir::open(t.path(), 8, 1).unwrap_err().to_string();
        assert!(e.contains("perdure.meta") && e.contains("newer"), "{e}");
        assert_eq!(fs::read(&path).unwrap(), newer, "the file was rewritten");

        // a data directory of the first format (before messages were addressed by target)
        let mut older = good.clone();
        older[at] = 1;
        let body = older[at..].to_vec();
        older.truncate(META_MAGIC.len());
        frame::encode(&body, &mut older);
        fs::write(&path, &older).unwrap();
        let e = DataDir::open(t.path(), 8, 1).unwrap_err().to_string();
        assert!(
            e.contains("perdure.meta") && e.contains("older perdure"),
            "{e}"
        );
        assert_eq!(fs::read(&path).unwrap(), older, "the file was rewritten");

        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        fs::write(&path, &flipped).unwrap();
        let e = DataDir::open(t.path(), 8, 1).unwrap_err().to_string();
        assert!(e.contains("perdure.meta") && e.contains("checksum"), "{e}");

        fs::write(&path, b"hello").unwrap();
        let e = DataDir::open(t.path(), 8, 1).unwrap_err().to_string();
        assert!(e.contains("perdure.meta") && e.contains("magic"), "{e}");
    }
}
