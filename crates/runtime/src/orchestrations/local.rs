//! Orchestration requests as they run on the node leading the instance's partition, whether
//! they started here or were forwarded by a peer (`forward.rs`): one `serve` for both.

use super::api::{InstanceFilter, InstanceStatus, Started};
use super::instance::{InstanceMsg, StartMsg};
use super::workload::{OrchestrationWorkload, PartitionRt};
use crate::host::Router;
use crate::remote::session::Queues;
use crate::remote::{Dispatched, Outcome, SessionKey, WorkFilter};
use crate::Error;
use futures::future::BoxFuture;
use perdure_cluster::transport::{Kind, Rpc};
use perdure_types::command::{Op, OpResult};
use perdure_types::message::Message;
use perdure_types::orchestration::{
    EventKind, HistoryEvent, InstanceRecord, ReusePolicy, RuntimeStatus,
};
use perdure_types::NodeId;
use perdure_types::{Failure, InstanceId, PartitionId, Target};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// An orchestration request for a partition's leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum OrchRequest {
    Start {
        record: Box<InstanceRecord>,
        started: Box<HistoryEvent>,
        policy: ReusePolicy,
    },
    /// An event for a running instance (raise, terminate, suspend, resume).
    Event {
        instance: InstanceId,
        event: HistoryEvent,
    },
    Status {
        instance: InstanceId,
        history: bool,
    },
    Wait {
        instance: InstanceId,
        history: bool,
        timeout_ms: u64,
    },
    List {
        partition: PartitionId,
        after: Option<InstanceId>,
        limit: u32,
        filter: InstanceFilter,
    },
    Purge {
        instance: InstanceId,
    },
    PurgeWhere {
        partition: PartitionId,
        filter: InstanceFilter,
    },
    Rewind {
        instance: InstanceId,
        reason: Option<String>,
    },
    /// Remote work from this node's queue for a worker's session on another node.
    Fetch {
        session: SessionKey,
        max_orchestrators: u32,
        max_activities: u32,
        filter: Option<WorkFilter>,
        wait_ms: u64,
    },
    /// A worker's answer to work this node issued.
    Complete {
        token: String,
        outcome: Outcome,
    },
    /// A worker gives back work this node issued.
    Abandon {
        token: String,
    },
    /// A worker's session ended: what this node leased to it is queued again.
    EndSession {
        session: SessionKey,
    },
}

impl Rpc for OrchRequest {
    const KIND: Kind = Kind::Orchestration;
    type Reply = Result<OrchReply, Failure>;
}

/// Its answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum OrchReply {
    Started(Started),
    Done,
    Status(Option<Box<InstanceStatus>>),
    List(Vec<InstanceRecord>, Option<InstanceId>),
    Purged(u64),
    Work(Vec<Dispatched>),
}

/// Most records a listing request examines.
const LIST_SCAN: usize = 2_000;
/// Most instances one purge command removes.
const PURGE_BATCH: usize = 100;
/// Largest history a rewind rewrites (in one command, under the proposal's 32 MiB).
const MAX_REWIND_BYTES: u64 = 16 << 20;

/// Runs requests on this node's leaderships.
pub(crate) struct Local {
    pub router: Arc<Router>,
    pub workload: Arc<OrchestrationWorkload>,
}

impl Local {
    /// Partition `p`'s runtime here (waiting while its leadership is starting).
    async fn part(&self, p: PartitionId) -> Result<Arc<PartitionRt>, Error> {
        self.router.local_leader(p).await?;
        self.workload.part(p).ok_or_else(|| {
            Error::Unavailable(format!("partition {p} is changing leadership; retry"))
        })
    }

    fn partition_of(&self, id: &InstanceId) -> PartitionId {
        Target::Instance(id.clone()).partition(self.router.partitions().count())
    }

