//! Idempotency-id expiry (leader only): ids past their window are forgotten, a bounded number
//! per command, every 10 s.

use super::leader::Leader;
use super::service::PartitionService;
use futures::future::BoxFuture;
use perdure_types::command::{Command, Op};
use std::sync::Arc;
use std::time::Duration;

/// How often expired ids are removed.
const EVERY: Duration = Duration::from_secs(10);
/// Most ids removed per command.
const LIMIT: u32 = 10_000;

/// Forgets expired idempotency ids of one partition while this node leads it.
pub(crate) struct IdExpiry;

impl PartitionService for IdExpiry {
    fn name(&self) -> &'static str {
        "idempotency-id expiry"
    }

    fn run(self: Box<Self>, leader: Arc<Leader>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            loop {
                tokio::time::sleep(EVERY).await;
                let cmd = Command::single(Op::ExpireIds {
                    now: super::clock::now_ms(),
                    limit: LIMIT,
                });
                // not fenced: forgetting expired ids is right under any leadership
                if let Err(e) = leader.propose_command(cmd).await {
                    tracing::debug!(partition = leader.partition(), error = %e, "idempotency key expiry deferred");
                }
            }
        })
    }
}
