//! The storage crate's one error type.

use std::path::PathBuf;

/// Something went wrong reading or writing a node's files. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O call failed.
    #[error("{}: {op}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done ("open", "fdatasync", ...).
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file's content is damaged where damage cannot be a torn tail.
    #[error("{}: corrupt at byte {offset}: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte offset of the damage.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The last write-ahead log segment holds a damaged record followed by an intact one. A crash
    /// tears only the final write, so this is damage to data that was synced (and may have been
    /// acknowledged, or been a vote): the node refuses to start rather than cut it off. The way
    /// out is to rebuild the node from its replicas (docs/ARCHITECTURE.md, "Rebuilding a damaged
    /// node").
    #[error("{}: damaged write-ahead log record at byte {offset} ({reason}), followed by an intact record at byte {intact_at}: a crash tears only the final write, so this is damage to data that was already synced (acknowledged writes or votes may be in it); refusing to start rather than drop it. Rebuild this node from its replicas: start it under a new node id with an empty data directory, then remove the old id from the cluster (docs/ARCHITECTURE.md, \"Rebuilding a damaged node\")", path.display())]
    WalDamaged {
        /// The segment.
        path: PathBuf,
        /// Byte offset of the damaged record.
        offset: u64,
        /// Byte offset of the first intact record after it.
        intact_at: u64,
        /// What is wrong with the damaged record.
        reason: String,
    },
    /// A file is not one of ours, or of a format this build does not read.
    #[error("{}: {reason}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A stored value did not decode.
    #[error("{}: {source}", path.display())]
    Codec {
        /// The file (or store) it came from.
        path: PathBuf,
        /// The codec's error.
        source: perdure_types::codec::Error,
    },
    /// The data directory was created with another partition count.
    #[error("{}: this data directory was created with {found} partitions, the configuration asks for {configured}; the partition count of a cluster cannot change", path.display())]
    PartitionCountMismatch {
        /// The metadata file.
        path: PathBuf,
        /// Recorded on disk.
        found: u32,
        /// Asked for by the configuration.
        configured: u32,
    },
    /// The write-ahead log hit an I/O error earlier and refuses further writes (a failed fsync
    /// cannot be retried safely).
    #[error("the write-ahead log failed earlier and accepts no more writes: {0}")]
    WalFailed(String),
    /// The write-ahead log was closed.
    #[error("the write-ahead log is closed")]
    WalClosed,
    /// The embedded state store (redb) failed.
    #[error("{}: state store: {source}", path.display())]
    State {
        /// The partition's state file.
        path: PathBuf,
        /// redb's error.
        source: Box<redb::Error>,
    },
}

impl Error {
    /// Builds an [`Error::Io`].
    pub fn io(path: impl Into<PathBuf>, op: &'static str, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            op,
            source,
        }
    }
}

/// Shorthand.
pub type Result<T, E = Error> = std::result::Result<T, E>;
