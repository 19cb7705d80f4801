//! What a node holds, as its peers ask it: whether its metadata group is initialized, the
//! membership as applied there, and each group it hosts as it sees it ([`ClusterInfo`]). Formation
//! asks before founding, status pages and leader tracking ask every member.

use crate::ctx::{Ctx, GroupView};
use crate::transport::{Kind, RemoteError, Rpc, Service};
use perdure_types::membership::Membership;
use perdure_types::{NodeId, PartitionId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::Duration;

/// "What do you hold?" ([`Kind::ClusterInfo`]); the answer is a [`ClusterInfo`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct InfoRequest;

impl Rpc for InfoRequest {
    const KIND: Kind = Kind::ClusterInfo;
    type Reply = ClusterInfo;
}

/// A node's answer to an [`InfoRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterInfo {
    /// The node.
    pub node_id: NodeId,
    /// Whether its copy of the metadata group is initialized.
    pub meta_initialized: bool,
    /// The membership as applied there (empty before it knows one).
    pub membership: Membership,
    /// Per group (the partitions, then the metadata group): the group as that node sees it,
    /// for those it hosts.
    pub views: Vec<Option<GroupView>>,
    /// Replica-set changes that node completed as a leader.
    pub moves: u64,
}

impl ClusterInfo {
    /// Group `g` as that node sees it, if it hosts it.
    pub fn view(&self, g: PartitionId) -> Option<&GroupView> {
        self.views.get(g as usize).and_then(Option::as_ref)
    }
}

/// The leader of group `g` that `infos` report at the highest term, other than `except`.
pub(crate) fn reported_leader(
    infos: &[ClusterInfo],
    g: PartitionId,
    except: NodeId,
) -> Option<(NodeId, u64)> {
    infos
        .iter()
        .filter_map(|i| i.view(g))
        .filter_map(|v| Some((v.leader.filter(|&l| l != except)?, v.term)))
        .max_by_key(|&(_, term)| term)
}

/// What this node holds, as it answers an [`InfoRequest`].
pub(crate) fn info(ctx: &Ctx) -> ClusterInfo {
    // initialized as openraft defines it (a log or a vote), read from metrics. The borrow ends
    // here: `view` below borrows the same watch again, and a second read borrow while openraft
    // waits to publish new metrics blocks behind that writer, which waits for the first: a
    // deadlock (it hung a node's GET /cluster and its metadata group in CI).
    let meta_initialized = {
        let m = ctx.meta().metrics();
        let m = m.borrow();
        m.last_log_index.is_some() || m.vote != openraft::Vote::default()
    };
    ClusterInfo {
        node_id: ctx.node_id,
        meta_initialized,
        membership: ctx.membership(),
        views: (0..=ctx.partitions()).map(|g| ctx.view(g)).collect(),
        moves: ctx.moves.load(std::sync::atomic::Ordering::Relaxed),
    }
}

/// Serves [`InfoRequest`]s from this node's [`Ctx`].
pub(crate) struct InfoService(pub Ctx);

impl Service for InfoService {
    type Request = InfoRequest;

    async fn call(&self, _from: NodeId, _: InfoRequest) -> Result<ClusterInfo, RemoteError> {
        Ok(info(&self.0))
    }
}

impl Ctx {
    /// Asks `nodes` (this node answers from here) what they hold, all at once; one answer each.
    pub async fn ask_infos(
        &self,
        nodes: impl IntoIterator<Item = NodeId>,
        timeout: Duration,
    ) -> Vec<(NodeId, Result<ClusterInfo, String>)> {
        let asks = nodes.into_iter().map(|n| async move {
            if n == self.node_id {
                return (n, Ok(info(self)));
            }
            let answer = self
                .peers
                .rpc(n, &InfoRequest, Some(timeout))
                .await
                .map_err(|e| e.to_string());
            (n, answer)
        });
        futures::future::join_all(asks).await
    }

    /// The answers of the other members (and, `with_seeds`, of the configured seeds) that
    /// answered.
    pub async fn others_infos(&self, timeout: Duration, with_seeds: bool) -> Vec<ClusterInfo> {
        let mut nodes: BTreeSet<NodeId> = self.member_ids().into_iter().collect();
        if with_seeds {
            nodes.extend(self.seeds.iter().map(|m| m.node_id));
        }
        nodes.remove(&self.node_id);
        self.ask_infos(nodes, timeout)
            .await
            .into_iter()
            .filter_map(|(_, a)| a.ok())
            .collect()
    }
}
