//! Group commit at the Raft level: commands from many entity actors of one partition are batched
//! into one proposal (one log entry, one fsync), with a few proposals in flight.

use crate::Error;
use perdure_cluster::Partitions;
use perdure_types::command::{Command, OpResult, Proposal};
use perdure_types::PartitionId;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Most proposals of one partition in flight at once; while they are, new commands queue up and
/// go into the next, larger, proposal.
const MAX_IN_FLIGHT: usize = 1;
/// Most commands in one proposal.
const MAX_COMMANDS: usize = 4096;

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
            let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
            while let Some(first) = rx.recv().await {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    break;
                };
                let mut batch = vec![first];
                while batch.len() < MAX_COMMANDS {
                    match rx.try_recv() {
                        Ok(x) => batch.push(x),
                        Err(_) => break,
                    }
                }
                let partitions = partitions.clone();
                let span = tracing::debug_span!("propose", partition = p, commands = batch.len());
                tokio::spawn(tracing::Instrument::instrument(
                    async move {
                        let (commands, replies): (Vec<Command>, Vec<Reply>) =
                            batch.into_iter().unzip();
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
                        drop(permit);
                    },
                    span,
                ));
            }
        });
        Self { tx }
    }

    /// Proposes `command`; answers its op results once committed and applied.
    pub async fn propose(&self, command: Command) -> Result<Vec<OpResult>, Error> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send((command, tx))
            .map_err(|_| Error::Unavailable("the partition's proposer stopped".into()))?;
        rx.await
            .map_err(|_| Error::Unavailable("the partition's proposer stopped".into()))?
    }
}
