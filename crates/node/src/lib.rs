//! Wiring of one perdure node: configuration loading and the node's life cycle.
//!
//! [`run`] takes a validated config and a shutdown future, so tests can start and stop a node in
//! process; the `perdure` binary is a thin layer over it.

pub mod config;

use perdure_cluster::Partitions;
use perdure_types::config::NodeConfig;
use std::future::Future;
use std::time::Duration;

/// A node could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Storage or a partition group failed.
    #[error(transparent)]
    Cluster(#[from] perdure_cluster::Error),
}

/// Starts a node, serves until `shutdown` completes, then stops cleanly (every group stopped,
/// the write-ahead log drained and closed).
pub async fn run(config: NodeConfig, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    let started = std::time::Instant::now();
    let partitions = Partitions::start(&config).await?;
    partitions.wait_ready(Duration::from_secs(30)).await?;
    tracing::info!(
        node_id = config.node_id,
        data_dir = %config.data_dir.display(),
        partitions = partitions.count(),
        leading = partitions.leading(),
        startup_ms = started.elapsed().as_millis() as u64,
        "node ready"
    );
    shutdown.await;
    tracing::info!("shutting down");
    partitions.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}
