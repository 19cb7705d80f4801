//! Wiring of one perdure node: configuration loading, the node's life cycle, the HTTP API and
//! the Durable Task gRPC listener (`perdure-grpc`, `[grpc]`).
//!
//! [`run`] takes a validated config, a bound listener and a shutdown future, so tests can start
//! and stop a node in process on a port of their choice; the `perdure` binary is a thin layer
//! over it. The gRPC listener is bound from `grpc.addr` (port 0: a free one).

pub mod config;
pub mod dashboard;
pub mod health;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod routes;
pub mod server;
pub mod watchdog;

use perdure_cluster::Partitions;
use perdure_runtime::{Registries, Registry, Runtime};
use perdure_types::config::NodeConfig;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// How long in-flight requests may run on after shutdown was asked before the runtime is stopped
/// under them (they are then answered 503).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A node could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Storage or a partition group failed.
    #[error(transparent)]
    Cluster(#[from] perdure_cluster::Error),
    /// The entity runtime could not start.
    #[error("entity runtime: {0}")]
    Runtime(#[from] perdure_runtime::Error),
    /// A group's Raft core stopped on a storage error (or a panic): the node stopped instead of
    /// staying up unable to commit (fail-stop, see [`health`]); a supervisor should restart it.
    #[error("fail-stop: {group}'s Raft core stopped on an error: {reason}")]
    Fatal {
        /// The group (`partition N` or `the metadata group`).
        group: String,
        /// The error it stopped on.
        reason: String,
    },
    /// The gRPC listener could not be bound (`grpc.addr`).
    #[error("cannot listen on grpc.addr {addr}: {source}")]
    GrpcBind {
        /// The address.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The `[http.tls]` certificate or key could not be used.
    #[error(transparent)]
    Tls(#[from] server::tls::TlsError),
    /// Something still held the partitions after the server and runtime stopped, so storage could
    /// not be closed cleanly.
    #[error("shutdown incomplete: {0}")]
    Shutdown(String),
}

/// Starts a node on `listener`, serves the HTTP API until `shutdown` completes, then stops
/// cleanly: in-flight requests get [`SHUTDOWN_GRACE`] to finish, then the runtime stops under
/// those still running and connections still open after a second grace are closed; then every
/// group stops and the write-ahead log is drained and closed. Nothing acknowledged is affected:
/// an unfinished request was never answered. When a group stops on a storage error instead
/// (see [`health`]), the node stops the same way and returns [`Error::Fatal`] (fail-stop).
pub async fn run(
    config: NodeConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let registries = Registries {
        entities: Registry::for_config(&config.entities),
        orchestrations: perdure_runtime::orchestrations::samples::registry_for(&config.samples),
    };
    run_with(config, listener, shutdown, registries).await
}

/// [`run`] with the entity types, orchestrators and activities of the caller: how a user's own
/// binary runs a node with its code (see `examples/`).
pub async fn run_with(
    config: NodeConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    registries: Registries,
) -> Result<(), Error> {
    let started = Instant::now();
    let _watchdog = watchdog::start(Duration::from_millis(config.watchdog.stall_after_ms));
    watchdog::test_stall();
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| config.http_addr.clone());
    // the TLS files first: nothing is opened for a node that cannot serve
    let limits = server::Limits::of(&config.http, limits::open_files_limit())?;
    let grpc_listener = bind_grpc(&config).await?;
    // built, then run: the runtime adds its peer service before the node accepts peers
    let partitions = Arc::new(Partitions::open(&config).await?);
    // orchestrators, activities and entity types without Rust code run on the gRPC workers
    let remote = config
        .grpc
        .enabled
        .then(|| perdure_runtime::remote::RemoteConfig {
            lease: std::time::Duration::from_millis(config.grpc.lease_ms),
            max_work_item_bytes: config.grpc.max_work_item_bytes,
        });
    // stream ingestion: consumers on the leaders of their home partitions (none runs without a
    // subscription); its metrics are registered once the node's registry exists
    let ingest_workload = perdure_ingest::IngestWorkload::new(
        Arc::new(perdure_ingest::source::Brokers),
        config.ingest.clone(),
        perdure_ingest::IngestMetrics::unregistered()
            .map_err(|e| perdure_runtime::Error::Unavailable(format!("ingest metrics: {e}")))?,
    );
    let runtime = match Runtime::start_with_workloads(
        partitions.clone(),
        registries,
        config.entities.clone(),
        config.orchestrations.clone(),
        remote,
        vec![ingest_workload.clone() as Arc<dyn perdure_runtime::host::Workload>],
    )
    .await
    {
        Ok(r) => Arc::new(r),
        Err(e) => {
            stop_partitions(partitions).await?;
            return Err(e.into());
        }
    };
    let ingest = match perdure_ingest::Ingest::new(
        runtime.host().router().clone(),
        runtime.entities().clone(),
        ingest_workload,
    ) {
        Ok(i) => i,
        Err(e) => {
            runtime.shutdown().await;
            drop(runtime);
            stop_partitions(partitions).await?;
            return Err(e.into());
        }
    };
    partitions.serve();
    let configured = tokio::spawn(put_configured_subscriptions(
        ingest.clone(),
        config.ingest.subscriptions.clone(),
    ));
    let readiness = tokio::spawn(log_when_ready(runtime.clone(), config.clone(), started));

    let connections = server::ConnMetrics::new();
    let (app, observer, registry) = observability(
        http::router(&runtime, &ingest, partitions.clone(), config.http.clone()),
        &runtime,
        &partitions,
        &config,
        &connections,
    );
    if let Some(r) = &registry {
        if let Err(e) = ingest.workload().metrics().register(r) {
            tracing::error!(error = %e, "the ingestion metrics could not be registered");
        }
    }
    let scheme = if limits.tls.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(
        max_connections = limits.max_connections,
        header_read_timeout_ms = config.http.header_read_timeout_ms,
        idle_timeout_ms = config.http.idle_timeout_ms,
        body_read_timeout_ms = config.http.body_read_timeout_ms,
        "listening on {scheme}://{addr}"
    );
    let (grpc_stop, grpc_stopping) = tokio::sync::watch::channel(false);
    let grpc = grpc_listener.map(|l| {
        start_grpc(
            l,
            &runtime,
            registry.as_ref(),
            &config,
            grpc_stopping.clone(),
        )
    });
    let stop_grpc = grpc_stop.clone();
    let shutdown = async move {
        shutdown.await;
        let _ = stop_grpc.send(true);
    };
    let (fatal, runtime_stopped) = serve_until(
        listener,
        (app, connections),
        limits,
        shutdown,
        &partitions,
        &runtime,
    )
    .await;
    let _ = grpc_stop.send(true);
    if let Some(task) = grpc {
        stop_grpc_server(task).await;
    }
    readiness.abort();
    let _ = readiness.await;
    configured.abort();
    let _ = configured.await;
    drop(ingest);
    if let Some((stop, task)) = observer {
        let _ = stop.send(());
        let _ = task.await;
    }
    if !runtime_stopped {
        runtime.shutdown().await;
    }
    drop(runtime);
    stop_partitions(partitions).await?;
    match fatal {
        Some(e) => {
            tracing::error!("stopped after a fatal storage error");
            Err(e)
        }
        None => {
            tracing::info!("stopped");
            Ok(())
        }
    }
}

/// Serves `app` until `shutdown` completes or a group stops on a fatal error (returned), then
/// stops the server: in-flight requests get [`SHUTDOWN_GRACE`], then the runtime is stopped
/// under them (the second value says so) and, after a second grace, every connection is closed.
async fn serve_until(
    listener: TcpListener,
    (app, connections): (axum::Router, server::ConnMetrics),
    limits: server::Limits,
    shutdown: impl Future<Output = ()>,
    partitions: &Partitions,
    runtime: &Runtime,
) -> (Option<Error>, bool) {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = server::serve(listener, app, limits, connections, async move {
        let _ = stop_rx.await;
    });
    tokio::pin!(server);
    tokio::pin!(shutdown);
    let fatal_watch = health::fatal_storage_error(partitions);
    tokio::pin!(fatal_watch);
    let mut fatal = None;
    tokio::select! {
        () = &mut server => {}
        () = &mut shutdown => tracing::info!("shutting down"),
        p = &mut fatal_watch => {
            let group = if p.metadata {
                "the metadata group".to_string()
            } else {
                format!("partition {}", p.group)
            };
            tracing::error!(
                group = %group,
                cause = %p.problem,
                "a Raft group stopped on a storage error: this node cannot commit any more; \
                 stopping (fail-stop) so that a supervisor restarts it once the cause is gone"
            );
            fatal = Some(Error::Fatal { group, reason: p.problem });
        }
    }
    let _ = stop_tx.send(());
    tokio::select! {
        () = &mut server => (fatal, false),
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::warn!(
                grace_ms = SHUTDOWN_GRACE.as_millis() as u64,
                "requests still running after the shutdown grace; stopping the runtime under them"
            );
            runtime.shutdown().await;
            // a request stuck on something the runtime does not cancel (a stalled
            // upload, a forwarded request) must not keep storage from closing
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await.is_err() {
                tracing::warn!("connections still open after a second grace; closing them");
            }
            (fatal, true)
        }
    }
}

/// Puts the subscriptions of the config file (`[[ingest.subscriptions]]`): created, or replaced
/// when their definition differs (an unchanged one changes nothing). Retried while the cluster
/// forms; a refused definition is logged with its reason.
async fn put_configured_subscriptions(
    ingest: Arc<perdure_ingest::Ingest>,
    subscriptions: Vec<perdure_types::config::ingest::ConfiguredSubscription>,
) {
    for s in subscriptions {
        let mut wait = Duration::from_millis(100);
        loop {
            match ingest.put(&s.name, s.spec.clone()).await {
                Ok((_, created)) => {
                    tracing::info!(subscription = %s.name, created, "subscription from the config file put");
                    break;
                }
                Err(perdure_ingest::IngestError::Unavailable(e)) => {
                    tracing::debug!(subscription = %s.name, error = %e, "the cluster cannot take the subscription yet");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    tracing::error!(subscription = %s.name, error = %e, "the config file's subscription was refused");
                    break;
                }
            }
        }
    }
}

/// Binds the gRPC listener when `grpc.enabled` (before anything is opened: a node that cannot
/// serve starts nothing).
async fn bind_grpc(config: &NodeConfig) -> Result<Option<TcpListener>, Error> {
    if !config.grpc.enabled {
        return Ok(None);
    }
    TcpListener::bind(&config.grpc.addr)
        .await
        .map(Some)
        .map_err(|source| Error::GrpcBind {
            addr: config.grpc.addr.clone(),
            source,
        })
}

/// Serves the Durable Task gRPC service on `listener` until `stopping` turns true; its metrics
/// go to the node's registry (when metrics are on).
fn start_grpc(
    listener: TcpListener,
    runtime: &Arc<Runtime>,
    registry: Option<&prometheus::Registry>,
    config: &NodeConfig,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let metrics = match registry.map(perdure_grpc::GrpcMetrics::new) {
        Some(Ok(m)) => Ok(m),
        Some(Err(e)) => {
            tracing::error!(error = %e, "the gRPC metrics could not be registered");
            perdure_grpc::GrpcMetrics::unregistered()
        }
        None => perdure_grpc::GrpcMetrics::unregistered(),
    };
    let metrics = match metrics {
        Ok(m) => Arc::new(m),
        Err(e) => {
            tracing::error!(error = %e, "the gRPC metrics could not be made; gRPC is not served");
            return tokio::spawn(async {});
        }
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| config.grpc.addr.clone());
    tracing::info!(
        max_message_bytes = config.grpc.max_message_bytes,
        "Durable Task gRPC listening on {addr}"
    );
    let service = perdure_grpc::service_for(runtime, metrics, stopping.clone());
    let max = config.grpc.max_message_bytes as usize;
    let mut stop = stopping;
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = perdure_grpc::serve(listener, service, max, shutdown).await {
            tracing::error!(error = %e, "the gRPC server stopped");
        }
    })
}

