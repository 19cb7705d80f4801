//! Group commit at the Raft level: commands from many entity actors of one partition are batched
//! into one proposal (one log entry, one fsync), one proposal in flight per partition: while it
//! commits, new commands queue up and go into the next, larger, one (measured: the same
//! throughput as 4 in flight, with more commands per entry; docs/PERFORMANCE.md).

use super::metrics::HostMetrics;
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

/// A command waiting to be proposed, with where its results go.
type Queued = (Command, Reply);

/// A handle to one partition's proposer task.
#[derive(Debug, Clone)]
pub(crate) struct Proposer {
    tx: mpsc::UnboundedSender<(Command, Reply)>,
}

impl Proposer {
    /// Starts the proposer of partition `p`, counting its proposals into `metrics`. It stops
    /// when every handle is dropped.
    pub fn start(partitions: Arc<Partitions>, p: PartitionId, metrics: Arc<HostMetrics>) -> Self {
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
                let (batch, rest) = next_batch(first, &mut rx);
                carried = rest;
                metrics.add_proposal(batch.len() as u64);
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

/// The next proposal: `first`, then what is queued, up to [`MAX_COMMANDS`] commands and
/// [`MAX_PROPOSAL_BYTES`] (a single heavier command goes alone); the command that did not fit
/// is carried into the next one.
fn next_batch(
    first: Queued,
    rx: &mut mpsc::UnboundedReceiver<Queued>,
) -> (Vec<Queued>, Option<Queued>) {
    let mut bytes = first.0.payload_bytes();
    let mut batch = vec![first];
    while batch.len() < MAX_COMMANDS && bytes < MAX_PROPOSAL_BYTES {
        match rx.try_recv() {
            Ok(x) => {
                let n = x.0.payload_bytes();
                if bytes + n > MAX_PROPOSAL_BYTES {
                    return (batch, Some(x));
                }
                bytes += n;
                batch.push(x);
            }
            Err(_) => break,
        }
    }
    (batch, None)
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

    fn command(bytes: usize) -> (Command, Reply) {
        let c = Command::single(Op::SetState {
            entity: EntityId::new("t", "k").unwrap(),
            state: vec![0; bytes],
        });
        (c, oneshot::channel().0)
    }

    /// Sizes of the proposals `commands` make, in order.
    fn proposals(commands: Vec<(Command, Reply)>) -> Vec<Vec<usize>> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        for c in commands {
            tx.send(c).unwrap();
        }
        let mut out = Vec::new();
        let mut carried = None;
        while let Some(first) = carried.take().or_else(|| rx.try_recv().ok()) {
            let (batch, rest) = next_batch(first, &mut rx);
            out.push(batch.iter().map(|(c, _)| c.payload_bytes()).collect());
            carried = rest;
        }
        out
    }

    #[test]
    fn proposals_split_by_bytes_and_by_count_and_lose_nothing() {
        const MIB: usize = 1 << 20;
        // 20 MiB commands: two would pass the 32 MiB cap, so each goes alone
        let sizes = proposals((0..3).map(|_| command(20 * MIB)).collect());
        assert_eq!(
            sizes.len(),
            3,
            "{:?}",
            sizes.iter().map(Vec::len).collect::<Vec<_>>()
        );
        // 10 MiB commands: three to a proposal (30 MiB), the fourth carried over
        let sizes = proposals((0..7).map(|_| command(10 * MIB)).collect());
        let counts: Vec<usize> = sizes.iter().map(Vec::len).collect();
        assert_eq!(counts, [3, 3, 1]);
        for s in &sizes {
            assert!(s.iter().sum::<usize>() <= MAX_PROPOSAL_BYTES, "{s:?}");
        }
        // a command over the proposal cap (but under the command cap) still goes, alone
        let sizes = proposals(vec![command(MIB), command(40 * MIB), command(MIB)]);
        let counts: Vec<usize> = sizes.iter().map(Vec::len).collect();
        assert_eq!(counts, [1, 1, 1]);
        // small ones: at most MAX_COMMANDS to a proposal, none lost
        let sizes = proposals((0..MAX_COMMANDS + 5).map(|_| command(8)).collect());
        let counts: Vec<usize> = sizes.iter().map(Vec::len).collect();
        assert_eq!(counts, [MAX_COMMANDS, 5]);
    }
}
