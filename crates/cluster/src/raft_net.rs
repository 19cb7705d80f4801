//! Raft over the node-to-node transport: the RPCs of every partition share one connection per
//! peer, each request naming its partition.

use crate::transport::{Kind, Peers, RemoteError, Rpc, Service, TransportError};
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, SnapshotMismatch,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft};
use perdure_storage::TypeConfig;
use perdure_types::{NodeId, PartitionId};
use serde::{Deserialize, Serialize};

/// A Raft RPC for one partition.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftRpc {
    /// Log replication and heartbeats.
    AppendEntries(PartitionId, AppendEntriesRequest<TypeConfig>),
    /// Elections.
    Vote(PartitionId, VoteRequest<u64>),
    /// A snapshot chunk.
    InstallSnapshot(PartitionId, InstallSnapshotRequest<TypeConfig>),
}

impl Rpc for RaftRpc {
    const KIND: Kind = Kind::Raft;
    type Reply = RaftRpcResponse;
}

/// The answer to a [`RaftRpc`]. Errors travel as text except the one the sender acts on: a
/// snapshot chunk that does not continue the transfer the receiver expects.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftRpcResponse {
    /// To `AppendEntries`.
    AppendEntries(AppendEntriesResponse<u64>),
    /// To `Vote`.
    Vote(VoteResponse<u64>),
    /// To `InstallSnapshot`.
    InstallSnapshot(InstallSnapshotResponse<u64>),
    /// The receiver expects another snapshot segment: `(expected id, offset, got id, offset)`.
    SnapshotMismatch(String, u64, String, u64),
    /// The receiver's group failed or is stopping.
    Failed(String),
}

/// openraft's network factory for one partition over the shared [`Peers`].
#[derive(Clone)]
pub struct TransportNetwork {
    peers: Peers,
    partition: PartitionId,
}

impl std::fmt::Debug for TransportNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportNetwork")
            .field("partition", &self.partition)
            .finish()
    }
}

impl TransportNetwork {
    /// The network of `partition`.
    pub fn new(peers: Peers, partition: PartitionId) -> Self {
        Self { peers, partition }
    }
}

/// One peer of one partition.
#[derive(Debug)]
pub struct PeerConnection {
    peers: Peers,
    partition: PartitionId,
    target: NodeId,
}

impl RaftNetworkFactory<TypeConfig> for TransportNetwork {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        self.peers.set_address(target, node.addr.clone());
        PeerConnection {
            peers: self.peers.clone(),
            partition: self.partition,
            target,
        }
    }
}

fn to_rpc_error<E: std::error::Error>(e: TransportError) -> RPCError<u64, BasicNode, E> {
    match e {
        TransportError::Unreachable { .. } | TransportError::Refused { .. } => {
            RPCError::Unreachable(Unreachable::new(&e))
        }
        other => RPCError::Network(NetworkError::new(&other)),
    }
}

fn unexpected<E: std::error::Error>(what: &str) -> RPCError<u64, BasicNode, E> {
    RPCError::Network(NetworkError::new(&std::io::Error::other(format!(
        "unexpected answer to {what}"
    ))))
}

impl PeerConnection {
    async fn send<E: std::error::Error>(
        &self,
        rpc: RaftRpc,
        option: &RPCOption,
    ) -> Result<RaftRpcResponse, RPCError<u64, BasicNode, E>> {
        self.peers
            .rpc(self.target, &rpc, Some(option.hard_ttl()))
            .await
            .map_err(to_rpc_error)
    }
}

/// The most an append-entries request carries, in entry weight
/// ([`perdure_storage::log_memory::weigh`]): openraft sends up to `max_payload_entries` (300)
/// entries at once, which with large entries (a proposal may weigh up to 32 MiB) passes the
/// transport's frame limit, and a request that can never be sent would leave a lagging follower
/// behind for good. An entry heavier than this goes alone.
const MAX_APPEND_BYTES: u64 = 32 << 20;

