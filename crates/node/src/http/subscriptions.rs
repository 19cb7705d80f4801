//! Stream subscription routes under [`super::BASE`]: what the cluster consumes from Kafka or
//! NATS JetStream and how records become entity operations (the [`perdure_ingest::Ingest`]
//! facade).
//!
//! | route | answer |
//! |---|---|
//! | `PUT /subscriptions/{name}` (body: a definition) | 201 created, 200 replaced or unchanged, with the subscription |
//! | `GET /subscriptions` | `{"subscriptions": [...]}`, by name |
//! | `GET /subscriptions/{name}` | the subscription with its progress per source partition |
//! | `GET /subscriptions/{name}/dead-letters?limit=N` | `{"dead_letters": [...]}` |
//! | `POST /subscriptions/{name}/pause`, `/resume` | 200 with the subscription |
//! | `DELETE /subscriptions/{name}` | 204 |
//!
//! Like `/cluster` (and the config file), these perdure resources answer `snake_case` fields;
//! times are RFC 3339 (UTC, milliseconds). Credentials of a source (a NATS token or password, a
//! SASL password) are never answered: they read back as [`REDACTED`]. Errors: 400
//! `invalid_subscription` naming the field (`bad_json` for a body that is not JSON), 404
//! `subscription_not_found`, 409 `too_many_subscriptions`, 503 `unavailable`.

use super::error::ApiError;
use super::extract::{BodyBytes, PathParams, QueryParams};
use super::App;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use perdure_ingest::{ConsumerStatus, PartitionReport, SubscriptionStatus};
use perdure_types::subscription::{
    check_name, DeadLetter, SourceSpec, Subscription, SubscriptionSpec,
};
use perdure_types::time::format_millis;
use perdure_types::{NodeId, PartitionId};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tracing::Instrument;

/// Dead letters answered when `limit` is not given.
pub const DEFAULT_DEAD_LETTERS: u32 = 100;
/// Most dead letters answered; a larger `limit` is lowered to it.
pub const MAX_DEAD_LETTERS: u32 = 1000;
/// What a credential of a source reads back as.
pub const REDACTED: &str = "<redacted>";
/// How long `GET /cluster` waits for the consumers of the other nodes.
const CONSUMERS_WAIT: Duration = Duration::from_secs(2);

/// A subscription as answered.
#[derive(Debug, Clone, Serialize)]
pub struct SubscriptionBody {
    /// Its name.
    pub name: String,
    /// Its definition (credentials redacted).
    pub spec: SubscriptionSpec,
    /// No consumer runs while paused.
    pub paused: bool,
    /// Changes when the source changes (positions belong to one generation).
    pub generation: u64,
    /// Bumped by every change.
    pub version: u64,
    /// When it was created.
    pub created_at: String,
    /// When it last changed.
    pub updated_at: String,
}

impl From<Subscription> for SubscriptionBody {
    fn from(s: Subscription) -> Self {
        Self {
            name: s.name,
            spec: redacted(s.spec),
            paused: s.paused,
            generation: s.generation,
            version: s.version,
            created_at: format_millis(s.created_at_ms),
            updated_at: format_millis(s.updated_at_ms),
        }
    }
}

/// `spec` without its credentials.
fn redacted(mut spec: SubscriptionSpec) -> SubscriptionSpec {
    let hide = |s: &mut Option<String>| {
        if s.is_some() {
            *s = Some(REDACTED.into());
        }
    };
    match &mut spec.source {
        SourceSpec::Nats(n) => {
            hide(&mut n.token);
            hide(&mut n.password);
        }
        SourceSpec::Kafka(k) => {
            if let Some(s) = &mut k.sasl {
                s.password = REDACTED.into();
            }
        }
    }
    spec
}

/// One source partition of a subscription, as answered.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionBody {
    /// The source partition (a Kafka partition; 0 for a JetStream stream).
    pub source_partition: u32,
    /// Its home partition (whose leader runs its consumer).
    pub home_partition: PartitionId,
    /// The node running its consumer (`null`: none runs).
    pub node: Option<NodeId>,
    /// The consumer's state (`starting`, `running`, `retrying`, `stopped`), or `paused`, or
    /// `idle` (no consumer runs: no leader, or not started yet).
    pub state: String,
    /// The consumer's last error.
    pub error: Option<String>,
    /// The checkpoint: every record at or below it was applied (0: none).
    pub position: u64,
    /// The last position the source holds, as the consumer last asked (`null`: no consumer).
    pub end: Option<u64>,
    /// `end - position` (`null`: no consumer).
    pub lag: Option<u64>,
    /// Records applied (failed ones included), by the checkpoint.
    pub applied: u64,
    /// Of those, records whose operation failed.
    pub failed: u64,
    /// Records dead-lettered.
    pub dead_lettered: u64,
    /// When the checkpoint was written (`null`: never).
    pub checkpoint_at: Option<String>,
}

