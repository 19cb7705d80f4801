//! The leader-change sampler: a light task that polls every partition's leadership and counts
//! leader (or term) changes into `perdure_raft_leader_changes_total{partition}`.

use perdure_cluster::Partitions;
use prometheus::{IntCounterVec, Opts, Registry};
use std::time::Duration;

/// How often leadership is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);

/// `perdure_raft_leader_changes_total{partition}`, with a series for every partition from start.
#[derive(Debug)]
pub(super) struct LeaderChanges {
    changes: IntCounterVec,
    /// `"0"`, `"1"`, ...: the partition label values, made once.
    labels: Vec<String>,
}

impl LeaderChanges {
    /// Registers the counter in `r`, one series per partition of `partitions` (at 0).
    pub(super) fn new(r: &Registry, partitions: u32) -> prometheus::Result<Self> {
        let changes = IntCounterVec::new(
            Opts::new(
                "perdure_raft_leader_changes_total",
                "Changes of a partition's leader (or term) seen by this node.",
            ),
            &["partition"],
        )?;
        r.register(Box::new(changes.clone()))?;
        let labels: Vec<String> = (0..partitions).map(|p| p.to_string()).collect();
        for l in &labels {
            changes.with_label_values(&[l.as_str()]);
        }
        Ok(Self { changes, labels })
    }

    /// Samples every partition's leadership until `stop` fires. Polls rather than watching:
    /// Raft metrics change on every commit, leadership rarely.
    pub(super) async fn watch(
        &self,
        partitions: &Partitions,
        mut stop: tokio::sync::oneshot::Receiver<()>,
    ) {
        let mut last: Vec<Option<(u64, Option<u64>)>> = vec![None; partitions.count() as usize];
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tick.tick() => {}
            }
            for (p, seen) in last.iter_mut().enumerate() {
                let Ok(w) = partitions.metrics(p as u32) else {
                    continue;
                };
                let now = {
                    let m = w.borrow();
                    (m.current_term, m.current_leader)
                };
                if now.1.is_some() {
                    if seen.is_some_and(|before| before != now) {
                        self.changes
                            .with_label_values(&[self.labels[p].as_str()])
                            .inc();
                    }
                    *seen = Some(now);
                }
            }
        }
    }
}