/// Waits for the gRPC server to drain (its in-flight calls finish, its long polls and streams
/// end) for at most [`SHUTDOWN_GRACE`], then stops it.
async fn stop_grpc_server(mut task: tokio::task::JoinHandle<()>) {
    if tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
        .await
        .is_err()
    {
        tracing::warn!("gRPC calls still running after the shutdown grace; closing them");
        task.abort();
        let _ = task.await;
    }
}

/// The stop signal and task of the leadership sampler of [`metrics::NodeMetrics`].
type Observer = (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
);

/// Adds the web dashboard (`/`), the access guard (tokens, Host and Origin checks:
/// [`http::access`]) and, with `metrics.enabled`, `GET /metrics` and the measuring middleware
/// to `api`; answers the node's metrics registry too (with `metrics.enabled`).
fn observability(
    api: axum::Router,
    runtime: &Arc<Runtime>,
    partitions: &Arc<Partitions>,
    config: &NodeConfig,
    connections: &server::ConnMetrics,
) -> (axum::Router, Option<Observer>, Option<prometheus::Registry>) {
    let app = api.merge(dashboard::router(runtime.clone()));
    let access = http::access::Access::new(&config.auth, &config.http);
    // after every merge: a method a route does not serve is 405 in the API's error shape on the
    // dashboard's and the metrics' routes too (the fallback applies to routes registered before)
    let guarded = |app: axum::Router| {
        app.method_not_allowed_fallback(http::method_not_allowed)
            .layer(axum::middleware::from_fn_with_state(
                access.clone(),
                http::access::guard,
            ))
    };
    if !config.metrics.enabled {
        return (guarded(app), None, None);
    }
    let m = match metrics::NodeMetrics::new(runtime.clone(), partitions.clone()) {
        Ok(m) => Arc::new(m),
        Err(e) => {
            tracing::error!(error = %e, "metrics could not be set up; serving without them");
            return (guarded(app), None, None);
        }
    };
    if let Err(e) = connections.register(m.registry()) {
        tracing::error!(error = %e, "the connection metrics could not be registered");
    }
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(m.clone().watch_leaders(stopped));
    // refused requests are measured too (the guard runs inside the measuring middleware)
    let app = guarded(app.merge(metrics::router(m.clone()))).layer(
        axum::middleware::from_fn_with_state(m.requests().clone(), metrics::track),
    );
    let registry = m.registry().clone();
    (app, Some((stop, task)), Some(registry))
}

/// Logs once every partition has a leader (or warns that they do not yet).
async fn log_when_ready(runtime: Arc<Runtime>, config: NodeConfig, started: Instant) {
    let partitions = runtime.partitions();
    match partitions.wait_ready(Duration::from_secs(30)).await {
        Ok(()) => tracing::info!(
            node_id = config.node_id,
            data_dir = %config.data_dir.display(),
            partitions = partitions.count(),
            leading = partitions.leading(),
            startup_ms = started.elapsed().as_millis() as u64,
            "node ready"
        ),
        Err(e) => tracing::warn!(error = %e, "node not ready yet; /readyz answers 503"),
    }
}

/// Shuts the partitions down once nothing else holds them (tasks of the runtime may let go of
/// their handles a moment after it stopped).
async fn stop_partitions(mut partitions: Arc<Partitions>) -> Result<(), Error> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match Arc::try_unwrap(partitions) {
            Ok(p) => {
                p.shutdown().await;
                return Ok(());
            }
            Err(shared) if Instant::now() < deadline => {
                partitions = shared;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(shared) => {
                return Err(Error::Shutdown(format!(
                    "the partitions are still referenced ({} handles) after the runtime stopped",
                    Arc::strong_count(&shared)
                )))
            }
        }
    }
}
