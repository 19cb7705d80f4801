//! Leadership transfer on request: the preferred leader of a group asks the current leader to
//! hand the group over, and the leader makes the handover winnable.
//!
//! openraft 0.9 has no leadership transfer. A follower that calls an election under load loses
//! it: the leader's log is always a few entries ahead (and the other followers, which hear from
//! the leader, refuse votes under its lease), so the balancer used to back off 10 s, then 20 s,
//! and a restarted node took up to a minute and a half to lead its groups again. Here the leader
//! does what the Raft thesis (§3.10) asks of a transfer:
//!
//! 1. it closes the group's write gate ([`Gates`]): new proposals wait, the ones in flight finish;
//! 2. it waits until the heir's replicated log matches its own last entry;
//! 3. it asks the heir to call an election ([`crate::membership::ElectRequest`]); the heir's log is
//!    now as long as the leader's, so the leader (whose own lease does not stop it voting) grants
//!    its vote and steps down, and the heir wins with two of three votes;
//! 4. it opens the gate once it stepped down (or after a bound): the waiting proposals then fail
//!    with "not the leader" and go where writes to a moved leader always go.
//!
//! Every wait is bounded (about 4 s in all), so a transfer that cannot happen (a heir that does
//! not catch up, a quorum lost meanwhile) costs at most that pause, and the balancer backs off.

use crate::ctx::Ctx;
use crate::membership::ElectRequest;
use crate::transport::{Kind, RemoteError, Rpc, Service};
use openraft::ServerState;
use perdure_types::{NodeId, PartitionId};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedRwLockWriteGuard, RwLock, RwLockReadGuard};
use tracing::Instrument;

/// Longest a transfer waits for the proposals in flight to finish.
const DRAIN: Duration = Duration::from_secs(1);
/// Longest it waits for the heir's log to match the leader's.
const CATCH_UP: Duration = Duration::from_secs(1);
/// Longest it waits, once the heir was asked, for this node to step down.
const STEP_DOWN: Duration = Duration::from_secs(2);

/// One write gate per group: a proposal holds its group's gate shared until it is committed; a
/// leadership transfer holds it exclusively while the heir catches up and is elected.
#[derive(Debug, Clone)]
pub(crate) struct Gates(Arc<[Arc<RwLock<()>>]>);

impl Gates {
    /// Open gates for `groups` groups.
    pub(crate) fn new(groups: usize) -> Self {
        Gates((0..groups).map(|_| Arc::new(RwLock::new(()))).collect())
    }

    /// Waits for group `g`'s gate to be open and holds it (shared) until the guard is dropped.
    /// A group without a gate (out of range) passes at once.
    pub(crate) async fn pass(&self, g: PartitionId) -> Option<RwLockReadGuard<'_, ()>> {
        Some(self.0.get(g as usize)?.read().await)
    }

    /// Closes group `g`'s gate once the proposals holding it finished, within `within`.
    async fn close(&self, g: PartitionId, within: Duration) -> Option<OwnedRwLockWriteGuard<()>> {
        let gate = self.0.get(g as usize)?.clone();
        tokio::time::timeout(within, gate.write_owned()).await.ok()
    }
}

/// "Hand group G over to me" ([`Kind::Transfer`]), sent by the group's preferred leader to its
/// current leader. The answer says whether the leader stepped down.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct TransferRequest(pub PartitionId);

impl Rpc for TransferRequest {
    const KIND: Kind = Kind::Transfer;
    type Reply = Result<bool, String>;
}

/// Serves [`TransferRequest`]s on the leader.
pub(crate) struct TransferService {
    pub(crate) ctx: Ctx,
    pub(crate) gates: Gates,
}

impl Service for TransferService {
    type Request = TransferRequest;

    async fn call(
        &self,
        from: NodeId,
        TransferRequest(g): TransferRequest,
    ) -> Result<Result<bool, String>, RemoteError> {
        let span = tracing::info_span!("leadership_transfer", group = g, to = from);
        Ok(transfer(&self.ctx, &self.gates, g, from)
            .instrument(span)
            .await)
    }
}

/// Hands group `g` over to `heir` if this node leads it and `heir` is one of its voters: see
/// the module's steps. Answers whether this node stepped down.
async fn transfer(ctx: &Ctx, gates: &Gates, g: PartitionId, heir: NodeId) -> Result<bool, String> {
    let raft = ctx
        .rafts
        .get(g as usize)
        .ok_or_else(|| format!("no group {g}"))?;
    let mut metrics = raft.metrics();
    {
        let m = metrics.borrow();
        if m.state != ServerState::Leader {
            return Err(format!("node {} does not lead group {g}", ctx.node_id));
        }
        if !m
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == heir)
        {
            return Err(format!("node {heir} is not a voter of group {g}"));
        }
    }
    let Some(closed) = gates.close(g, DRAIN).await else {
        return Err("the proposals in flight did not finish in time".into());
    };
    let caught_up = tokio::time::timeout(
        CATCH_UP,
        metrics.wait_for(|m| {
            m.state != ServerState::Leader
                || m.replication
                    .as_ref()
                    .and_then(|r| r.get(&heir).cloned().flatten())
                    .is_some_and(|l| Some(l.index) == m.last_log_index)
        }),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    let still_leading = metrics.borrow().state == ServerState::Leader;
    if !still_leading {
        return Ok(true);
    }
    if !caught_up {
        drop(closed);
        return Err(format!("node {heir} did not catch up in time"));
    }
    tracing::info!("the heir caught up; asking it to call an election");
    let asked = ctx
        .peers
        .rpc(heir, &ElectRequest(g), Some(STEP_DOWN))
        .await
        .map_err(|e| e.to_string());
    let stepped_down = match asked {
        Ok(true) => tokio::time::timeout(
            STEP_DOWN,
            metrics.wait_for(|m| m.state != ServerState::Leader),
        )
        .await
        .is_ok_and(|r| r.is_ok()),
        Ok(false) => false,
        Err(e) => {
            drop(closed);
            return Err(format!("asking node {heir} to call an election: {e}"));
        }
    };
    drop(closed);
    tracing::info!(stepped_down, "leadership transfer done");
    Ok(stepped_down)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_gate_waits_for_the_proposals_in_flight_and_holds_new_ones() {
        let gates = Gates::new(2);
        let in_flight = gates.pass(0).await.expect("group 0 has a gate");
        // the transfer cannot close the gate while a proposal holds it
        assert!(gates.close(0, Duration::from_millis(50)).await.is_none());
        drop(in_flight);
        let closed = gates.close(0, Duration::from_millis(50)).await;
        assert!(closed.is_some(), "closes once the proposal finished");
        // a new proposal waits while it is closed; the other group's does not
        let waiting = tokio::time::timeout(Duration::from_millis(50), gates.pass(0)).await;
        assert!(waiting.is_err(), "a proposal passed a closed gate");
        assert!(gates.pass(1).await.is_some());
        drop(closed);
        assert!(gates.pass(0).await.is_some(), "the gate opens again");
        // groups beyond the gates pass at once (nothing to hold)
        assert!(gates.pass(7).await.is_none());
    }
}
