//! Bounds the Raft log entries each group holds in memory by bytes, not only by count.
//!
//! openraft 0.9's snapshot policy counts entries (`raft.snapshot_every_entries`), and a log
//! entry stays in memory from its append until a purge after a snapshot covers it
//! (`perdure_storage::log_store`); so 1 MiB entries held a partition's log at up to 50 000 MiB.
//! One task per node looks at every group's held log (its weight is kept by the log store, see
//! `perdure_storage::log_memory`) every [`TICK`] and asks openraft, through its trigger API:
//!
//! - a **snapshot** of a group whose applied entries since its last snapshot weigh
//!   `raft.snapshot_every_log_bytes`;
//! - a **purge** of a group's log behind its snapshot down to `raft.keep_log_bytes_after_snapshot`
//!   (openraft keeps `raft.keep_entries_after_snapshot` entries by itself; whichever keeps less
//!   wins);
//! - for the node: once the log written since the oldest entry any group still holds weighs
//!   more than `raft.max_log_memory_bytes`, a snapshot (if needed) and a purge through it of
//!   the group holding that entry, oldest first. This also lets the write-ahead log delete its
//!   oldest segments (which a quiet group's few entries would keep alive), so a restart reads
//!   back no more than the bound.
//!
//! Every replica does this on its own (openraft snapshots per replica). openraft purges only
//! what a snapshot covers; on a leader it waits while a replication in flight still reads the
//! entries, and a follower that needs purged entries is sent the snapshot instead.

use openraft::Raft;
use perdure_storage::log_memory::{BoundReason, LogMemory};
use perdure_storage::log_store::HeldLog;
use perdure_storage::TypeConfig;
use perdure_types::config::RaftConfig;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the bounds are checked.
pub(crate) const TICK: Duration = Duration::from_millis(100);

/// How long a snapshot asked for may take before it is asked for again (openraft ignores a
/// request while it builds one).
const SNAPSHOT_PATIENCE: Duration = Duration::from_secs(30);

/// The byte bounds, from the `[raft]` settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    snapshot_every: u64,
    keep: u64,
    node_max: u64,
}

impl From<&RaftConfig> for Bounds {
    fn from(r: &RaftConfig) -> Self {
        Self {
            snapshot_every: r.snapshot_every_log_bytes,
            keep: r.keep_log_bytes_after_snapshot,
            node_max: r.max_log_memory_bytes,
        }
    }
}

/// One group as the task sees it.
pub(crate) struct Watched {
    group: u32,
    raft: Raft<TypeConfig>,
    held: HeldLog,
    /// The snapshot index when a snapshot was last asked for, and when.
    snapshot_asked: Option<(Option<u64>, Instant)>,
    /// The highest index a purge was asked through.
    purge_asked: Option<u64>,
}

impl Watched {
    /// Group `group`, its Raft handle and its held log.
    pub(crate) fn new(group: u32, raft: Raft<TypeConfig>, held: HeldLog) -> Self {
        Self {
            group,
            raft,
            held,
            snapshot_asked: None,
            purge_asked: None,
        }
    }
}

/// A group's positions as openraft reports them.
#[derive(Debug, Clone, Copy)]
struct Positions {
    snapshot: Option<u64>,
    applied: Option<u64>,
    purged: Option<u64>,
}

impl Watched {
    fn positions(&self) -> Positions {
        let m = self.raft.metrics();
        let m = m.borrow();
        Positions {
            snapshot: m.snapshot.map(|l| l.index),
            applied: m.last_applied.map(|l| l.index),
            purged: m.purged.map(|l| l.index),
        }
    }