    /// Runs `req` here.
    pub async fn serve(&self, req: OrchRequest) -> Result<OrchReply, Error> {
        match req {
            OrchRequest::Fetch {
                session,
                max_orchestrators,
                max_activities,
                filter,
                wait_ms,
            } => {
                let remote = &self.workload.shared.remote;
                let wait = Duration::from_millis(wait_ms.min(30_000));
                let work = remote
                    .fetch(
                        session,
                        max_orchestrators,
                        max_activities,
                        filter.as_ref(),
                        wait,
                    )
                    .await;
                Ok(OrchReply::Work(work))
            }
            OrchRequest::Complete { token, outcome } => {
                self.workload.shared.remote.complete(&token, outcome)?;
                Ok(OrchReply::Done)
            }
            OrchRequest::Abandon { token } => {
                self.workload.shared.remote.abandon(&token)?;
                Ok(OrchReply::Done)
            }
            OrchRequest::EndSession { session } => {
                self.workload.shared.remote.end_session(session);
                Ok(OrchReply::Done)
            }
            OrchRequest::Start {
                record,
                started,
                policy,
            } => self.start(record, started, policy).await,
            OrchRequest::Event { instance, event } => self.event(instance, event).await,
            OrchRequest::Status { instance, history } => {
                let rt = self.part(self.partition_of(&instance)).await?;
                rt.leader.confirm().await?;
                Ok(OrchReply::Status(
                    read_status(&rt, instance, history).await?.map(Box::new),
                ))
            }
            OrchRequest::Wait {
                instance,
                history,
                timeout_ms,
            } => self.wait(instance, history, timeout_ms).await,
            OrchRequest::List {
                partition,
                after,
                limit,
                filter,
            } => {
                let rt = self.part(partition).await?;
                rt.leader.confirm().await?;
                let limit = limit.max(1) as usize;
                let (mut records, mut next) = rt
                    .leader
                    .read(move |s| {
                        s.instances()
                            .list(after.as_ref(), LIST_SCAN.max(limit), |r| filter.matches(r))
                    })
                    .await?;
                if records.len() > limit {
                    records.truncate(limit);
                    next = records.last().map(|r| r.instance_id.clone());
                }
                Ok(OrchReply::List(records, next))
            }
            OrchRequest::Purge { instance } => {
                let rt = self.part(self.partition_of(&instance)).await?;
                let r = rt
                    .leader
                    .propose(vec![Op::PurgeInstance {
                        instance: instance.clone(),
                    }])
                    .await?;
                match r.first() {
                    Some(OpResult::Done) => {
                        OrchMetricsPurged::add(&rt, 1);
                        Ok(OrchReply::Purged(1))
                    }
                    Some(OpResult::NotFound) => Err(Error::InstanceNotFound(instance)),
                    Some(OpResult::Refused(status)) => Err(Error::InstanceState {
                        instance,
                        status: *status,
                        why: "only a completed, failed or terminated instance is purged; terminate it first".into(),
                    }),
                    other => Err(Error::Unavailable(format!("purge did not apply: {other:?}"))),
                }
            }
            OrchRequest::PurgeWhere { partition, filter } => {
                self.purge_where(partition, filter).await
            }
            OrchRequest::Rewind { instance, reason } => self.rewind(instance, reason).await,
        }
    }

    async fn start(
        &self,
        record: Box<InstanceRecord>,
        started: Box<HistoryEvent>,
        policy: ReusePolicy,
    ) -> Result<OrchReply, Error> {
        let id = record.instance_id.clone();
        let execution_id = record.execution_id.clone();
        let rt = self.part(self.partition_of(&id)).await?;
        // the instance's task runs it: with its first turn in the same command when it can
        let (reply, answer) = tokio::sync::oneshot::channel();
        rt.deliver(
            &id,
            InstanceMsg::Start(Box::new(StartMsg {
                record: *record,
                started: *started,
                policy,
                reply,
            })),
        );
        let r = answer.await.map_err(|_| {
            Error::Unavailable(format!(
                "partition {} is changing leadership; retry",
                self.partition_of(&id)
            ))
        })??;
        match Some(&r) {
            Some(OpResult::Done) => {
                super::metrics::OrchestrationMetrics::inc(&rt.shared.metrics.started);
                Ok(OrchReply::Started(Started {
                    instance_id: id,
                    execution_id,
                    created: true,
                }))
            }
            Some(OpResult::Duplicate) => {
                let current = read_status(&rt, id.clone(), false)
                    .await?
                    .map(|s| s.record.execution_id)
                    .unwrap_or_default();
                Ok(OrchReply::Started(Started {
                    instance_id: id,
                    execution_id: current,
                    created: false,
                }))
            }
            Some(OpResult::Refused(status)) => Err(Error::InstanceExists {
                instance: id,
                status: *status,
            }),
            other => Err(Error::Unavailable(format!(
                "start did not apply: {other:?}"
            ))),
        }
    }

