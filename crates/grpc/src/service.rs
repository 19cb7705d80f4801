//! The tonic service: each RPC gets a tracing span (method, instance id where there is one) and
//! its metrics ([`GrpcMetrics`]), then is delegated, one call per RPC, to [`ClientApi`]
//! (instance management, entities) or [`Worker`] (work items).

use crate::client::ClientApi;
use crate::deadline::poll_budget;
use crate::metrics::GrpcMetrics;
use crate::proto;
use crate::proto::task_hub_sidecar_service_server::TaskHubSidecarService;
use crate::worker::{WorkItemStream, Worker};
use futures::Stream;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tonic::{Code, Request, Response, Status};
use tracing::Instrument;

/// The `TaskHubSidecarService` of one node.
#[derive(Debug, Clone)]
pub struct Service {
    client: ClientApi,
    worker: Worker,
    metrics: Arc<GrpcMetrics>,
}

/// A server stream that counts itself in `perdure_grpc_streams` while it is open.
pub struct Gauged<S> {
    inner: S,
    gauge: prometheus::IntGauge,
}

impl<S> Gauged<S> {
    /// `inner`, counted in `gauge` until dropped.
    pub fn new(inner: S, gauge: prometheus::IntGauge) -> Self {
        gauge.inc();
        Self { inner, gauge }
    }
}

impl<S> std::fmt::Debug for Gauged<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gauged").finish_non_exhaustive()
    }
}

impl<S: Stream + Unpin> Stream for Gauged<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

impl<S> Drop for Gauged<S> {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// The stream of history chunks a `StreamInstanceHistory` call receives.
pub type HistoryStream =
    Gauged<Pin<Box<dyn Stream<Item = Result<proto::HistoryChunk, Status>> + Send + 'static>>>;

impl Service {
    /// The service over `client` and `worker`, measured in `metrics`.
    pub fn new(client: ClientApi, worker: Worker, metrics: Arc<GrpcMetrics>) -> Self {
        Self {
            client,
            worker,
            metrics,
        }
    }

    /// Runs one RPC in its span and measures it.
    async fn call<T>(
        &self,
        method: &'static str,
        instance: &str,
        f: impl Future<Output = Result<T, Status>>,
    ) -> Result<Response<T>, Status> {
        let span = tracing::info_span!("grpc", method, instance);
        let started = Instant::now();
        let r = f.instrument(span.clone()).await;
        let code = r.as_ref().map_or_else(Status::code, |_| Code::Ok);
        self.metrics.observe(method, code, started.elapsed());
        if let Err(s) = &r {
            span.in_scope(|| {
                tracing::debug!(code = ?s.code(), message = s.message(), "answered with an error")
            });
        }
        r.map(Response::new)
    }
}

#[tonic::async_trait]
impl TaskHubSidecarService for Service {
    async fn hello(&self, _r: Request<()>) -> Result<Response<()>, Status> {
        self.call("Hello", "", self.worker.hello()).await
    }

    async fn start_instance(
        &self,
        r: Request<proto::CreateInstanceRequest>,
    ) -> Result<Response<proto::CreateInstanceResponse>, Status> {
        let r = r.into_inner();
        let id = r.instance_id.clone();
        self.call("StartInstance", &id, self.client.start(r)).await
    }

    async fn get_instance(
        &self,
        r: Request<proto::GetInstanceRequest>,
    ) -> Result<Response<proto::GetInstanceResponse>, Status> {
        let r = r.into_inner();
        let id = r.instance_id.clone();
        self.call("GetInstance", &id, self.client.get(r)).await
    }

    async fn rewind_instance(
        &self,
        r: Request<proto::RewindInstanceRequest>,
    ) -> Result<Response<proto::RewindInstanceResponse>, Status> {
        let r = r.into_inner();
        let id = r.instance_id.clone();
        self.call("RewindInstance", &id, self.client.rewind(r))
            .await
    }