impl PartitionBody {
    fn of(r: PartitionReport, paused: bool) -> Self {
        let cp = r.checkpoint.unwrap_or_default();
        let c = r.consumer;
        let at_ms = if cp.at_ms > 0 {
            cp.at_ms
        } else {
            c.as_ref().map_or(0, |c| c.checkpoint_at_ms)
        };
        let state = match &c {
            Some(c) => c.state.clone(),
            None if paused => "paused".into(),
            None => "idle".into(),
        };
        Self {
            source_partition: r.source_partition,
            home_partition: r.home_partition,
            node: c.as_ref().map(|c| c.node),
            state,
            error: c.as_ref().and_then(|c| c.error.clone()),
            position: cp.position.max(c.as_ref().map_or(0, |c| c.position)),
            end: c.as_ref().map(|c| c.end),
            lag: c.as_ref().map(|c| c.lag),
            applied: cp.applied,
            failed: cp.failed,
            dead_lettered: cp.dead_lettered,
            checkpoint_at: (at_ms > 0).then(|| format_millis(at_ms)),
        }
    }
}

/// A subscription with its progress, as answered.
#[derive(Debug, Clone, Serialize)]
pub struct StatusBody {
    /// The subscription.
    #[serde(flatten)]
    pub subscription: SubscriptionBody,
    /// Records applied (operations run, failed ones included), by committed checkpoints.
    pub applied: u64,
    /// Of those, records whose operation failed.
    pub failed: u64,
    /// Records dead-lettered.
    pub dead_lettered: u64,
    /// Records the source holds past the checkpoints.
    pub lag: u64,
    /// The last error reaching the source (`null`: none).
    pub error: Option<String>,
    /// Per source partition.
    pub partitions: Vec<PartitionBody>,
}

impl From<SubscriptionStatus> for StatusBody {
    fn from(s: SubscriptionStatus) -> Self {
        let paused = s.subscription.paused;
        Self {
            subscription: s.subscription.into(),
            applied: s.applied,
            failed: s.failed,
            dead_lettered: s.dead_lettered,
            lag: s.lag,
            error: s.error,
            partitions: s
                .partitions
                .into_iter()
                .map(|r| PartitionBody::of(r, paused))
                .collect(),
        }
    }
}

/// A dead letter, as answered.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterBody {
    /// Its source partition.
    pub source_partition: u32,
    /// Its position there.
    pub position: u64,
    /// Why it did not become an operation (or its operation failed).
    pub reason: String,
    /// The record's key (`null`: none).
    pub key: Option<String>,
    /// The record's value (UTF-8, lossy, truncated).
    pub value: String,
    /// When it was dead-lettered.
    pub at: String,
}

impl From<DeadLetter> for DeadLetterBody {
    fn from(d: DeadLetter) -> Self {
        Self {
            source_partition: d.partition,
            position: d.position,
            reason: d.reason,
            key: d.key,
            value: d.value,
            at: format_millis(d.at_ms),
        }
    }
}

/// A consumer as `GET /cluster` answers it (`consumers`).
#[derive(Debug, Clone, Serialize)]
pub struct ConsumerBody {
    /// The subscription.
    pub subscription: String,
    /// Its generation.
    pub generation: u64,
    /// The source partition.
    pub source_partition: u32,
    /// Its home partition.
    pub home_partition: PartitionId,
    /// The node running it.
    pub node: NodeId,
    /// `starting`, `running`, `retrying` or `stopped`.
    pub state: String,
    /// The last error.
    pub error: Option<String>,
    /// The checkpoint.
    pub position: u64,
    /// The last position read.
    pub read_position: u64,
    /// The last position the source holds.
    pub end: u64,
    /// `end - position`.
    pub lag: u64,
    /// Records read and not yet checkpointed.
    pub in_flight: u64,
    /// When the checkpoint was last written (`null`: never).
    pub checkpoint_at: Option<String>,
}

impl From<ConsumerStatus> for ConsumerBody {
    fn from(c: ConsumerStatus) -> Self {
        Self {
            subscription: c.subscription,
            generation: c.generation,
            source_partition: c.source_partition,
            home_partition: c.home_partition,
            node: c.node,
            state: c.state,
            error: c.error,
            position: c.position,
            read_position: c.read_position,
            end: c.end,
            lag: c.lag,
            in_flight: c.in_flight,
            checkpoint_at: (c.checkpoint_at_ms > 0).then(|| format_millis(c.checkpoint_at_ms)),
        }
    }
}

/// Every consumer running in the cluster (for `GET /cluster`); empty when the other nodes do
/// not answer within 2 s.
pub async fn consumers(app: &App) -> Vec<ConsumerBody> {
    let ask = app
        .ingest
        .consumers()
        .instrument(tracing::info_span!("ingest_consumers"));
    tokio::time::timeout(CONSUMERS_WAIT, ask)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(ConsumerBody::from)
        .collect()
}

/// The `{name}` of a subscription route, checked; recorded on the request's span.
fn name_of(p: &PathParams) -> Result<String, ApiError> {
    let name = p.get("name");
    tracing::Span::current().record("subscription", name);
    check_name(name).map_err(|e| ApiError::bad_request("invalid_subscription", e.to_string()))?;
    Ok(name.to_string())
}