/// How many of `entries` (at least one) one request carries under [`MAX_APPEND_BYTES`].
fn entries_that_fit(entries: &[openraft::Entry<TypeConfig>]) -> usize {
    let mut bytes = 0;
    let fit = entries
        .iter()
        .take_while(|e| {
            bytes += perdure_storage::log_memory::weigh(e);
            bytes <= MAX_APPEND_BYTES
        })
        .count();
    fit.max(1)
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let fit = entries_that_fit(&rpc.entries);
        if fit < rpc.entries.len() {
            // openraft retries at once with at most `fit` entries (for the next few requests)
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(fit as u64),
            ));
        }
        match self
            .send(RaftRpc::AppendEntries(self.partition, rpc), &option)
            .await?
        {
            RaftRpcResponse::AppendEntries(r) => Ok(r),
            RaftRpcResponse::Failed(m) => Err(RPCError::Network(NetworkError::new(
                &std::io::Error::other(m),
            ))),
            _ => Err(unexpected("append_entries")),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        match self
            .send(RaftRpc::InstallSnapshot(self.partition, rpc), &option)
            .await?
        {
            RaftRpcResponse::InstallSnapshot(r) => Ok(r),
            RaftRpcResponse::SnapshotMismatch(eid, eoff, gid, goff) => {
                let err = SnapshotMismatch {
                    expect: openraft::SnapshotSegmentId {
                        id: eid,
                        offset: eoff,
                    },
                    got: openraft::SnapshotSegmentId {
                        id: gid,
                        offset: goff,
                    },
                };
                Err(RPCError::RemoteError(openraft::error::RemoteError::new(
                    self.target,
                    RaftError::APIError(InstallSnapshotError::SnapshotMismatch(err)),
                )))
            }
            RaftRpcResponse::Failed(m) => Err(RPCError::Network(NetworkError::new(
                &std::io::Error::other(m),
            ))),
            _ => Err(unexpected("install_snapshot")),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        match self
            .send(RaftRpc::Vote(self.partition, rpc), &option)
            .await?
        {
            RaftRpcResponse::Vote(r) => Ok(r),
            RaftRpcResponse::Failed(m) => Err(RPCError::Network(NetworkError::new(
                &std::io::Error::other(m),
            ))),
            _ => Err(unexpected("vote")),
        }
    }
}

/// Serves peers' Raft RPCs by handing them to this node's groups.
#[derive(Clone)]
pub struct RaftService {
    rafts: Vec<Raft<TypeConfig>>,
}

impl std::fmt::Debug for RaftService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftService")
            .field("groups", &self.rafts.len())
            .finish()
    }
}

impl RaftService {
    /// Serves the groups `rafts` (indexed by group id).
    pub fn new(rafts: Vec<Raft<TypeConfig>>) -> Self {
        Self { rafts }
    }

    fn raft(&self, p: PartitionId) -> Result<Raft<TypeConfig>, String> {
        self.rafts
            .get(p as usize)
            .cloned()
            .ok_or_else(|| format!("no partition {p}"))
    }

    /// Handles one RPC.
    pub async fn handle(&self, rpc: RaftRpc) -> RaftRpcResponse {
        let fail = |e: &dyn std::fmt::Display| RaftRpcResponse::Failed(e.to_string());
        match rpc {
            RaftRpc::AppendEntries(p, req) => match self.raft(p) {
                Ok(r) => r
                    .append_entries(req)
                    .await
                    .map_or_else(|e| fail(&e), RaftRpcResponse::AppendEntries),
                Err(e) => fail(&e),
            },
            RaftRpc::Vote(p, req) => match self.raft(p) {
                Ok(r) => r
                    .vote(req)
                    .await
                    .map_or_else(|e| fail(&e), RaftRpcResponse::Vote),
                Err(e) => fail(&e),
            },
            RaftRpc::InstallSnapshot(p, req) => match self.raft(p) {
                Ok(r) => match r.install_snapshot(req).await {
                    Ok(resp) => RaftRpcResponse::InstallSnapshot(resp),
                    Err(RaftError::APIError(InstallSnapshotError::SnapshotMismatch(m))) => {
                        RaftRpcResponse::SnapshotMismatch(
                            m.expect.id,
                            m.expect.offset,
                            m.got.id,
                            m.got.offset,
                        )
                    }
                    Err(e) => fail(&e),
                },
                Err(e) => fail(&e),
            },
        }
    }
}

impl Service for RaftService {
    type Request = RaftRpc;

    async fn call(&self, _from: NodeId, rpc: RaftRpc) -> Result<RaftRpcResponse, RemoteError> {
        Ok(self.handle(rpc).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
    use perdure_types::command::{Command, Op, Proposal};
    use perdure_types::EntityId;

    fn entries(sizes: &[usize]) -> Vec<Entry<TypeConfig>> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| Entry {
                log_id: LogId::new(CommittedLeaderId::new(1, 1), i as u64 + 1),
                payload: EntryPayload::Normal(Proposal::from(Command::single(Op::SetState {
                    entity: EntityId::new("register", "k").unwrap(),
                    state: vec![0; n],
                }))),
            })
            .collect()
    }

    #[test]
    fn an_append_carries_what_fits_under_the_byte_limit_and_at_least_one_entry() {
        const MIB: usize = 1 << 20;
        // 300 entries of 1 MiB (openraft's default batch) would be a 300 MiB frame
        assert_eq!(entries_that_fit(&entries(&[MIB; 300])), 31);
        assert_eq!(entries_that_fit(&entries(&[10 * MIB; 5])), 3);
        // an entry over the limit still goes, alone
        assert_eq!(entries_that_fit(&entries(&[40 * MIB, MIB])), 1);
        assert_eq!(entries_that_fit(&entries(&[100; 300])), 300);
        // heartbeats carry nothing
        assert_eq!(entries_that_fit(&[]), 1);
    }
}
