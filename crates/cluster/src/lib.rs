//! openraft glue: the set of partition groups on a node.
//!
//! [`Partitions`] is the one place that owns them: it opens the node's storage, starts one Raft
//! group per partition, routes proposals and linearizable reads to a group, and stops them all.
//! [`transport`] carries every node-to-node message (one authenticated, multiplexed connection per
//! peer); [`raft_net`] runs each partition's Raft RPCs over it; [`formation`] bootstraps a
//! cluster once from its members' configs and keeps leaders spread. Nothing assumes one voter.

pub mod error;
pub mod formation;
pub mod membership;
pub mod partitions;
pub mod raft_net;
pub mod transport;

pub use error::Error;
pub use partitions::Partitions;