/// A definition from the body: 400 `bad_json` when it is not JSON, `invalid_subscription`
/// naming the field when it is not a definition.
fn spec_of(body: &[u8]) -> Result<SubscriptionSpec, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::bad_request("bad_json", format!("the body is not valid JSON: {inner}"))
        } else if path.is_empty() || path == "." {
            ApiError::bad_request("invalid_subscription", format!("the definition: {inner}"))
        } else {
            ApiError::bad_request("invalid_subscription", format!("{path}: {inner}"))
        }
    })
}

/// `PUT /subscriptions/{name}`: creates (201) or replaces (200; also when unchanged) a
/// subscription. The definition is checked (every field, and that the entity type runs here in
/// Rust with the operation) and stored; no broker is contacted: a source that cannot be reached
/// shows in the subscription's `error`.
pub async fn put(
    State(app): State<App>,
    path: PathParams,
    BodyBytes(body): BodyBytes,
) -> Result<Response, ApiError> {
    let name = name_of(&path)?;
    let spec = spec_of(&body)?;
    let span = tracing::info_span!("subscription_put", subscription = %name);
    let (s, created) = app.ingest.put(&name, spec).instrument(span).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(SubscriptionBody::from(s))).into_response())
}

/// `{"subscriptions": [...]}`.
#[derive(Debug, Serialize)]
pub struct ListBody {
    /// Every subscription, by name.
    pub subscriptions: Vec<SubscriptionBody>,
}

/// `GET /subscriptions`: every subscription, by name.
pub async fn list(State(app): State<App>) -> Result<Json<ListBody>, ApiError> {
    let subscriptions = app
        .ingest
        .list()?
        .into_iter()
        .map(SubscriptionBody::from)
        .collect();
    Ok(Json(ListBody { subscriptions }))
}

/// `GET /subscriptions/{name}`: the subscription and its progress, gathered from the leaders of
/// its home partitions.
pub async fn get(State(app): State<App>, path: PathParams) -> Result<Json<StatusBody>, ApiError> {
    let name = name_of(&path)?;
    let span = tracing::info_span!("subscription_status", subscription = %name);
    let status = app.ingest.status(&name).instrument(span).await?;
    Ok(Json(status.into()))
}

/// `?limit=N`.
#[derive(Debug, Deserialize)]
pub struct DeadLetterQuery {
    limit: Option<u32>,
}

/// `{"dead_letters": [...]}`.
#[derive(Debug, Serialize)]
pub struct DeadLettersBody {
    /// By source partition and position.
    pub dead_letters: Vec<DeadLetterBody>,
}

/// `GET /subscriptions/{name}/dead-letters?limit=N`: at most `limit` dead letters (default 100,
/// at most 1000), by source partition and position.
pub async fn dead_letters(
    State(app): State<App>,
    path: PathParams,
    QueryParams(q): QueryParams<DeadLetterQuery>,
) -> Result<Json<DeadLettersBody>, ApiError> {
    let name = name_of(&path)?;
    let limit = match q.limit {
        Some(0) => {
            return Err(ApiError::bad_request(
                "bad_query",
                "limit must be at least 1",
            ))
        }
        Some(n) => n.min(MAX_DEAD_LETTERS),
        None => DEFAULT_DEAD_LETTERS,
    };
    let span = tracing::info_span!("subscription_dead_letters", subscription = %name, limit);
    let mut got = app
        .ingest
        .dead_letters(&name, limit)
        .instrument(span)
        .await?;
    got.truncate(limit as usize);
    Ok(Json(DeadLettersBody {
        dead_letters: got.into_iter().map(DeadLetterBody::from).collect(),
    }))
}

async fn set_paused(
    app: &App,
    name: &str,
    paused: bool,
) -> Result<Json<SubscriptionBody>, ApiError> {
    let span = tracing::info_span!("subscription_pause", subscription = %name, paused);
    let s = app.ingest.pause(name, paused).instrument(span).await?;
    Ok(Json(s.into()))
}

/// `POST /subscriptions/{name}/pause`: its consumers stop; the source keeps the records.
pub async fn pause(
    State(app): State<App>,
    path: PathParams,
) -> Result<Json<SubscriptionBody>, ApiError> {
    let name = name_of(&path)?;
    set_paused(&app, &name, true).await
}

/// `POST /subscriptions/{name}/resume`: its consumers start again from their checkpoints.
pub async fn resume(
    State(app): State<App>,
    path: PathParams,
) -> Result<Json<SubscriptionBody>, ApiError> {
    let name = name_of(&path)?;
    set_paused(&app, &name, false).await
}

/// `DELETE /subscriptions/{name}`: 204; its consumers stop, its checkpoints are forgotten.
pub async fn delete(State(app): State<App>, path: PathParams) -> Result<StatusCode, ApiError> {
    let name = name_of(&path)?;
    let span = tracing::info_span!("subscription_delete", subscription = %name);
    app.ingest.delete(&name).instrument(span).await?;
    Ok(StatusCode::NO_CONTENT)
}