    async fn restart_instance(
        &self,
        r: Request<proto::RestartInstanceRequest>,
    ) -> Result<Response<proto::RestartInstanceResponse>, Status> {
        let r = r.into_inner();
        let id = r.instance_id.clone();
        self.call("RestartInstance", &id, self.client.restart(r))
            .await
    }

    async fn wait_for_instance_start(
        &self,
        r: Request<proto::GetInstanceRequest>,
    ) -> Result<Response<proto::GetInstanceResponse>, Status> {
        let budget = poll_budget(r.metadata());
        let r = r.into_inner();
        let id = r.instance_id.clone();
        self.call(
            "WaitForInstanceStart",
            &id,
            self.client.wait_start(r, budget),
        )
        .await
    }

    async fn wait_for_instance_completion(
        &self,
        r: Request<proto::GetInstanceRequest>,
    ) -> Result<Response<proto::GetInstanceResponse>, Status> {
        let budget = poll_budget(r.metadata());
        let r = r.into_inner();
        let id = r.instance_id.clone();
        self.call(
            "WaitForInstanceCompletion",
            &id,
            self.client.wait_completion(r, budget),
        )
        .await
    }

    async fn raise_event(
        &self,
        r: Request<proto::RaiseEventRequest>,
    ) -> Result<Response<proto::RaiseEventResponse>, Status> {
        let r = r.into_inner();
        let id = r.instance_id.clone();
        self.call("RaiseEvent", &id, self.client.raise_event(r))
            .await
    }

    async fn terminate_instance(
        &self,
        r: Request<proto::TerminateRequest>,
    ) -> Result<Response<proto::TerminateResponse>, Status> {
        let r = r.into_inner();
        let id = r.instance_id.clone();
        self.call("TerminateInstance", &id, self.client.terminate(r))
            .await
    }

    async fn suspend_instance(
        &self,
        r: Request<proto::SuspendRequest>,
    ) -> Result<Response<proto::SuspendResponse>, Status> {
        let r = r.into_inner();
        let id = r.instance_id.clone();
        self.call("SuspendInstance", &id, self.client.suspend(r))
            .await
    }

    async fn resume_instance(
        &self,
        r: Request<proto::ResumeRequest>,
    ) -> Result<Response<proto::ResumeResponse>, Status> {
        let r = r.into_inner();
        let id = r.instance_id.clone();
        self.call("ResumeInstance", &id, self.client.resume(r))
            .await
    }

    async fn query_instances(
        &self,
        r: Request<proto::QueryInstancesRequest>,
    ) -> Result<Response<proto::QueryInstancesResponse>, Status> {
        self.call("QueryInstances", "", self.client.query(r.into_inner()))
            .await
    }

    async fn list_instance_ids(
        &self,
        r: Request<proto::ListInstanceIdsRequest>,
    ) -> Result<Response<proto::ListInstanceIdsResponse>, Status> {
        self.call("ListInstanceIds", "", self.client.list_ids(r.into_inner()))
            .await
    }

    async fn purge_instances(
        &self,
        r: Request<proto::PurgeInstancesRequest>,
    ) -> Result<Response<proto::PurgeInstancesResponse>, Status> {
        let r = r.into_inner();
        let id = match &r.request {
            Some(proto::purge_instances_request::Request::InstanceId(id)) => id.clone(),
            _ => String::new(),
        };
        self.call("PurgeInstances", &id, self.client.purge(r)).await
    }

    type StreamInstanceHistoryStream = HistoryStream;

    async fn stream_instance_history(
        &self,
        r: Request<proto::StreamInstanceHistoryRequest>,
    ) -> Result<Response<HistoryStream>, Status> {
        let r = r.into_inner();
        let id = r.instance_id.clone();
        let gauge = self.metrics.streams.clone();
        let chunks = async {
            let chunks = self.client.history(r).await?;
            let s: Pin<Box<dyn Stream<Item = _> + Send>> =
                Box::pin(futures::stream::iter(chunks.into_iter().map(Ok)));
            Ok(Gauged::new(s, gauge))
        };
        self.call("StreamInstanceHistory", &id, chunks).await
    }

