//! The HTTP API, following Durable Functions' paths under [`BASE`] (see `docs/api/openapi.yaml`).
//!
//! | route | answer |
//! |---|---|
//! | `POST {BASE}/entities/{name}/{key}?op=OP` | signal: 202 `{"accepted":true,"duplicate":false}` |
//! | `POST {BASE}/entities/{name}/{key}/call?op=OP` | call: 200 with the operation's result |
//! | `GET {BASE}/entities/{name}/{key}` | state: 200, or 404 |
//! | `GET {BASE}/entities/{name}?top=N&continuation=T` | a page of entities |
//! | `POST {BASE}/entities:batch` | many signals, one result each |
//! | `POST {BASE}/orchestrators/{name}[/{instanceId}]` | start: 202, `Location`, management URLs |
//! | `GET {BASE}/instances/{id}[/wait]`, `GET {BASE}/instances` | status (202 running, 200 finished), list |
//! | `POST {BASE}/instances/{id}/{raiseEvent/{event},terminate,suspend,resume,rewind,restart}` | 202 |
//! | `DELETE {BASE}/instances/{id}`, `DELETE {BASE}/instances?filter` | purge: 200 `{"instancesDeleted":n}` |
//! | `PUT`/`GET`/`DELETE {BASE}/subscriptions/{name}`, `GET {BASE}/subscriptions`, `GET .../dead-letters`, `POST .../{pause,resume}` | stream subscriptions (see [`subscriptions`]) |
//! | `GET /cluster` | members and their health, partitions with replicas and leaders, stream consumers |
//! | `DELETE /cluster/members/{id}` | removes a member for good; its replicas move to the others |
//! | `GET /healthz`, `GET /readyz` | process alive; the node can serve (see [`crate::health`]) |
//!
//! Every error is JSON `{"error":{"code":"...","message":"..."}}`.

pub mod access;
pub mod entities;
pub mod error;
pub mod extract;
pub mod orchestrations;
pub mod subscriptions;

use crate::metrics::{measure_op, OpKind};
use crate::routes;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use axum::{Json, Router};
use error::ApiError;
use perdure_cluster::Partitions;
use perdure_runtime::{Entities, Host, Orchestrations, Runtime};
use perdure_types::config::HttpConfig;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

/// Base path of the Durable Functions-style routes (every route is listed in [`crate::routes`]).
pub const BASE: &str = "/runtime/webhooks/durabletask";
/// Header carrying a listing's continuation token (both ways), as in Durable Functions.
pub const CONTINUATION_HEADER: &str = "x-ms-continuation-token";

/// What every handler shares: one field per facade the API serves, and the HTTP limits.
#[derive(Debug, Clone)]
pub struct App {
    /// The entities facade: signals, calls, state, listings, the entity types.
    pub entities: Arc<Entities>,
    /// The orchestrations facade: start, status, wait, events, management, queries, purges.
    pub orchestrations: Arc<Orchestrations>,
    /// The partition host: whether the workloads run, requests forwarded.
    pub host: Arc<Host>,
    /// The cluster facade: membership, partition leaders and readiness.
    pub cluster: Arc<Partitions>,
    /// The stream-ingestion facade: subscriptions, their progress, dead letters.
    pub ingest: Arc<perdure_ingest::Ingest>,
    /// HTTP limits.
    pub http: HttpConfig,
}

