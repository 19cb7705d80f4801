//! The Durable Task gRPC service (`TaskHubSidecarService`) of a perdure node: what the official
//! Durable Task SDKs call, as clients and (next) as workers. See
//! `docs/ARCHITECTURE.md` and the protocol reference for what the SDKs expect.
//!
//! - [`proto`]: the messages, server and client generated from our own
//!   `proto/orchestrator_service.proto` (upstream's wire contract, no `package`);
//! - [`convert`]: perdure's history events, actions, statuses and instance records <-> the
//!   protocol's messages;
//! - [`service`]: the tonic service, one span and one measurement per RPC, each RPC delegated to
//!   [`client`] (instance management and entities over the runtime's facades) or [`worker`]
//!   (work items: not served yet);
//! - [`status`]: the one mapping of runtime errors to gRPC statuses; [`deadline`]: the caller's
//!   deadline and the long polls under it; [`metrics`]: the Prometheus metrics;
//! - [`server`]: serving a bound listener until shutdown.
//!
//! Module arrows: `server` → `service` → `client`, `worker` → `convert`, `status`, `deadline`,
//! `metrics` → `proto`.

// the futures of the facades awaited in one RPC nest deeper than the default limit of 128
#![recursion_limit = "256"]

/// The generated messages, the tonic server (`task_hub_sidecar_service_server`) and the tonic
/// client (`task_hub_sidecar_service_client`, used by tests).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/_.rs"));
}

pub mod client;
pub mod convert;
pub mod deadline;
pub mod metrics;
pub mod server;
pub mod service;
pub mod status;
pub mod worker;

pub use client::ClientApi;
pub use metrics::GrpcMetrics;
pub use server::{serve, ServeError};
pub use service::Service;
pub use worker::Worker;

use std::sync::Arc;
use tokio::sync::watch;

/// The service of a node running `runtime`, measured in `metrics`; its long polls end once
/// `stopping` turns true.
pub fn service_for(
    runtime: &perdure_runtime::Runtime,
    metrics: Arc<GrpcMetrics>,
    stopping: watch::Receiver<bool>,
) -> Service {
    let client = ClientApi::new(
        runtime.orchestrations().clone(),
        runtime.entities().clone(),
        stopping.clone(),
    );
    let worker = Worker::new(runtime.orchestrations().clone(), metrics.clone(), stopping);
    Service::new(client, worker, metrics)
}
