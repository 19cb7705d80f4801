//! Group commit at the Raft level: commands from many entity actors of one partition are batched
//! into one proposal (one log entry, one fsync), one proposal in flight per partition: while it
//! commits, new commands queue up and go into the next, larger, one (measured: the same
//! throughput as 4 in flight, with more commands per entry; docs/PERFORMANCE.md).

use crate::Error;
use perdure_cluster::Partitions;
use perdure_types::command::{Command, OpResult, Proposal};
use perdure_types::PartitionId;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

/// Most commands in one proposal.
const MAX_COMMANDS: usize = 4096;

/// A proposal takes no more commands once it weighs this much (one log entry: its memory on
/// every replica until a snapshot, its WAL record).
const MAX_PROPOSAL_BYTES: usize = 32 << 20;

/// The heaviest command proposed at all: far above what the entity limits let a batch reach
/// (`entities.max_state_bytes` + `max_batch_bytes`), and below the WAL's record limit, so no
/// command can make the log refuse an entry and stop its group.
pub(crate) const MAX_COMMAND_BYTES: usize = 160 << 20;

type Reply = oneshot::Sender<Result<Vec<OpResult>, Error>>;

/// A handle to one partition's proposer task.
#[derive(Debug, Clone)]
pub(crate) struct Proposer {
    tx: mpsc::UnboundedSender<(Command, Reply)>,
}

impl Proposer {
    /// Starts the proposer of partition `p`. It stops when every handle is dropped.
    pub fn start(partitions: Arc<Partitions>, p: PartitionId) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<(Command, Reply)>();
        tokio::spawn(async move {
            let mut carried: Option<(Command, Reply)> = None;
            loop {
                let first = match carried.take() {
                    Some(c) => c,
                    None => match rx.recv().await {
                        Some(c) => c,
                        None => break,
                    },
                };
                let mut bytes = first.0.payload_bytes();
                let mut batch = vec![first];
                while batch.len() < MAX_COMMANDS && bytes < MAX_PROPOSAL_BYTES {
                    match rx.try_recv() {
                        Ok(x) => {
                            let n = x.0.payload_bytes();
                            if bytes + n > MAX_PROPOSAL_BYTES {
                                carried = Some(x);
                                break;
                            }
                            bytes += n;
                            batch.push(x);
                        }
                        Err(_) => break,
                    }
                }
                let span = tracing::debug_span!("propose", partition = p, commands = batch.len());
                propose(&partitions, p, batch).instrument(span).await;
            }
        });
        Self { tx }
    }

    /// Proposes `command`; answers its op results once committed and applied.
    pub async fn propose(&self, command: Command) -> Result<Vec<OpResult>, Error> {
        let bytes = command.payload_bytes();
        if bytes > MAX_COMMAND_BYTES {
            return Err(Error::Operation(format!(
                "the change weighs {bytes} bytes, over the {MAX_COMMAND_BYTES} one command may; \
                 nothing was applied"
            )));
        }
        let (tx, rx) = oneshot::channel();
        self.tx
            .send((command, tx))
            .map_err(|_| Error::Unavailable("the partition's proposer stopped".into()))?;
        rx.await
            .map_err(|_| Error::Unavailable("the partition's proposer stopped".into()))?
    }
}

/// Proposes `batch` as one entry and answers each command's sender.
async fn propose(partitions: &Partitions, p: PartitionId, batch: Vec<(Command, Reply)>) {
    let (commands, replies): (Vec<Command>, Vec<Reply>) = batch.into_iter().unzip();
    let n = commands.len();
    match partitions.propose_many(p, Proposal { commands }).await {
        Ok(r) if r.results.len() == n => {
            for (reply, ops) in replies.into_iter().zip(r.results) {
                let _ = reply.send(Ok(ops));
            }
        }
        Ok(r) => {
            let e = format!(
                "partition {p}: {} results for {n} commands",
                r.results.len()
            );
            tracing::error!("{e}");
            for reply in replies {
                let _ = reply.send(Err(Error::Unavailable(e.clone())));
            }
        }
        Err(e) => {
            let msg = e.to_string();
            for reply in replies {
                let _ = reply.send(Err(Error::Unavailable(msg.clone())));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use perdure_types::command::Op;
    use perdure_types::EntityId;

    #[tokio::test]
    async fn a_command_over_the_limit_is_refused_before_it_is_queued() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let proposer = Proposer { tx };
        let huge = Command::single(Op::SetState {
            entity: EntityId::new("t", "k").unwrap(),
            state: vec![0; MAX_COMMAND_BYTES + 1],
        });
        match proposer.propose(huge).await {
            Err(Error::Operation(m)) => assert!(m.contains("nothing was applied"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(rx.try_recv().is_err(), "nothing reached the proposer task");
    }
}
