//! The orchestration workload: durable, replayed orchestrations on the partition host.
//!
//! [`Orchestrations`] is the facade HTTP, the CLI, the Rust client and (next) gRPC call: start,
//! status, wait, raise event, terminate, suspend, resume, purge, query, restart. An instance
//! lives on the partition of its instance id; its status record, its history (one event per key)
//! and its inbox are partition state (`storage/src/state/instances.rs`), and one turn of it is
//! ONE command, fenced by the record's execution id and turn count.
//!
//! Behind the facade, on each partition this node leads (`workload.rs`), a task per live
//! instance (`instance.rs`) runs its turns one at a time: it feeds new events to the live
//! orchestrator (`driver.rs` over the programming model's executor, `model/`), plans the turn's
//! command (`turn.rs`) and runs the activities it scheduled in-process (`activities.rs`).
//! Requests for partitions led elsewhere are forwarded there (`local.rs`, `Kind::Orchestration`).
//!
//! Module arrows: `mod` (facade) → `local` → `workload` → `instance` → `turn`, `driver`,
//! `activities` → `model`, `shared`, `metrics`, `api`.

mod activities;
pub mod api;
mod driver;
mod instance;
mod local;
pub mod metrics;
pub mod model;
mod rewind;
pub mod samples;
mod shared;
mod test_hooks;
mod turn;
mod workload;

pub use api::{
    InstanceFilter, InstanceStatus, Query, QueryPage, StartRequest, Started, MAX_QUERY_PAGE,
};
pub use metrics::OrchestrationMetrics;
pub use workload::OrchestrationWorkload;

use crate::host::{within, Route, Router};
use crate::Error;
use local::{Local, OrchReply, OrchRequest};
use model::OrchestrationRegistry;
use perdure_types::config::OrchestrationsConfig;
use perdure_types::orchestration::{EventKind, HistoryEvent, InstanceRecord};
use perdure_types::{InstanceId, PartitionId, Target};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Most characters of an orchestrator's name.
pub const MAX_NAME_CHARS: usize = 256;

/// The orchestration facade of one node: routes each request to its instance's partition
/// leader (here, or forwarded) and runs it there.
pub struct Orchestrations {
    local: Arc<Local>,
    deadline: Duration,
    /// Remote workers connected to this node.
    workers: Arc<crate::remote::session::Workers>,
}

impl std::fmt::Debug for Orchestrations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Orchestrations").finish_non_exhaustive()
    }
}

fn json_text(v: Option<&Value>) -> Option<String> {
    v.map(Value::to_string)
}

impl Orchestrations {
    /// The facade over `workload`, hosted behind `router`; serves forwarded requests from peers
    /// while it lives (added before the partitions serve peers).
    pub fn new(
        router: Arc<Router>,
        workload: Arc<OrchestrationWorkload>,
        request_timeout: Duration,
    ) -> Result<Self, Error> {
        let local = Arc::new(Local { router, workload });
        local::register(&local)?;
        let workers = Arc::new(crate::remote::session::Workers::new(
            local.router.partitions().node_id(),
            Arc::new(local::ClusterQueues(local.clone())),
            local.workload.shared.remote.stats.clone(),
        ));
        Ok(Self {
            local,
            deadline: request_timeout,
            workers,
        })
    }

    /// Serves remote workers from now on: orchestrators and activities with no Rust function
    /// on the node run on them (`remote/`). Call before the partitions serve.
    pub fn serve_remote_workers(&self, config: crate::remote::RemoteConfig) {
        self.local.workload.shared.remote.enable(config);
    }

    /// Whether remote workers are served.
    pub fn serves_remote_workers(&self) -> bool {
        self.local.workload.shared.remote.config().is_some()
    }

    /// Opens the session of a worker connected to this node: work from every node of the
    /// cluster arrives on it; dropping it gives back what it holds.
    pub fn connect_worker(
        &self,
        spec: crate::remote::WorkerSpec,
    ) -> Result<crate::remote::WorkerSession, Error> {
        if !self.serves_remote_workers() {
            return Err(Error::Unavailable(
                "this node does not serve remote workers (grpc.enabled = false)".into(),
            ));
        }
        Ok(self.workers.connect(spec))
    }

    /// A worker's answer to the work item of `token` (issued by any node).
    pub async fn complete_work(
        &self,
        token: &str,
        outcome: crate::remote::Outcome,
    ) -> Result<(), Error> {
        if let crate::remote::Outcome::Orchestrator(out) = &outcome {
            self.check_payload("the custom status", out.custom_status.as_ref())?;
        }
        self.workers.complete(token, outcome).await
    }

