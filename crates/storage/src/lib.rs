//! Durable storage of one node.
//!
//! - [`wal`]: the write-ahead log shared by every partition of the node (segment files, a
//!   checksum per record, group-commit fdatasync).
//! - [`log_store`]: openraft's log storage for one partition, over the WAL.
//! - [`log_memory`]: what the log entries held in memory weigh, per group and for the node.
//! - [`state`]: a partition's state in its own redb file, applied atomically per log batch.
//! - [`snapshot`]: snapshot files, durable before the log behind them is purged.
//! - [`state_machine`]: openraft's state machine over `state` and `snapshot`.
//! - [`datadir`]: the directory's identity (partition count, node), lock and layout.
//! - [`store`]: opens and recovers all of it.
//! - [`metrics`]: measurements the node exports (fsync latency, snapshot builds, commit index).

pub mod datadir;
pub mod error;
pub mod log_memory;
pub mod log_store;
pub mod metrics;
pub mod raft_types;
pub mod snapshot;
pub mod state;
pub mod state_machine;
pub mod store;
pub mod wal;

pub use error::{Error, Result};
pub use raft_types::TypeConfig;
pub use store::NodeStore;
