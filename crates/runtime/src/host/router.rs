//! Routing to a partition's leader: the local leadership, or the leader on another node over
//! the transport. A node only ever runs a forwarded request locally (it never forwards again),
//! so a request cannot loop; if leadership moved meanwhile, the caller gets `Unavailable` and
//! retries.

use super::leader::Leader;
use super::service::Workload;
use super::slot::Slot;
use crate::Error;
use perdure_cluster::transport::{service_fn, Kind, Rpc};
use perdure_cluster::Partitions;
use perdure_types::command::{Command, Op, OpResult};
use perdure_types::{Failure, NodeId, PartitionId, Target};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a request waits for its partition to have a leader (known here, or this node's
/// workloads started) before it fails with [`Error::NoLeader`].
pub const LEADER_WAIT: Duration = Duration::from_millis(1500);

/// Where a partition's requests go now.
#[derive(Debug, Clone)]
pub enum Route {
    /// This node leads the partition and its workloads run.
    Local(Arc<Leader>),
    /// The leader is this other node.
    Remote(NodeId),
}

/// Routes requests to partition leaders and proposes commands wherever the leader is.
pub struct Router {
    partitions: Arc<Partitions>,
    slots: Arc<Vec<Slot>>,
    workloads: Arc<[Arc<dyn Workload>]>,
    /// Requests this node forwarded to another node's leader.
    forwarded: AtomicU64,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").finish_non_exhaustive()
    }
}

/// A proposal forwarded to the partition's leader.
#[derive(Debug, Serialize, Deserialize)]
struct ProposeRequest {
    partition: PartitionId,
    command: Command,
}

impl Rpc for ProposeRequest {
    const KIND: Kind = Kind::Propose;
    type Reply = Result<Vec<OpResult>, Failure>;
}

impl Router {
    pub(crate) fn new(
        partitions: Arc<Partitions>,
        slots: Arc<Vec<Slot>>,
        workloads: Arc<[Arc<dyn Workload>]>,
    ) -> Self {
        Self {
            partitions,
            slots,
            workloads,
            forwarded: AtomicU64::new(0),
        }
    }

    /// The partitions underneath.
    pub fn partitions(&self) -> &Arc<Partitions> {
        &self.partitions
    }

    pub(crate) fn slot(&self, p: PartitionId) -> Option<&Slot> {
        self.slots.get(p as usize)
    }

    /// The running leadership of `p` on this node, if any.
    pub fn local(&self, p: PartitionId) -> Option<Arc<Leader>> {
        self.slot(p).and_then(Slot::leader)
    }

    /// Requests this node forwarded to other nodes' leaders.
    pub fn forwarded(&self) -> u64 {
        self.forwarded.load(Ordering::Relaxed)
    }

    /// Where partition `p`'s requests go. While the partition has no leader known here, or this
    /// node won leadership and its workloads are starting, waits (up to [`LEADER_WAIT`])
    /// instead of failing at once: a leader change usually completes within that.
    pub async fn route(&self, p: PartitionId) -> Result<Route, Error> {
        self.wait(p, true).await
    }

    /// The running leadership of `p` here, for a request that must run on this node (one
    /// forwarded by a peer): waits while this node leads `p` and its workloads are starting.
    pub async fn local_leader(&self, p: PartitionId) -> Result<Arc<Leader>, Error> {
        match self.wait(p, false).await? {
            Route::Local(l) => Ok(l),
            Route::Remote(_) => unreachable!("wait(remote_ok = false) answers only Local"),
        }
    }