    /// Puts an event in a running instance's inbox (raise, terminate, suspend, resume).
    async fn event(&self, instance: InstanceId, event: HistoryEvent) -> Result<OrchReply, Error> {
        let rt = self.part(self.partition_of(&instance)).await?;
        let record = read_status(&rt, instance.clone(), false)
            .await?
            .ok_or_else(|| Error::InstanceNotFound(instance.clone()))?
            .record;
        let what = match &event.kind {
            EventKind::EventRaised { .. } => "events",
            EventKind::ExecutionTerminated { .. } => "a terminate",
            EventKind::ExecutionSuspended { .. } => "a suspend",
            EventKind::ExecutionResumed { .. } => "a resume",
            _ => "this event",
        };
        if record.status.is_terminal() {
            return Err(Error::InstanceFinished {
                instance,
                status: record.status,
                what,
            });
        }
        let message = Message::InstanceEvent {
            execution_id: None,
            event,
        };
        let terminate = matches!(
            message_kind(&message),
            Some(EventKind::ExecutionTerminated { .. })
        );
        rt.leader
            .propose(vec![Op::Enqueue {
                target: Target::Instance(instance.clone()),
                message: message.encode(),
            }])
            .await?;
        if terminate {
            // a turn waiting for a remote worker would hold the terminate back
            rt.shared.remote.withdraw(&instance);
        }
        rt.wake(&instance);
        Ok(OrchReply::Done)
    }

    async fn wait(
        &self,
        instance: InstanceId,
        history: bool,
        timeout_ms: u64,
    ) -> Result<OrchReply, Error> {
        let rt = self.part(self.partition_of(&instance)).await?;
        let until = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
        loop {
            // registered before reading, so a finish between the read and the wait is seen
            let finished = rt.shared.waiters.register(&instance);
            let status = read_status(&rt, instance.clone(), history).await?;
            let done = status
                .as_ref()
                .is_none_or(|s| s.record.status.is_terminal());
            if done || tokio::time::Instant::now() >= until {
                return Ok(OrchReply::Status(status.map(Box::new)));
            }
            // a dropped waiter (leadership moved) answers what is known now; the caller asks
            // the new leader
            match tokio::time::timeout_at(until, finished).await {
                // the record the finishing turn committed: no read needed
                Ok(Ok(record)) if !history => {
                    return Ok(OrchReply::Status(Some(Box::new(InstanceStatus {
                        record,
                        history: None,
                    }))))
                }
                Ok(Ok(_)) | Err(_) => continue,
                Ok(Err(_)) => {
                    return Ok(OrchReply::Status(
                        read_status(&rt, instance.clone(), history)
                            .await?
                            .map(Box::new),
                    ))
                }
            }
        }
    }

    /// Rewinds a failed instance: the failures it did not handle (no decision after them) are
    /// taken out of its history, their activities run again, their sub-orchestrations start
    /// again, and the execution goes on from there (one fenced command).
    async fn rewind(
        &self,
        instance: InstanceId,
        reason: Option<String>,
    ) -> Result<OrchReply, Error> {
        let rt = self.part(self.partition_of(&instance)).await?;
        let status = read_status(&rt, instance.clone(), true)
            .await?
            .ok_or_else(|| Error::InstanceNotFound(instance.clone()))?;
        let record = status.record;
        if record.status != RuntimeStatus::Failed {
            return Err(Error::InstanceState {
                instance,
                status: record.status,
                why: "only a failed instance is rewound".into(),
            });
        }
        if record.history_bytes > MAX_REWIND_BYTES {
            return Err(Error::InstanceState {
                instance,
                status: record.status,
                why: format!(
                    "its history holds {} bytes; rewinding rewrites it whole, which is done up to {MAX_REWIND_BYTES} bytes: restart it instead",
                    record.history_bytes
                ),
            });
        }
        let now = crate::host::now_ms();
        let plan = super::rewind::plan(&record, status.history.unwrap_or_default(), reason, now);
        let target = Target::Instance(instance.clone());
        let mut ops = vec![
            Op::RewindInstance(Box::new(plan.rewind)),
            Op::Enqueue {
                target,
                message: plan.wake.encode(),
            },
        ];
        let n = self.router.partitions().count();
        for (child, message) in plan.restarts {
            let t = Target::Instance(child);
            ops.push(Op::Send {
                dest: t.partition(n),
                target: t,
                message: message.encode(),
            });
        }
        let r = rt.leader.propose(ops).await?;
        if r.first() != Some(&OpResult::Done) {
            return Err(Error::Unavailable(format!(
                "{instance}: changed while it was being rewound; retry"
            )));
        }
        rt.leader.outbox_changed();
        rt.wake(&instance);
        Ok(OrchReply::Done)
    }

