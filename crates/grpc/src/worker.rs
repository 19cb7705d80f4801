//! The worker RPCs: `Hello`, `GetWorkItems` (a server stream per worker, over a session of the
//! runtime's remote work: work from every partition of the cluster, leased, given back when the
//! stream ends), the `Complete*` calls (the worker's answer, routed to the node that issued the
//! completion token) and the `Abandon*` calls (the work is dispatched again at once).

use crate::convert::{
    action_from_proto, event_to_proto, failure_from_proto, millis, text, Decision,
};
use crate::metrics::GrpcMetrics;
use crate::proto;
use crate::status::from_runtime;
use perdure_runtime::orchestrations::Orchestrations;
use perdure_runtime::remote::{
    Dispatched, EntityAction, EntityBatchOutcome, NameFilter, Outcome, RemoteWork, WorkFilter,
    WorkerSession, WorkerSpec,
};
use perdure_types::orchestration::{Action, FailureDetails, RuntimeStatus, TurnOutput};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tonic::Status;

/// The stream of work items a `GetWorkItems` call receives.
pub type WorkItemStream =
    Pin<Box<dyn futures::Stream<Item = Result<proto::WorkItem, Status>> + Send + 'static>>;

/// How long an idle stream goes without a message before a health ping (the SDK takes 120 s of
/// silence for a lost connection).
const PING_EVERY: Duration = Duration::from_secs(30);

/// What a worker that declares no limit may hold at once, per kind.
const DEFAULT_CONCURRENCY: u32 = 100;

/// The worker side of the service.
#[derive(Clone)]
pub struct Worker {
    orchestrations: Arc<Orchestrations>,
    metrics: Arc<GrpcMetrics>,
    /// Turns true when the node stops: the streams end.
    stopping: watch::Receiver<bool>,
    ping_every: Duration,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").finish_non_exhaustive()
    }
}

/// A worker's declared limit (`<= 0`: not declared).
fn limit(n: i32) -> u32 {
    if n <= 0 {
        DEFAULT_CONCURRENCY
    } else {
        n as u32
    }
}

/// The protocol's work-item filters as the runtime's (an absent message: everything).
pub fn filter_from_proto(f: proto::WorkItemFilters) -> WorkFilter {
    let names = |name: String, versions: Vec<String>| NameFilter { name, versions };
    WorkFilter {
        orchestrations: f
            .orchestrations
            .into_iter()
            .map(|o| names(o.name, o.versions))
            .collect(),
        activities: f
            .activities
            .into_iter()
            .map(|a| names(a.name, a.versions))
            .collect(),
        entities: f.entities.into_iter().map(|e| e.name).collect(),
    }
}

/// A dispatched work item as the protocol's `WorkItem` (histories inline, whole).
pub fn work_item(d: Dispatched) -> proto::WorkItem {
    use proto::work_item::Request;
    let request = match d.work {
        RemoteWork::Orchestrator(o) => {
            let id = o.instance_id.as_str();
            Request::OrchestratorRequest(proto::OrchestratorRequest {
                instance_id: id.to_string(),
                execution_id: Some(o.execution_id.clone()),
                past_events: o.past.iter().map(|e| event_to_proto(e, id)).collect(),
                new_events: o.new.iter().map(|e| event_to_proto(e, id)).collect(),
                ..Default::default()
            })
        }
        RemoteWork::Activity(a) => Request::ActivityRequest(proto::ActivityRequest {
            name: a.name,
            version: a.version,
            input: a.input,
            orchestration_instance: Some(proto::OrchestrationInstance {
                instance_id: a.instance_id.to_string(),
                execution_id: Some(a.execution_id),
            }),
            task_id: a.task_id,
            ..Default::default()
        }),
        RemoteWork::Entity(e) => Request::EntityRequest(proto::EntityBatchRequest {
            instance_id: e.entity.canonical(),
            entity_state: e.state,
            operations: e
                .operations
                .into_iter()
                .map(|op| proto::OperationRequest {
                    operation: op.operation,
                    request_id: op.request_id,
                    input: op.input,
                    ..Default::default()
                })
                .collect(),
        }),
    };
    proto::WorkItem {
        request: Some(request),
        completion_token: d.token,
    }
}

fn ping() -> proto::WorkItem {
    proto::WorkItem {
        request: Some(proto::work_item::Request::HealthPing(proto::HealthPing {})),
        completion_token: String::new(),
    }
}

