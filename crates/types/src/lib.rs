//! perdure's vocabulary, shared by every other crate.
//!
//! This crate does no I/O and depends on no runtime: ids ([`EntityId`], [`PartitionId`],
//! [`NodeId`]), the key-to-partition function ([`partition`]), the commands a partition's Raft log
//! carries ([`command`]), configuration structs with their validation ([`config`]), and the one
//! module that owns every on-disk and wire encoding ([`codec`]).

pub mod api;
pub mod codec;
pub mod command;
pub mod config;
pub mod delta;
pub mod error;
pub mod ids;
pub mod membership;
pub mod message;
pub mod orchestration;
pub mod partition;
pub mod placement;
pub mod subscription;
pub mod target;
pub mod time;

pub use error::{ErrorKind, Failure};
pub use ids::{EntityId, IdError, NodeId, PartitionId};
pub use target::{InstanceId, Target};
