//! openraft glue: the set of partition groups on a node.
//!
//! [`Partitions`] is the one place that owns them: it opens the node's storage, starts one Raft
//! group per partition, routes proposals and linearizable reads to a group, and stops them all.
//! [`transport`] carries every node-to-node message (one authenticated, multiplexed connection per
//! peer; [`transport::Kind`] is the one table of request kinds); [`raft_net`] runs each
//! partition's Raft RPCs over it; [`formation`] bootstraps a cluster once from its members'
//! configs and keeps leaders spread; [`membership`] moves replicas as members come and go;
//! `log_bounds` bounds the log entries each group holds in memory by bytes (snapshots and
//! purges through openraft's trigger API). Nothing assumes one voter.
//!
//! A node is built, then run: [`Partitions::open`] starts the groups and binds the peer listener,
//! the layers above add their peer services ([`Partitions::add_service`]), then
//! [`Partitions::serve`] accepts peers with the complete table of services.
//!
//! Modules depend one way (→ reads "uses"): `status` → `partitions` → `formation` → `transfer` →
//! `membership` → `info` → `ctx` → `barrier`; `partitions` also uses `peer_server`, `raft_net`,
//! `log_bounds` and `transfer` (the write gates); everything
//! may use `transport` and `error`, which use nothing above them.

mod barrier;
mod ctx;
pub mod error;
pub mod formation;
pub mod info;
mod log_bounds;
pub mod membership;
pub mod partitions;
mod peer_server;
pub mod raft_net;
pub mod status;
mod transfer;
pub mod transport;

pub use error::Error;
pub use partitions::Partitions;