/// A worker's orchestrator answer as the turn's output; an action perdure cannot take fails the
/// orchestration naming it (instead of leaving the turn to be dispatched again for ever), and
/// is reported as the second value.
pub fn turn_from_proto(r: &mut proto::OrchestratorResponse) -> (TurnOutput, Option<String>) {
    let mut actions = Vec::with_capacity(r.actions.len());
    let mut refused = None;
    for a in std::mem::take(&mut r.actions) {
        match action_from_proto(a) {
            Ok(Decision::Action(a)) => actions.push(a),
            Ok(Decision::Rewind { .. }) => {
                // perdure rewinds on the node (the failed steps taken out before the next
                // dispatch): a worker's own rewound history is not needed
                tracing::debug!(instance = %r.instance_id, "a worker's rewind action ignored: the node rewound the history already");
            }
            Err(e) => {
                refused = Some(e.to_string());
                break;
            }
        }
    }
    if let Some(why) = &refused {
        actions = vec![Action::CompleteOrchestration {
            id: 0,
            status: RuntimeStatus::Failed,
            result: None,
            failure: Some(FailureDetails::new(
                "InvalidAction",
                format!("the worker answered an action perdure cannot take: {why}"),
            )),
            carryover_events: Vec::new(),
        }];
    }
    let output = TurnOutput {
        actions,
        custom_status: text(r.custom_status.take()),
    };
    (output, refused)
}

/// A worker's entity batch result as the runtime's.
pub fn entity_from_proto(r: proto::EntityBatchResult) -> EntityBatchOutcome {
    use proto::operation_action::OperationActionType as T;
    use proto::operation_result::ResultType as R;
    let batch_failure = r
        .failure_details
        .filter(|f| !f.error_message.is_empty() || !f.error_type.is_empty())
        .map(failure_from_proto);
    let results = r
        .results
        .into_iter()
        .map(|res| match (&batch_failure, res.result_type) {
            (Some(f), _) => Err(f.clone()),
            (None, Some(R::Success(s))) => Ok(text(s.result)),
            (None, Some(R::Failure(f))) => Err(f
                .failure_details
                .map(failure_from_proto)
                .unwrap_or_else(|| FailureDetails::new("OperationFailed", "the operation failed"))),
            (None, None) => Err(FailureDetails::new(
                "InvalidResult",
                "the worker answered an operation result without success or failure",
            )),
        })
        .collect();
    let actions = r
        .actions
        .into_iter()
        .filter_map(|a| match a.operation_action_type? {
            T::SendSignal(s) => Some(EntityAction::Signal {
                target: s.instance_id,
                operation: s.name,
                input: text(s.input),
                scheduled_time: s.scheduled_time.as_ref().map(millis),
            }),
            T::StartNewOrchestration(s) => Some(EntityAction::StartOrchestration {
                instance_id: s.instance_id,
                name: s.name,
                version: text(s.version),
                input: text(s.input),
                scheduled_time: s.scheduled_time.as_ref().map(millis),
            }),
        })
        .collect();
    EntityBatchOutcome {
        results,
        state: text(r.entity_state),
        actions,
    }
}

impl Worker {
    /// The worker side over `orchestrations`; streams end once `stopping` turns true.
    pub fn new(
        orchestrations: Arc<Orchestrations>,
        metrics: Arc<GrpcMetrics>,
        stopping: watch::Receiver<bool>,
    ) -> Self {
        Self {
            orchestrations,
            metrics,
            stopping,
            ping_every: PING_EVERY,
        }
    }

    /// `Hello`: the worker (re)connects.
    pub async fn hello(&self) -> Result<(), Status> {
        Ok(())
    }

