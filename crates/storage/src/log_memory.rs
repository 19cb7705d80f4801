//! What the Raft log entries held in memory weigh: per group, for the node, and since when.
//!
//! Every entry a [`LogStore`](crate::log_store::LogStore) holds (from its last purge to the end
//! of its log) is weighed once, when it is appended or replayed ([`weigh`]), and the weight is
//! added here; truncations and purges take it off again. The node's *log clock* counts every
//! byte ever appended (replay included, in write-ahead-log order), and each held entry remembers
//! the clock when it came: `clock - oldest held entry's clock` is how much log was written since
//! the oldest entry still held, about what the write-ahead log keeps on disk and what a restart
//! reads back (segments are deleted only once every entry in them is purged).
//!
//! The numbers are read lock-free by the task that bounds the log (`perdure-cluster`'s
//! `log_bounds`) and by the node's metrics at scrape time.

use crate::raft_types::Entry;
use openraft::EntryPayload;
use std::sync::atomic::{AtomicU64, Ordering};

/// What an entry is taken to weigh beyond its commands' payloads (ids, framing, the map node).
pub const ENTRY_OVERHEAD: u64 = 64;

/// What a membership entry is taken to weigh (a few node ids and addresses).
const MEMBERSHIP_BYTES: u64 = 256;

/// The weight of `entry` in bytes: its commands' payloads (states, messages, ids, each with a
/// small fixed cost, [`perdure_types::command::Command::payload_bytes`]: its encoded size within
/// a few percent) plus [`ENTRY_OVERHEAD`]. Cheap (no encoding) and the same at append and
/// replay.
pub fn weigh(entry: &Entry) -> u64 {
    let payload = match &entry.payload {
        EntryPayload::Blank => 0,
        EntryPayload::Normal(p) => p.commands.iter().map(|c| c.payload_bytes() as u64).sum(),
        EntryPayload::Membership(_) => MEMBERSHIP_BYTES,
    };
    ENTRY_OVERHEAD + payload
}

/// Why the log's bounds asked a group for a snapshot or a purge (a label of the counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoundReason {
    /// The partition's own bound: `raft.snapshot_every_log_bytes` (snapshots) or
    /// `raft.keep_log_bytes_after_snapshot` (purges).
    Partition,
    /// The node's bound: `raft.max_log_memory_bytes`.
    Node,
}

impl BoundReason {
    /// Both reasons, in label order.
    pub const ALL: [BoundReason; 2] = [BoundReason::Partition, BoundReason::Node];

    /// The metric label value.
    pub fn label(self) -> &'static str {
        match self {
            BoundReason::Partition => "partition_log_bytes",
            BoundReason::Node => "node_log_bytes",
        }
    }
}

/// The weight of one node's in-memory Raft logs. Shared by every log store of the node.
#[derive(Debug, Default)]
pub struct LogMemory {
    /// Bytes held, per group (the metadata group last).
    groups: Box<[AtomicU64]>,
    /// Bytes held by all groups.
    total: AtomicU64,
    /// Bytes ever appended (or replayed) on this node since it started: the log clock.
    clock: AtomicU64,
    /// The log written since the oldest entry still held, as last measured.
    span: AtomicU64,
    /// Snapshots asked for by a bound, by [`BoundReason`].
    snapshots: [AtomicU64; 2],
    /// Purges asked for by a bound, by [`BoundReason`].
    purges: [AtomicU64; 2],
}

impl LogMemory {
    /// Accounting for `groups` groups.
    pub fn new(groups: u32) -> Self {
        Self {
            groups: (0..groups).map(|_| AtomicU64::new(0)).collect(),
            ..Default::default()
        }
    }

    /// Bytes held by group `g` (0 for an unknown group).
    pub fn group_bytes(&self, g: u32) -> u64 {
        self.groups
            .get(g as usize)
            .map_or(0, |a| a.load(Ordering::Relaxed))
    }

    /// Bytes held by every group of the node.
    pub fn total_bytes(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// The log clock: bytes appended on this node since it started (replay included).
    pub fn clock(&self) -> u64 {
        self.clock.load(Ordering::Relaxed)
    }

    /// The log written since the oldest entry any group still holds, as last measured by the
    /// task bounding the logs: about what the write-ahead log keeps and a restart reads back.
    pub fn span(&self) -> u64 {
        self.span.load(Ordering::Relaxed)
    }

    /// Records the span measured.
    pub fn set_span(&self, bytes: u64) {
        self.span.store(bytes, Ordering::Relaxed);
    }

    /// Snapshots a bound asked for, for `reason`.
    pub fn snapshots_triggered(&self, reason: BoundReason) -> u64 {
        self.snapshots[reason as usize].load(Ordering::Relaxed)
    }

    /// Purges a bound asked for, for `reason`.
    pub fn purges_triggered(&self, reason: BoundReason) -> u64 {
        self.purges[reason as usize].load(Ordering::Relaxed)
    }

    /// Counts a snapshot asked for by a bound.
    pub fn count_snapshot(&self, reason: BoundReason) {
        self.snapshots[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a purge asked for by a bound.
    pub fn count_purge(&self, reason: BoundReason) {
        self.purges[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `bytes` appended to group `g`; answers the clock before them.
    pub(crate) fn add(&self, g: u32, bytes: u64) -> u64 {
        if let Some(a) = self.groups.get(g as usize) {
            a.fetch_add(bytes, Ordering::Relaxed);
        }
        self.total.fetch_add(bytes, Ordering::Relaxed);
        self.clock.fetch_add(bytes, Ordering::Relaxed)
    }

    /// Takes `bytes` dropped from group `g` off.
    pub(crate) fn remove(&self, g: u32, bytes: u64) {
        if let Some(a) = self.groups.get(g as usize) {
            a.fetch_sub(bytes, Ordering::Relaxed);
        }
        self.total.fetch_sub(bytes, Ordering::Relaxed);
    }
}
