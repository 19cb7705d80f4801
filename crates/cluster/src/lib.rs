//! openraft glue: the set of partition groups on a node.
//!
//! [`Partitions`] is the one place that owns them: it opens the node's storage, starts one Raft
//! group per partition, routes proposals and linearizable reads to a group, and stops them all.
//! The node-to-node transport arrives with the cluster work; until then [`network::NoPeers`]
//! answers every RPC as unreachable, which is exactly right for a group whose only voter is this
//! node. Nothing here assumes one voter.

pub mod error;
pub mod network;
pub mod partitions;
pub mod transport;

pub use error::Error;
pub use partitions::Partitions;
