//! The Durable Task gRPC service (`TaskHubSidecarService`) of a perdure node: what the official
//! Durable Task SDKs call, as clients and (next) as workers.
//!
//! - [`proto`]: the messages, server and client generated from our own
//!   `proto/orchestrator_service.proto` (upstream's wire contract, no `package`).
//! - [`convert`]: perdure's history events, actions, statuses and instance records <-> the
//!   protocol's messages.

/// The generated messages, the tonic server (`task_hub_sidecar_service_server`) and the tonic
/// client (`task_hub_sidecar_service_client`, used by tests).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/_.rs"));
}

pub mod convert;
