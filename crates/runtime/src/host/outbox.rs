//! Outbox delivery (leader only): messages in this partition's outbox go, in sequence order, to
//! their destination partition as `Receive` ops (deduplicated there by `(source, seq)`: exactly
//! once, in order), wherever its leader is, then are acknowledged here; the receiving workload is
//! woken on the destination's leader.

use super::leader::Leader;
use super::router::Router;
use super::service::PartitionService;
use crate::Error;
use futures::future::BoxFuture;
use perdure_storage::state::Outgoing;
use perdure_types::command::{Command, Op, OpResult};
use perdure_types::PartitionId;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Most outbox messages read per round.
const BATCH: usize = 1024;

/// Delivers one partition's outbox while this node leads it.
pub(crate) struct OutboxDelivery {
    router: Arc<Router>,
}

impl OutboxDelivery {
    pub(crate) fn new(router: Arc<Router>) -> Self {
        Self { router }
    }
}

impl PartitionService for OutboxDelivery {
    fn name(&self) -> &'static str {
        "outbox delivery"
    }

    fn run(self: Box<Self>, leader: Arc<Leader>) -> BoxFuture<'static, ()> {
        Box::pin(async move { self.deliver_forever(&leader).await })
    }
}

impl OutboxDelivery {
    async fn deliver_forever(&self, leader: &Leader) {
        let p = leader.partition();
        loop {
            let pending = match leader.read(|s| s.outbox().pending(BATCH)).await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(partition = p, error = %e, "outbox read failed");
                    Vec::new()
                }
            };
            if pending.is_empty() {
                tokio::select! {
                    _ = leader.outbox_notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
                continue;
            }
            let mut by_dest: BTreeMap<PartitionId, Vec<Outgoing>> = BTreeMap::new();
            for o in pending {
                by_dest.entry(o.dest).or_default().push(o);
            }
            for (dest, msgs) in by_dest {
                if let Err(e) = self.deliver(leader, dest, msgs).await {
                    tracing::debug!(partition = p, dest, error = %e, "outbox delivery deferred");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn deliver(
        &self,
        leader: &Leader,
        dest: PartitionId,
        msgs: Vec<Outgoing>,
    ) -> Result<(), Error> {
        let p = leader.partition();
        let upto = msgs.last().map(|m| m.seq).unwrap_or(0);
        // The receiver accepts sequence numbers without gaps, so no message is ever skipped; each
        // carries its target, so delivery never decodes a workload's message.
        let mut ops: Vec<Op> = msgs
            .into_iter()
            .map(|o| Op::Receive {
                source: p,
                seq: o.seq,
                target: o.target,
                message: o.message,
            })
            .collect();
        let n = ops.len() as u64;
        if dest == p {
            // Same partition: receive and acknowledge atomically.
            ops.push(Op::AckOutbox { dest, upto });
            let command = Command::new(ops).fenced(leader.term());
            check_received(&self.router.propose_at(dest, command).await?, p, dest)?;
        } else {
            // The destination's leader may be another node: propose there, then acknowledge here.
            let results = self.router.propose_at(dest, Command::new(ops)).await?;
            check_received(&results, p, dest)?;
            leader.propose(vec![Op::AckOutbox { dest, upto }]).await?;
        }
        leader.metrics().add_delivered(n);
        Ok(())
    }
}

fn check_received(
    results: &[OpResult],
    source: PartitionId,
    dest: PartitionId,
) -> Result<(), Error> {
    for r in results {
        if let OpResult::Gap { expected } = r {
            // Never expected: the outbox is delivered in order and acknowledged only after receipt.
            tracing::error!(source, dest, expected, "outbox delivery found a gap");
            return Err(Error::Unavailable(format!(
                "partition {dest} expects sequence {expected} from {source}"
            )));
        }
    }
    Ok(())
}
