//! Raft over the node-to-node transport: the RPCs of every partition share one connection per
//! peer, each request naming its partition.

use crate::transport::{Handler, Peers, RemoteError, RemoteErrorCode, TransportError};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, SnapshotMismatch, Unreachable,
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
use std::sync::{Arc, OnceLock};

/// Transport request kind: a Raft RPC.
pub const KIND_RAFT: u16 = 1;

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
            .call(self.target, KIND_RAFT, &rpc, Some(option.hard_ttl()))
            .await
            .map_err(to_rpc_error)
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
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

/// Serves peers' Raft RPCs by handing them to this node's groups (set once they exist).
#[derive(Clone, Default)]
pub struct RaftService {
    rafts: Arc<OnceLock<Vec<Raft<TypeConfig>>>>,
}

impl std::fmt::Debug for RaftService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftService")
            .field("groups", &self.rafts.get().map(Vec::len))
            .finish()
    }
}

impl RaftService {
    /// Makes the groups reachable; RPCs before this answer `Failed`.
    pub fn set(&self, rafts: Vec<Raft<TypeConfig>>) {
        let _ = self.rafts.set(rafts);
    }

    fn raft(&self, p: PartitionId) -> Result<Raft<TypeConfig>, String> {
        self.rafts
            .get()
            .ok_or_else(|| "this node's partitions are still starting".to_string())?
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

/// Dispatches transport requests by kind: Raft RPCs here, other kinds to handlers registered
/// later (forwarded client requests, cluster information).
#[derive(Clone, Default)]
pub struct Dispatcher {
    /// The Raft service.
    pub raft: RaftService,
    /// This node's outgoing connections, told when a peer connects in (set once).
    pub peers: Arc<OnceLock<Peers>>,
    others: Arc<std::sync::RwLock<std::collections::HashMap<u16, Arc<dyn Handler>>>>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kinds: Vec<u16> = self
            .others
            .read()
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default();
        f.debug_struct("Dispatcher")
            .field("raft", &self.raft)
            .field("kinds", &kinds)
            .finish()
    }
}

impl Dispatcher {
    /// Serves requests of `kind` with `handler`.
    pub fn register(&self, kind: u16, handler: Arc<dyn Handler>) {
        self.others
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(kind, handler);
    }

    /// Stops serving `kind` (a handler holding what holds this dispatcher must be removed, or the
    /// two keep each other alive).
    pub fn unregister(&self, kind: u16) {
        self.others
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&kind);
    }
}

impl Handler for Dispatcher {
    fn peer_connected(&self, from: NodeId) {
        if let Some(peers) = self.peers.get() {
            peers.retry_now(from);
        }
    }

    fn handle(
        &self,
        from: NodeId,
        kind: u16,
        body: Vec<u8>,
    ) -> futures::future::BoxFuture<'static, Result<Vec<u8>, RemoteError>> {
        if kind == KIND_RAFT {
            let raft = self.raft.clone();
            return Box::pin(async move {
                let rpc: RaftRpc =
                    perdure_types::codec::decode(&body).map_err(|e| RemoteError {
                        code: RemoteErrorCode::Handler,
                        message: format!("undecodable raft rpc: {e}"),
                    })?;
                let resp = raft.handle(rpc).await;
                perdure_types::codec::encode(&resp).map_err(|e| RemoteError {
                    code: RemoteErrorCode::Handler,
                    message: e.to_string(),
                })
            });
        }
        let h = self
            .others
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&kind)
            .cloned();
        match h {
            Some(h) => h.handle(from, kind, body),
            None => Box::pin(async move {
                Err(RemoteError {
                    code: RemoteErrorCode::NotFound,
                    message: format!("no service of kind {kind} on this node"),
                })
            }),
        }
    }
}
