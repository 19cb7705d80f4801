//! Durable timers (leader only): due timers move to the outbox, atomically with their removal,
//! and from there are delivered like any message.

use super::leader::Leader;
use super::service::PartitionService;
use futures::future::BoxFuture;
use perdure_types::command::Op;
use std::sync::Arc;
use std::time::Duration;

/// Most timers fired per command.
const BATCH: usize = 1024;

/// Fires one partition's due timers while this node leads it.
pub(crate) struct TimerService;

impl PartitionService for TimerService {
    fn name(&self) -> &'static str {
        "timers"
    }

    fn run(self: Box<Self>, leader: Arc<Leader>) -> BoxFuture<'static, ()> {
        Box::pin(async move { fire_forever(&leader).await })
    }
}

async fn fire_forever(leader: &Leader) {
    let p = leader.partition();
    loop {
        let now = super::clock::now_ms();
        if leader.state().is_err() {
            return;
        }
        match leader.read(move |s| s.timers().due(now, BATCH)).await {
            Ok(due) if !due.is_empty() => {
                let n = due.len() as u64;
                let mut ops = Vec::with_capacity(due.len() * 2);
                for t in due {
                    ops.push(Op::RemoveTimer {
                        due: t.due,
                        id: t.id,
                    });
                    ops.push(Op::Send {
                        dest: t.target.partition(leader.partitions().count()),
                        target: t.target,
                        message: t.message,
                    });
                }
                match leader.propose(ops).await {
                    Ok(_) => {
                        leader.metrics().add_timers_fired(n);
                        leader.outbox_changed();
                    }
                    Err(e) => {
                        tracing::debug!(partition = p, error = %e, "timer firing deferred");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                continue;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(partition = p, error = %e, "timer scan failed"),
        }
        let wait = match leader.read(|s| s.timers().next_due()).await {
            Ok(Some(due)) => Duration::from_millis(due.saturating_sub(now).clamp(1, 1000)),
            _ => Duration::from_millis(1000),
        };
        tokio::select! {
            _ = leader.timers_notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