    async fn purge_where(
        &self,
        partition: PartitionId,
        filter: InstanceFilter,
    ) -> Result<OrchReply, Error> {
        let rt = self.part(partition).await?;
        let mut after: Option<InstanceId> = None;
        let mut purged = 0u64;
        loop {
            let f = filter.clone();
            let from = after.clone();
            let (records, next) = rt
                .leader
                .read(move |s| {
                    s.instances().list(from.as_ref(), LIST_SCAN, |r| {
                        r.status.is_terminal() && f.matches(r)
                    })
                })
                .await?;
            for chunk in records.chunks(PURGE_BATCH) {
                let ops = chunk
                    .iter()
                    .map(|r| Op::PurgeInstance {
                        instance: r.instance_id.clone(),
                    })
                    .collect();
                let results = rt.leader.propose(ops).await?;
                let n = results.iter().filter(|r| **r == OpResult::Done).count() as u64;
                OrchMetricsPurged::add(&rt, n);
                purged += n;
            }
            match next {
                Some(n) => after = Some(n),
                None => return Ok(OrchReply::Purged(purged)),
            }
        }
    }
}

struct OrchMetricsPurged;

impl OrchMetricsPurged {
    fn add(rt: &PartitionRt, n: u64) {
        rt.shared
            .metrics
            .purged
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The instance's record (and history), as applied on this leader.
async fn read_status(
    rt: &PartitionRt,
    instance: InstanceId,
    history: bool,
) -> Result<Option<InstanceStatus>, Error> {
    rt.leader
        .read(move |s| {
            let t = s.instances();
            let Some(record) = t.get(&instance)? else {
                return Ok(None);
            };
            let history = if history {
                Some(t.history(&instance, 0, usize::MAX)?)
            } else {
                None
            };
            Ok(Some(InstanceStatus { record, history }))
        })
        .await
}

/// Serves forwarded orchestration requests from peers (added before the node serves peers).
/// The queues of the cluster's nodes as a worker's session on this node reaches them: this
/// node's directly, the others' through forwarded requests.
pub(crate) struct ClusterQueues(pub Arc<Local>);

impl ClusterQueues {
    async fn at(&self, node: NodeId, req: OrchRequest, wait: Duration) -> Result<OrchReply, Error> {
        if node == self.0.router.partitions().node_id() {
            self.0.serve(req).await
        } else {
            let t = wait + Duration::from_secs(5);
            self.0.router.forward(node, &req, Some(t)).await
        }
    }
}

impl Queues for ClusterQueues {
    fn nodes(&self) -> Vec<NodeId> {
        let mut nodes: Vec<NodeId> = self
            .0
            .router
            .partitions()
            .members()
            .iter()
            .map(|m| m.node_id)
            .collect();
        let me = self.0.router.partitions().node_id();
        if !nodes.contains(&me) {
            nodes.push(me);
        }
        nodes
    }

    fn fetch(
        &self,
        node: NodeId,
        session: SessionKey,
        max_orchestrators: u32,
        max_activities: u32,
        filter: Option<WorkFilter>,
        wait: Duration,
    ) -> BoxFuture<'static, Result<Vec<Dispatched>, Error>> {
        let this = ClusterQueues(self.0.clone());
        Box::pin(async move {
            let req = OrchRequest::Fetch {
                session,
                max_orchestrators,
                max_activities,
                filter,
                wait_ms: wait.as_millis() as u64,
            };
            match this.at(node, req, wait).await? {
                OrchReply::Work(w) => Ok(w),
                _ => Err(Error::Unavailable("a fetch answered something else".into())),
            }
        })
    }

    fn complete(
        &self,
        node: NodeId,
        token: String,
        outcome: Outcome,
    ) -> BoxFuture<'static, Result<(), Error>> {
        let this = ClusterQueues(self.0.clone());
        Box::pin(async move {
            this.at(
                node,
                OrchRequest::Complete { token, outcome },
                Duration::ZERO,
            )
            .await
            .map(|_| ())
        })
    }

    fn end_session(
        &self,
        node: NodeId,
        session: SessionKey,
    ) -> BoxFuture<'static, Result<(), Error>> {
        let this = ClusterQueues(self.0.clone());
        Box::pin(async move {
            this.at(node, OrchRequest::EndSession { session }, Duration::ZERO)
                .await
                .map(|_| ())
        })
    }

    fn abandon(&self, node: NodeId, token: String) -> BoxFuture<'static, Result<(), Error>> {
        let this = ClusterQueues(self.0.clone());
        Box::pin(async move {
            this.at(node, OrchRequest::Abandon { token }, Duration::ZERO)
                .await
                .map(|_| ())
        })
    }
}

fn message_kind(m: &Message) -> Option<&EventKind> {
    match m {
        Message::InstanceEvent { event, .. } => Some(&event.kind),
        _ => None,
    }
}

pub(crate) fn register(local: &Arc<Local>) -> Result<(), Error> {
    let partitions = local.router.partitions().clone();
    crate::host::serve_weak(&partitions, local, |l, req: OrchRequest| async move {
        l.serve(req).await
    })
}
