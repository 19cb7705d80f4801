//! The worker RPCs (`Hello`, `GetWorkItems`, `Complete*`, `Abandon*`): not served yet, each
//! answers `UNIMPLEMENTED`. [`crate::service`] delegates every one of them here, so serving them
//! is a change to this file alone (and to [`Worker::new`]'s arguments).

use crate::proto;
use std::pin::Pin;
use tonic::Status;

/// The stream of work items a `GetWorkItems` call receives.
pub type WorkItemStream =
    Pin<Box<dyn futures::Stream<Item = Result<proto::WorkItem, Status>> + Send + 'static>>;

/// The worker side of the service.
#[derive(Debug, Clone, Default)]
pub struct Worker {}

fn not_yet(rpc: &str) -> Status {
    Status::unimplemented(format!(
        "{rpc}: perdure does not serve Durable Task workers yet (only the client RPCs)"
    ))
}

impl Worker {
    /// The worker side.
    pub fn new() -> Self {
        Self {}
    }

    /// `Hello`.
    pub async fn hello(&self) -> Result<(), Status> {
        Err(not_yet("Hello"))
    }

    /// `GetWorkItems`.
    pub async fn get_work_items(
        &self,
        _r: proto::GetWorkItemsRequest,
    ) -> Result<WorkItemStream, Status> {
        Err(not_yet("GetWorkItems"))
    }

    /// `CompleteActivityTask`.
    pub async fn complete_activity(
        &self,
        _r: proto::ActivityResponse,
    ) -> Result<proto::CompleteTaskResponse, Status> {
        Err(not_yet("CompleteActivityTask"))
    }

    /// `CompleteOrchestratorTask`.
    pub async fn complete_orchestrator(
        &self,
        _r: proto::OrchestratorResponse,
    ) -> Result<proto::CompleteTaskResponse, Status> {
        Err(not_yet("CompleteOrchestratorTask"))
    }

    /// `CompleteEntityTask`.
    pub async fn complete_entity(
        &self,
        _r: proto::EntityBatchResult,
    ) -> Result<proto::CompleteTaskResponse, Status> {
        Err(not_yet("CompleteEntityTask"))
    }

    /// `AbandonTaskActivityWorkItem`.
    pub async fn abandon_activity(
        &self,
        _r: proto::AbandonActivityTaskRequest,
    ) -> Result<proto::AbandonActivityTaskResponse, Status> {
        Err(not_yet("AbandonTaskActivityWorkItem"))
    }

    /// `AbandonTaskOrchestratorWorkItem`.
    pub async fn abandon_orchestrator(
        &self,
        _r: proto::AbandonOrchestrationTaskRequest,
    ) -> Result<proto::AbandonOrchestrationTaskResponse, Status> {
        Err(not_yet("AbandonTaskOrchestratorWorkItem"))
    }

    /// `AbandonTaskEntityWorkItem`.
    pub async fn abandon_entity(
        &self,
        _r: proto::AbandonEntityTaskRequest,
    ) -> Result<proto::AbandonEntityTaskResponse, Status> {
        Err(not_yet("AbandonTaskEntityWorkItem"))
    }
}