    type GetWorkItemsStream = WorkItemStream;

    async fn get_work_items(
        &self,
        r: Request<proto::GetWorkItemsRequest>,
    ) -> Result<Response<WorkItemStream>, Status> {
        let peer = r
            .remote_addr()
            .map_or_else(|| "unknown".to_string(), |a| a.to_string());
        self.call(
            "GetWorkItems",
            "",
            self.worker.get_work_items(r.into_inner(), peer),
        )
        .await
    }

    async fn complete_activity_task(
        &self,
        r: Request<proto::ActivityResponse>,
    ) -> Result<Response<proto::CompleteTaskResponse>, Status> {
        let r = r.into_inner();
        let id = r.instance_id.clone();
        self.call(
            "CompleteActivityTask",
            &id,
            self.worker.complete_activity(r),
        )
        .await
    }

    async fn complete_orchestrator_task(
        &self,
        r: Request<proto::OrchestratorResponse>,
    ) -> Result<Response<proto::CompleteTaskResponse>, Status> {
        let r = r.into_inner();
        let id = r.instance_id.clone();
        self.call(
            "CompleteOrchestratorTask",
            &id,
            self.worker.complete_orchestrator(r),
        )
        .await
    }

    async fn complete_entity_task(
        &self,
        r: Request<proto::EntityBatchResult>,
    ) -> Result<Response<proto::CompleteTaskResponse>, Status> {
        self.call(
            "CompleteEntityTask",
            "",
            self.worker.complete_entity(r.into_inner()),
        )
        .await
    }

    async fn abandon_task_activity_work_item(
        &self,
        r: Request<proto::AbandonActivityTaskRequest>,
    ) -> Result<Response<proto::AbandonActivityTaskResponse>, Status> {
        self.call(
            "AbandonTaskActivityWorkItem",
            "",
            self.worker.abandon_activity(r.into_inner()),
        )
        .await
    }

    async fn abandon_task_orchestrator_work_item(
        &self,
        r: Request<proto::AbandonOrchestrationTaskRequest>,
    ) -> Result<Response<proto::AbandonOrchestrationTaskResponse>, Status> {
        self.call(
            "AbandonTaskOrchestratorWorkItem",
            "",
            self.worker.abandon_orchestrator(r.into_inner()),
        )
        .await
    }

    async fn abandon_task_entity_work_item(
        &self,
        r: Request<proto::AbandonEntityTaskRequest>,
    ) -> Result<Response<proto::AbandonEntityTaskResponse>, Status> {
        self.call(
            "AbandonTaskEntityWorkItem",
            "",
            self.worker.abandon_entity(r.into_inner()),
        )
        .await
    }

    async fn signal_entity(
        &self,
        r: Request<proto::SignalEntityRequest>,
    ) -> Result<Response<proto::SignalEntityResponse>, Status> {
        let r = r.into_inner();
        let id = r.instance_id.clone();
        self.call("SignalEntity", &id, self.client.signal_entity(r))
            .await
    }

    async fn get_entity(
        &self,
        r: Request<proto::GetEntityRequest>,
    ) -> Result<Response<proto::GetEntityResponse>, Status> {
        let r = r.into_inner();
        let id = r.instance_id.clone();
        self.call("GetEntity", &id, self.client.get_entity(r)).await
    }

    async fn query_entities(
        &self,
        r: Request<proto::QueryEntitiesRequest>,
    ) -> Result<Response<proto::QueryEntitiesResponse>, Status> {
        self.call(
            "QueryEntities",
            "",
            self.client.query_entities(r.into_inner()),
        )
        .await
    }

    async fn clean_entity_storage(
        &self,
        r: Request<proto::CleanEntityStorageRequest>,
    ) -> Result<Response<proto::CleanEntityStorageResponse>, Status> {
        self.call(
            "CleanEntityStorage",
            "",
            self.client.clean_entity_storage(r.into_inner()),
        )
        .await
    }
}
