//! Durable storage of one node: the write-ahead log shared by all partitions ([`wal`]), the
//! sled-backed partition state and its snapshots, and openraft's storage traits over them.

pub mod error;
pub mod wal;

pub use error::{Error, Result};