    /// Waits (up to [`LEADER_WAIT`]) until `p`'s leadership runs here or, when `remote_ok`, its
    /// leader is known to be another node; a leadership here that is starting is waited for.
    async fn wait(&self, p: PartitionId, remote_ok: bool) -> Result<Route, Error> {
        let since = Instant::now();
        loop {
            if let Some(l) = self.local(p) {
                return Ok(Route::Local(l));
            }
            let leader = self.partitions.leader(p);
            let elsewhere = leader.filter(|&l| l != self.partitions.node_id());
            if let (true, Some(l)) = (remote_ok, elsewhere) {
                return Ok(Route::Remote(l));
            }
            // a local request gives up at once unless this node leads (its workloads starting)
            let hopeless = !remote_ok && !self.partitions.is_leader(p);
            if hopeless || since.elapsed() >= LEADER_WAIT {
                return Err(Error::NoLeader {
                    partition: p,
                    leader,
                });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Sends `req` to `leader` and returns its answer, waiting at most `timeout` (`None`: the
    /// transport's `cluster.rpc_timeout_ms`); a failure there comes back as [`Error::Remote`]
    /// with its kind, code and message intact.
    pub async fn forward<R, Ok_>(
        &self,
        leader: NodeId,
        req: &R,
        timeout: Option<Duration>,
    ) -> Result<Ok_, Error>
    where
        R: Rpc<Reply = Result<Ok_, Failure>>,
    {
        self.forwarded.fetch_add(1, Ordering::Relaxed);
        let reply = self
            .partitions
            .peers()
            .rpc(leader, req, timeout)
            .await
            .map_err(|e| Error::Unavailable(format!("forwarding to node {leader}: {e}")))?;
        reply.map_err(Error::Remote)
    }

    /// Proposes `command` to partition `p` wherever its leader is: here, or forwarded to the
    /// leader, which wakes the receiving targets itself.
    pub async fn propose_at(
        &self,
        p: PartitionId,
        command: Command,
    ) -> Result<Vec<OpResult>, Error> {
        match self.route(p).await? {
            Route::Local(leader) => self.propose_here(&leader, command).await,
            Route::Remote(node) => {
                let req = ProposeRequest {
                    partition: p,
                    command,
                };
                self.forward(node, &req, None).await
            }
        }
    }

    /// Proposes `command` under `leader`, then wakes the targets it delivered inbox messages to.
    async fn propose_here(
        &self,
        leader: &Leader,
        command: Command,
    ) -> Result<Vec<OpResult>, Error> {
        let targets: Vec<Target> = command
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::Receive { target, .. } => Some(target.clone()),
                _ => None,
            })
            .collect();
        let results = leader.propose_command(command).await?;
        if !targets.is_empty() {
            for w in self.workloads.iter() {
                w.wake(leader.partition(), &targets);
            }
        }
        Ok(results)
    }
}

/// Serves proposals forwarded from peers (added before the node serves its peers).
pub(crate) fn register(router: &Arc<Router>) -> Result<(), Error> {
    serve_weak(
        &router.partitions,
        router,
        |r, req: ProposeRequest| async move {
            let leader = r.local_leader(req.partition).await?;
            r.propose_here(&leader, req.command).await
        },
    )
}

/// Serves requests `R` from peers with `f` over `this`, held weakly: the partitions hold the
/// table of services, so a service holding what holds them strongly would keep both alive.
/// Failures cross the wire as [`Failure`]s (kind, code and message intact).
pub fn serve_weak<T, R, Ok_, F, Fut>(
    partitions: &Partitions,
    this: &Arc<T>,
    f: F,
) -> Result<(), Error>
where
    T: Send + Sync + 'static,
    R: Rpc<Reply = Result<Ok_, Failure>>,
    Ok_: Serialize + DeserializeOwned + Send + 'static,
    F: Fn(Arc<T>, R) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Ok_, Error>> + Send + 'static,
{
    let weak = Arc::downgrade(this);
    let f = Arc::new(f);
    partitions.add_service(service_fn(move |_from, req: R| {
        let this = weak.upgrade();
        let f = f.clone();
        async move {
            Ok(match this {
                Some(this) => f(this, req).await.map_err(|e| e.to_failure()),
                None => {
                    Err(Error::Unavailable("this node's runtime has stopped".into()).to_failure())
                }
            })
        }
    }))?;
    Ok(())
}