    /// A worker gives the work item of `token` back: it is dispatched again at once.
    pub async fn abandon_work(&self, token: &str) -> Result<(), Error> {
        self.workers.abandon(token).await
    }

    /// The workers connected to this node.
    pub fn workers(&self) -> Vec<crate::remote::WorkerInfo> {
        self.workers.list()
    }

    /// Counters of the remote work this node issued.
    pub fn remote_stats(&self) -> &Arc<crate::remote::RemoteStats> {
        &self.local.workload.shared.remote.stats
    }

    /// Remote work waiting for a worker on this node, by kind (`WorkKind::ALL`'s order).
    pub fn remote_pending(&self) -> [usize; 3] {
        self.local.workload.shared.remote.pending()
    }

    /// The orchestrators and activities this node runs.
    pub fn registry(&self) -> &OrchestrationRegistry {
        &self.local.workload.shared.registry
    }

    /// The workload's counters.
    pub fn metrics(&self) -> &Arc<OrchestrationMetrics> {
        &self.local.workload.shared.metrics
    }

    /// The workload (live instances).
    pub fn workload(&self) -> &Arc<OrchestrationWorkload> {
        &self.local.workload
    }

    fn config(&self) -> &OrchestrationsConfig {
        &self.local.workload.shared.config
    }

    fn partition_of(&self, id: &InstanceId) -> PartitionId {
        Target::Instance(id.clone()).partition(self.local.router.partitions().count())
    }

    /// Runs `req` on partition `p`'s leader, within the request deadline (`wait` more for a
    /// long poll).
    async fn run(
        &self,
        p: PartitionId,
        req: OrchRequest,
        write: bool,
        wait: Duration,
    ) -> Result<OrchReply, Error> {
        let limit = self.deadline + wait;
        within(limit, p, write, async {
            match self.local.router.route(p).await? {
                Route::Local(_) => self.local.serve(req).await,
                Route::Remote(node) => {
                    // past the deadline, so the deadline answers first
                    let t = limit + Duration::from_secs(1);
                    self.local.router.forward(node, &req, Some(t)).await
                }
            }
        })
        .await
    }

    fn check_payload(&self, what: &'static str, v: Option<&String>) -> Result<(), Error> {
        let max = self.config().max_payload_bytes;
        match v {
            Some(s) if s.len() as u64 > max => Err(Error::PayloadTooLarge {
                what,
                bytes: s.len(),
                max,
            }),
            _ => Ok(()),
        }
    }

