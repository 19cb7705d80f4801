//! The listener's life: [`serve`] runs the service on a bound listener until shutdown, then stops
//! gracefully (tonic lets in-flight calls finish; the service's long polls end on the same
//! signal, see [`crate::client::ClientApi::new`]).

use crate::proto::task_hub_sidecar_service_server::TaskHubSidecarServiceServer;
use crate::service::Service;
use std::future::Future;
use tokio::net::TcpListener;

/// The server stopped with an error.
#[derive(Debug, thiserror::Error)]
#[error("gRPC server on {addr}: {source}")]
pub struct ServeError {
    /// The address it served.
    pub addr: String,
    /// What went wrong.
    pub source: tonic::transport::Error,
}

/// Serves `service` on `listener` until `shutdown` completes; messages over
/// `max_message_bytes` are refused (`RESOURCE_EXHAUSTED`) in both directions.
pub async fn serve(
    listener: TcpListener,
    service: Service,
    max_message_bytes: usize,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let svc = TaskHubSidecarServiceServer::new(service)
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes);
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(svc)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|source| ServeError { addr, source })
}