    /// `GetWorkItems`: the worker's stream of work items, from a session on this node.
    pub async fn get_work_items(
        &self,
        r: proto::GetWorkItemsRequest,
        peer: String,
    ) -> Result<WorkItemStream, Status> {
        let spec = WorkerSpec {
            max_orchestrators: limit(r.max_concurrent_orchestration_work_items),
            max_activities: limit(r.max_concurrent_activity_work_items),
            filter: r.work_item_filters.map(filter_from_proto),
            peer,
        };
        let session = self
            .orchestrations
            .connect_worker(spec)
            .map_err(|e| from_runtime(&e))?;
        let (tx, rx) = mpsc::channel(16);
        let metrics = self.metrics.clone();
        let stopping = self.stopping.clone();
        let ping_every = self.ping_every;
        tokio::spawn(pump(session, tx, metrics, stopping, ping_every));
        Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })))
    }

    /// `CompleteActivityTask`.
    pub async fn complete_activity(
        &self,
        r: proto::ActivityResponse,
    ) -> Result<proto::CompleteTaskResponse, Status> {
        // a failure is signalled by failure details with a message (or type)
        let result = match r
            .failure_details
            .filter(|f| !f.error_message.is_empty() || !f.error_type.is_empty())
        {
            Some(f) => Err(failure_from_proto(f)),
            None => Ok(text(r.result)),
        };
        self.complete(&r.completion_token, Outcome::Activity(result))
            .await
    }

    /// `CompleteOrchestratorTask`.
    pub async fn complete_orchestrator(
        &self,
        mut r: proto::OrchestratorResponse,
    ) -> Result<proto::CompleteTaskResponse, Status> {
        let (output, refused) = turn_from_proto(&mut r);
        self.complete(&r.completion_token, Outcome::Orchestrator(output))
            .await?;
        match refused {
            // the orchestration failed naming it; the worker hears why too
            Some(why) => Err(Status::invalid_argument(why)),
            None => Ok(proto::CompleteTaskResponse {}),
        }
    }

    /// `CompleteEntityTask`.
    pub async fn complete_entity(
        &self,
        r: proto::EntityBatchResult,
    ) -> Result<proto::CompleteTaskResponse, Status> {
        let token = r.completion_token.clone();
        self.complete(&token, Outcome::Entity(entity_from_proto(r)))
            .await
    }

    async fn complete(
        &self,
        token: &str,
        outcome: Outcome,
    ) -> Result<proto::CompleteTaskResponse, Status> {
        let kind = outcome.kind().label();
        match self.orchestrations.complete_work(token, outcome).await {
            Ok(()) => {
                self.metrics.work_item(kind, "completed");
                Ok(proto::CompleteTaskResponse {})
            }
            Err(e) => Err(from_runtime(&e)),
        }
    }

    async fn abandon(&self, token: &str, kind: &'static str) -> Result<(), Status> {
        self.orchestrations
            .abandon_work(token)
            .await
            .map_err(|e| from_runtime(&e))?;
        self.metrics.work_item(kind, "abandoned");
        Ok(())
    }

    /// `AbandonTaskActivityWorkItem`.
    pub async fn abandon_activity(
        &self,
        r: proto::AbandonActivityTaskRequest,
    ) -> Result<proto::AbandonActivityTaskResponse, Status> {
        self.abandon(&r.completion_token, "activity").await?;
        Ok(proto::AbandonActivityTaskResponse {})
    }

    /// `AbandonTaskOrchestratorWorkItem`.
    pub async fn abandon_orchestrator(
        &self,
        r: proto::AbandonOrchestrationTaskRequest,
    ) -> Result<proto::AbandonOrchestrationTaskResponse, Status> {
        self.abandon(&r.completion_token, "orchestrator").await?;
        Ok(proto::AbandonOrchestrationTaskResponse {})
    }

    /// `AbandonTaskEntityWorkItem`.
    pub async fn abandon_entity(
        &self,
        r: proto::AbandonEntityTaskRequest,
    ) -> Result<proto::AbandonEntityTaskResponse, Status> {
        self.abandon(&r.completion_token, "entity").await?;
        Ok(proto::AbandonEntityTaskResponse {})
    }
}

/// Moves a session's work to the worker's stream, with a health ping on an idle stream, until
/// the stream closes or the node stops; then the session ends and gives back what it holds.
async fn pump(
    mut session: WorkerSession,
    tx: mpsc::Sender<Result<proto::WorkItem, Status>>,
    metrics: Arc<GrpcMetrics>,
    mut stopping: watch::Receiver<bool>,
    ping_every: Duration,
) {
    metrics.workers_connected.inc();
    let span = tracing::info_span!("worker", session = session.id());
    let _enter = span.enter();
    loop {
        let next = tokio::select! {
            d = tokio::time::timeout(ping_every, session.next()) => d,
            _ = tx.closed() => break,
            _ = stopping.wait_for(|s| *s) => break,
        };
        let item = match next {
            Ok(Some(d)) => {
                metrics.work_item(d.work.kind().label(), "dispatched");
                work_item(d)
            }
            Ok(None) => break,
            Err(_) => ping(),
        };
        if tx.send(Ok(item)).await.is_err() {
            break;
        }
    }
    drop(_enter);
    drop(session);
    metrics.workers_connected.dec();
}