    /// Starts an instance of orchestrator `req.name`. An id that exists is refused
    /// ([`Error::InstanceExists`]) unless its status is in `req.policy`.
    pub async fn start(&self, req: StartRequest) -> Result<Started, Error> {
        if req.name.is_empty() || req.name.chars().count() > MAX_NAME_CHARS {
            return Err(Error::BadRequest(format!(
                "an orchestrator name has 1 to {MAX_NAME_CHARS} characters, not {}",
                req.name.chars().count()
            )));
        }
        if !self.serves_remote_workers() {
            // with remote workers, a name without a Rust function waits for a worker of it
            self.registry().get_orchestrator(&req.name).map_err(|_| {
                Error::UnknownOrchestrator {
                    name: req.name.clone(),
                    known: self.registry().orchestrator_names().join(", "),
                }
            })?;
        }
        let name = req.name.clone();
        let id = match &req.instance_id {
            Some(s) => InstanceId::new(s)?,
            None => InstanceId::new(&api::new_id())?,
        };
        let input = json_text(req.input.as_ref());
        self.check_payload("the input", input.as_ref())?;
        let now = crate::host::now_ms();
        let execution_id = api::new_id();
        let scheduled = req.scheduled_start.filter(|&t| t > now);
        let record = InstanceRecord::pending(
            id.clone(),
            name.clone(),
            req.version.clone(),
            execution_id.clone(),
            input.clone(),
            None,
            scheduled,
            now,
        );
        let started = HistoryEvent::new(
            now,
            EventKind::ExecutionStarted {
                name,
                version: req.version,
                input,
                parent: None,
                scheduled_start: scheduled,
                execution_id,
            },
        );
        let span = tracing::debug_span!("start", instance = %id);
        let p = self.partition_of(&id);
        let req = OrchRequest::Start {
            record: Box::new(record),
            started: Box::new(started),
            policy: req.policy,
        };
        match tracing::Instrument::instrument(self.run(p, req, true, Duration::ZERO), span).await? {
            OrchReply::Started(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }

    /// The instance's status (and its history when `history`).
    pub async fn status(&self, id: &str, history: bool) -> Result<InstanceStatus, Error> {
        let id = InstanceId::new(id)?;
        let p = self.partition_of(&id);
        let req = OrchRequest::Status {
            instance: id.clone(),
            history,
        };
        match self.run(p, req, false, Duration::ZERO).await? {
            OrchReply::Status(Some(s)) => Ok(*s),
            OrchReply::Status(None) => Err(Error::InstanceNotFound(id)),
            other => Err(unexpected(other)),
        }
    }

    /// Waits up to `timeout` for the instance to finish; answers its status then (finished or
    /// not).
    pub async fn wait(
        &self,
        id: &str,
        timeout: Duration,
        history: bool,
    ) -> Result<InstanceStatus, Error> {
        let id = InstanceId::new(id)?;
        let p = self.partition_of(&id);
        let until = tokio::time::Instant::now() + timeout;
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            // in slices: a leader change midway drops the wait there, and this asks again
            let slice = left.min(Duration::from_secs(5));
            let req = OrchRequest::Wait {
                instance: id.clone(),
                history,
                timeout_ms: slice.as_millis() as u64,
            };
            let status = match self.run(p, req, false, slice).await? {
                OrchReply::Status(Some(s)) => *s,
                OrchReply::Status(None) => return Err(Error::InstanceNotFound(id)),
                other => return Err(unexpected(other)),
            };
            if status.record.status.is_terminal() || tokio::time::Instant::now() >= until {
                return Ok(status);
            }
        }
    }

    async fn event(&self, id: &str, kind: EventKind) -> Result<(), Error> {
        let id = InstanceId::new(id)?;
        let p = self.partition_of(&id);
        let req = OrchRequest::Event {
            instance: id,
            event: HistoryEvent::new(crate::host::now_ms(), kind),
        };
        match self.run(p, req, true, Duration::ZERO).await? {
            OrchReply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Raises event `name` with `data` on a running instance ([`Error::InstanceNotFound`] for
    /// an unknown one, [`Error::InstanceFinished`] for a finished one: never silently dropped).
    pub async fn raise_event(
        &self,
        id: &str,
        name: &str,
        data: Option<Value>,
    ) -> Result<(), Error> {
        if name.is_empty() {
            return Err(Error::BadRequest("the event name is empty".into()));
        }
        let input = json_text(data.as_ref());
        self.check_payload("the event data", input.as_ref())?;
        self.event(
            id,
            EventKind::EventRaised {
                name: name.to_string(),
                input,
            },
        )
        .await
    }

    /// Terminates a running instance with `reason` (and its sub-orchestrations when `recurse`).
    pub async fn terminate(
        &self,
        id: &str,
        reason: Option<Value>,
        recurse: bool,
    ) -> Result<(), Error> {
        let reason = json_text(reason.as_ref());
        self.check_payload("the reason", reason.as_ref())?;
        self.event(id, EventKind::ExecutionTerminated { reason, recurse })
            .await
    }

    /// Suspends a running instance: its events wait until it is resumed.
    pub async fn suspend(&self, id: &str, reason: Option<String>) -> Result<(), Error> {
        self.check_payload("the reason", reason.as_ref())?;
        self.event(id, EventKind::ExecutionSuspended { reason })
            .await
    }

    /// Resumes a suspended instance.
    pub async fn resume(&self, id: &str, reason: Option<String>) -> Result<(), Error> {
        self.check_payload("the reason", reason.as_ref())?;
        self.event(id, EventKind::ExecutionResumed { reason }).await
    }

    /// Purges a finished instance (and, when `recursive`, the sub-orchestrations it started);
    /// answers how many instances were removed.
    pub async fn purge(&self, id: &str, recursive: bool) -> Result<u64, Error> {
        let id = InstanceId::new(id)?;
        self.purge_tree(id, recursive, 0).await
    }

    fn purge_tree(
        &self,
        id: InstanceId,
        recursive: bool,
        depth: u32,
    ) -> futures::future::BoxFuture<'_, Result<u64, Error>> {
        Box::pin(async move {
            let mut n = 0;
            if recursive && depth < 64 {
                let status = self.status(id.as_str(), true).await?;
                for e in status.history.unwrap_or_default() {
                    if let EventKind::SubOrchestrationCreated { instance_id, .. } = e.kind {
                        match self.purge_tree(instance_id, true, depth + 1).await {
                            Ok(k) => n += k,
                            Err(Error::InstanceNotFound(_)) => {}
                            Err(Error::Remote(f)) if f.code == "instance_not_found" => {}
                            // a child still running (a recursive terminate on its way to it)
                            // stays; the parent is purged all the same
                            Err(Error::InstanceState { .. }) => {}
                            Err(Error::Remote(f)) if f.code == "instance_state" => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
            }
            let p = self.partition_of(&id);
            match self
                .run(p, OrchRequest::Purge { instance: id }, true, Duration::ZERO)
                .await?
            {
                OrchReply::Purged(k) => Ok(n + k),
                other => Err(unexpected(other)),
            }
        })
    }

    /// Purges every finished instance `filter` selects, partition by partition in bounded
    /// batches; answers how many were removed.
    pub async fn purge_where(&self, filter: InstanceFilter) -> Result<u64, Error> {
        let mut n = 0;
        for p in 0..self.local.router.partitions().count() {
            let req = OrchRequest::PurgeWhere {
                partition: p,
                filter: filter.clone(),
            };
            match self.run(p, req, true, Duration::from_secs(50)).await? {
                OrchReply::Purged(k) => n += k,
                other => return Err(unexpected(other)),
            }
        }
        Ok(n)
    }

    /// One page of the instances `q.filter` selects, in partition then instance-id order.
    pub async fn query(&self, q: Query) -> Result<QueryPage, Error> {
        let count = self.local.router.partitions().count();
        let (mut p, mut after) = match q.continuation.as_deref() {
            Some(t) => api::decode_token(t)
                .filter(|(p, _)| *p < count)
                .ok_or_else(|| Error::BadRequest(format!("invalid continuation token {t:?}")))?,
            None => (0, None),
        };
        let page = q.page_size.clamp(1, MAX_QUERY_PAGE) as usize;
        let mut out = Vec::new();
        while p < count && out.len() < page {
            let req = OrchRequest::List {
                partition: p,
                after: after.clone(),
                limit: (page - out.len()) as u32,
                filter: q.filter.clone(),
            };
            let (records, next) = match self.run(p, req, false, Duration::ZERO).await? {
                OrchReply::List(r, n) => (r, n),
                other => return Err(unexpected(other)),
            };
            out.extend(records);
            match next {
                Some(n) => after = Some(n),
                None => {
                    p += 1;
                    after = None;
                }
            }
        }
        Ok(QueryPage {
            instances: out,
            continuation: (p < count).then(|| api::encode_token(p, after.as_ref())),
        })
    }

    /// Rewinds a failed instance: its failed activities and sub-orchestrations run again and
    /// the execution goes on from there (the history keeps what succeeded).
    pub async fn rewind(&self, id: &str, reason: Option<String>) -> Result<(), Error> {
        self.check_payload("the reason", reason.as_ref())?;
        let id = InstanceId::new(id)?;
        let p = self.partition_of(&id);
        let req = OrchRequest::Rewind {
            instance: id,
            reason,
        };
        match self.run(p, req, true, Duration::ZERO).await? {
            OrchReply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Starts a finished instance again with its input: under the same id (replacing it), or
    /// under a new one.
    pub async fn restart(&self, id: &str, new_instance_id: bool) -> Result<Started, Error> {
        let status = self.status(id, false).await?;
        let r = status.record;
        if !new_instance_id && !r.status.is_terminal() {
            return Err(Error::InstanceState {
                instance: r.instance_id,
                status: r.status,
                why: "restarting under the same id needs a finished instance; terminate it first or restart with a new id".into(),
            });
        }
        let input = r
            .input
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| Error::Unavailable(format!("stored input is not JSON: {e}")))?;
        self.start(StartRequest {
            name: r.name,
            instance_id: (!new_instance_id).then(|| r.instance_id.as_str().to_string()),
            input,
            scheduled_start: None,
            policy: Default::default(),
            version: r.version,
        })
        .await
    }
}

/// A reply of the wrong kind (a peer of another version, or a bug): never taken as success.
fn unexpected(reply: OrchReply) -> Error {
    Error::Unavailable(format!(
        "unexpected answer to an orchestration request: {reply:?}"
    ))
}
