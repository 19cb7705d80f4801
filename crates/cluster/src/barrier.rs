//! The linearizable read barrier of one group, and the leadership a node resumes after a
//! restart, which the barrier must wait out.

use openraft::error::{CheckIsLeaderError, RaftError};
use openraft::{Raft, Vote};
use perdure_storage::log_store::LogStore;
use perdure_storage::TypeConfig;
use perdure_types::NodeId;
use std::time::Duration;

/// A leadership this node held before it restarted and resumes at once: openraft 0.9 restores a
/// node whose saved vote is its own committed vote as leader of that term, without a new term
/// and without a new first entry. Its read point is then the commit index saved before the
/// restart, which may lag what was acknowledged (that record is not synced on its own). Reads
/// under that leadership, and so the entity runtime's start-up barrier, wait until the log the
/// node restarted with is applied: every acknowledged write of that term is in it, because a
/// leader counts itself toward a quorum only after its own sync.
#[derive(Debug, Clone)]
pub(crate) struct Resumed {
    /// The vote saved before the restart.
    pub(crate) vote: Vote<u64>,
    /// The index of the last entry in the log at start.
    pub(crate) log_end: u64,
}

impl Resumed {
    /// The leadership `log`'s saved vote says node `node` held, if it did.
    pub(crate) fn of(node: NodeId, log: &LogStore) -> Option<Self> {
        let vote = log.vote()?;
        (vote.committed && vote.leader_id.voted_for() == Some(node)).then_some(Self {
            vote,
            log_end: log.last_log_id()?.index,
        })
    }
}

/// How long a read under a resumed leadership waits for the log it resumed with to be applied
/// (it usually takes one round trip to the followers).
const RESUMED_CATCH_UP: Duration = Duration::from_secs(5);

/// Why a read barrier failed.
#[derive(Debug)]
pub(crate) enum BarrierError {
    /// Another node leads (if known, which).
    NotLeader(Option<NodeId>),
    /// Leadership could not be confirmed, or the state could not catch up in time.
    Unavailable(String),
}

/// The linearizable read barrier of one group: leadership confirmed by a quorum, then everything
/// committed before the call applied here, including, under a leadership resumed after a restart,
/// everything in the log the node restarted with.
pub(crate) async fn read_barrier(
    raft: &Raft<TypeConfig>,
    resumed: Option<&Resumed>,
) -> Result<(), BarrierError> {
    // Decided before leadership is confirmed: votes only grow, so once the vote differs from the
    // resumed one, every confirmation is under a later leadership, whose first entry follows the
    // whole log and is part of openraft's read point.
    let catch_up = resumed.and_then(|r| {
        let m = raft.metrics();
        let m = m.borrow();
        let behind = m.last_applied.is_none_or(|a| a.index < r.log_end);
        (m.vote == r.vote && behind).then_some(r.log_end)
    });
    match raft.ensure_linearizable().await {
        Ok(_) => {}
        Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
            return Err(BarrierError::NotLeader(f.leader_id))
        }
        Err(e) => return Err(BarrierError::Unavailable(e.to_string())),
    }
    if let Some(end) = catch_up {
        raft.wait(Some(RESUMED_CATCH_UP))
            .applied_index_at_least(Some(end), "resumed leadership caught up")
            .await
            .map_err(|e| {
                BarrierError::Unavailable(format!(
                    "leadership resumed after a restart; its log up to {end} is not applied yet: {e}"
                ))
            })?;
    }
    Ok(())
}