    async fn ask_snapshot(&mut self, at: Positions, reason: BoundReason, memory: &LogMemory) {
        if let Some((asked_at, when)) = self.snapshot_asked {
            if asked_at == at.snapshot && when.elapsed() < SNAPSHOT_PATIENCE {
                return; // asked already, not built yet
            }
        }
        self.snapshot_asked = Some((at.snapshot, Instant::now()));
        tracing::debug!(
            group = self.group,
            reason = reason.label(),
            "snapshot asked for by the log's byte bound"
        );
        if let Err(e) = self.raft.trigger().snapshot().await {
            tracing::debug!(group = self.group, error = %e, "snapshot not asked: the group stopped");
            return;
        }
        memory.count_snapshot(reason);
    }

    async fn ask_purge(
        &mut self,
        upto: u64,
        at: Positions,
        reason: BoundReason,
        memory: &LogMemory,
    ) {
        if at.purged.is_some_and(|p| p >= upto) || self.purge_asked.is_some_and(|p| p >= upto) {
            return;
        }
        self.purge_asked = Some(upto);
        tracing::debug!(
            group = self.group,
            upto,
            reason = reason.label(),
            "log purge asked for by the log's byte bound"
        );
        if let Err(e) = self.raft.trigger().purge_log(upto).await {
            tracing::debug!(group = self.group, error = %e, "purge not asked: the group stopped");
            return;
        }
        memory.count_purge(reason);
    }

    /// The group's own bounds: a snapshot once its applied log since the last one weighs
    /// `snapshot_every`, the log behind the snapshot cut to `keep`.
    async fn check(&mut self, bounds: Bounds, memory: &LogMemory) {
        let bytes = memory.group_bytes(self.group);
        if bytes <= bounds.keep {
            return;
        }
        let at = self.positions();
        if let Some(applied) = at.applied.filter(|&a| Some(a) > at.snapshot) {
            if bytes >= bounds.snapshot_every
                && self.held.with(|l| l.bytes_between(at.snapshot, applied))
                    >= bounds.snapshot_every
            {
                self.ask_snapshot(at, BoundReason::Partition, memory).await;
            }
        }
        if let Some(snapshot) = at.snapshot {
            if let Some(upto) = self.held.with(|l| l.purge_point(snapshot, bounds.keep)) {
                self.ask_purge(upto, at, BoundReason::Partition, memory)
                    .await;
            }
        }
    }

    /// The node's bound picked this group (it holds the oldest entry): everything it applied
    /// goes into a snapshot, and its log is purged through it. Answers whether that is under
    /// way (false: its oldest entry is not applied yet, nothing can be purged).
    async fn compact(&mut self, oldest: u64, memory: &LogMemory) -> bool {
        let at = self.positions();
        match at.snapshot {
            Some(s) if s >= oldest => self.ask_purge(s, at, BoundReason::Node, memory).await,
            _ if at.applied.is_some_and(|a| a >= oldest) => {
                self.ask_snapshot(at, BoundReason::Node, memory).await
            }
            _ => return false,
        }
        true
    }
}

/// Checks the bounds of every group once: each group's own, then the node's.
pub(crate) async fn check_all(groups: &mut [Watched], bounds: Bounds, memory: &LogMemory) {
    for g in groups.iter_mut() {
        g.check(bounds, memory).await;
    }
    // the groups by their oldest entry, by the node's log clock
    let mut oldest: Vec<(u64, u64, usize)> = groups
        .iter()
        .enumerate()
        .filter_map(|(i, g)| {
            g.held
                .with(|l| l.oldest())
                .map(|(index, at)| (at, index, i))
        })
        .collect();
    oldest.sort_unstable();
    let clock = memory.clock();
    memory.set_span(
        oldest
            .first()
            .map_or(0, |&(at, _, _)| clock.saturating_sub(at)),
    );
    // the oldest group that can be compacted, while the span is over the bound
    for (at, index, i) in oldest {
        if clock.saturating_sub(at) <= bounds.node_max || groups[i].compact(index, memory).await {
            break;
        }
    }
}

/// Runs the checks every [`TICK`] until aborted.
pub(crate) fn start(
    mut groups: Vec<Watched>,
    bounds: Bounds,
    memory: Arc<LogMemory>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            check_all(&mut groups, bounds, &memory).await;
        }
    })
}