/// The router of the whole API over `runtime`'s facades and the `cluster` facade. Each entity
/// operation handler is declared with its [`OpKind`], which [`measure_op`] counts it under (no
/// metric depends on a route's spelling).
pub fn router(
    runtime: &Runtime,
    ingest: &Arc<perdure_ingest::Ingest>,
    cluster: Arc<Partitions>,
    http: HttpConfig,
) -> Router {
    let body_limit = usize::try_from(http.max_body_bytes).unwrap_or(usize::MAX);
    let body_timeout = Duration::from_millis(http.body_read_timeout_ms);
    let measured = |kind: OpKind| from_fn_with_state(kind, measure_op);
    Router::new()
        .route(
            routes::ENTITY,
            post(entities::signal.layer(measured(OpKind::Signal)))
                .get(entities::get.layer(measured(OpKind::Read))),
        )
        .route(
            routes::ENTITY_CALL,
            post(entities::call.layer(measured(OpKind::Call))),
        )
        .route(routes::ENTITY_LIST, get(entities::list))
        .route(routes::ENTITY_BATCH, post(entities::batch))
        .route(routes::ORCHESTRATOR, post(orchestrations::start))
        .route(routes::ORCHESTRATOR_INSTANCE, post(orchestrations::start))
        .route(
            routes::INSTANCES,
            get(orchestrations::list).delete(orchestrations::purge_where),
        )
        .route(
            routes::INSTANCE,
            get(orchestrations::status).delete(orchestrations::purge),
        )
        .route(routes::INSTANCE_WAIT, get(orchestrations::wait))
        .route(
            routes::INSTANCE_RAISE_EVENT,
            post(orchestrations::raise_event),
        )
        .route(routes::INSTANCE_TERMINATE, post(orchestrations::terminate))
        .route(routes::INSTANCE_SUSPEND, post(orchestrations::suspend))
        .route(routes::INSTANCE_RESUME, post(orchestrations::resume))
        .route(routes::INSTANCE_REWIND, post(orchestrations::rewind))
        .route(routes::INSTANCE_RESTART, post(orchestrations::restart))
        .route(routes::SUBSCRIPTIONS, get(subscriptions::list))
        .route(
            routes::SUBSCRIPTION,
            get(subscriptions::get)
                .put(subscriptions::put)
                .delete(subscriptions::delete),
        )
        .route(
            routes::SUBSCRIPTION_DEAD_LETTERS,
            get(subscriptions::dead_letters),
        )
        .route(routes::SUBSCRIPTION_PAUSE, post(subscriptions::pause))
        .route(routes::SUBSCRIPTION_RESUME, post(subscriptions::resume))
        .route(routes::HEALTHZ, get(healthz))
        .route(routes::READYZ, get(readyz))
        .route(routes::CLUSTER, get(cluster_status))
        .route(routes::CLUSTER_MEMBER, axum::routing::delete(remove_member))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(RequestBodyTimeoutLayer::new(body_timeout))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                // a 503 is expected while a partition has no leader: not an ERROR
                .on_failure(DefaultOnFailure::new().level(tracing::Level::WARN)),
        )
        .with_state(App {
            entities: runtime.entities().clone(),
            orchestrations: runtime.orchestrations().clone(),
            host: runtime.host().clone(),
            cluster,
            ingest: ingest.clone(),
            http,
        })
}

/// One span per request: method, route, and the entity, orchestration instance (and its
/// partition) or subscription when the handler knows it.
fn request_span(req: &Request) -> tracing::Span {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    tracing::info_span!(
        "http",
        method = %req.method(),
        route = %route,
        entity_name = tracing::field::Empty,
        entity_key = tracing::field::Empty,
        instance = tracing::field::Empty,
        partition = tracing::field::Empty,
        signals = tracing::field::Empty,
        subscription = tracing::field::Empty,
    )
}

/// `GET /healthz`: the process is alive.
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /cluster`: members (pinged now) and every partition's replicas, leader and role as this
/// node sees them, and which node consumes which source partition of each stream subscription.
async fn cluster_status(State(app): State<App>) -> Json<serde_json::Value> {
    let status = app.cluster.status().await;
    let mut v = serde_json::to_value(status).unwrap_or_default();
    v["forwarded_requests"] = json!(app.host.forwarded());
    v["consumers"] = json!(subscriptions::consumers(&app).await);
    Json(v)
}

/// `DELETE /cluster/members/{id}`: removes member `id` from the cluster for good (200 with the new
/// membership). Its replicas move to the remaining members in the background (watch
/// `GET /cluster`); 409 when refused (not a member, already removed, too few members left), 503
/// when the metadata group has no leader now.
async fn remove_member(
    State(app): State<App>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id: u64 = id
        .parse()
        .map_err(|_| ApiError::bad_request("bad_node_id", format!("{id:?} is not a node id")))?;
    let span = tracing::info_span!("remove_member", node_id = id);
    let removed = tracing::Instrument::instrument(app.cluster.remove_member(id), span);
    match removed.await {
        Ok(m) => Ok(Json(serde_json::to_value(m).unwrap_or_default())),
        Err(perdure_cluster::membership::MetaError::Refused(reason)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "membership_change_refused",
            reason,
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        )),
    }
}

/// `GET /readyz`: 200 when this node can serve (see [`crate::health::readiness`]): its cluster
/// is formed, every partition has a leader, its entity runtime runs on every partition it leads
/// and no group it is a member of is stopped (a fatal storage error) or without a leader; else
/// 503 `not_ready` saying which.
async fn readyz(State(app): State<App>) -> Result<Json<serde_json::Value>, ApiError> {
    match crate::health::readiness(&app.cluster, &app.host).await {
        Ok(leading) => Ok(Json(json!({
            "status": "ready",
            "partitions": app.cluster.count(),
            "leading": leading,
        }))),
        Err(why) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            why,
        )),
    }
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route for {} {}",
        req.method(),
        req.uri().path()
    ))
}

/// 405 `method_not_allowed`: a known route, another method.
pub(crate) async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}
