//! Entity routes: signal, call, read state, list, batch signal.

use super::error::{ApiError, ErrorBody};
use super::extract::{EntityName, EntityPath, JsonBody, OptionalJson, QueryParams};
use super::{App, CONTINUATION_HEADER};
use crate::metrics::{OpKind, OpMetrics, Outcome};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{AppendHeaders, IntoResponse, Response};
use axum::{Extension, Json};
use perdure_runtime::{SignalOutcome, SignalRequest};
use perdure_types::EntityId;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::sync::Arc;

/// Header carrying a signal's idempotency key.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// Longest idempotency key accepted, in bytes.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 256;
/// Page size of a listing when `top` is not given.
pub const DEFAULT_TOP: u32 = 100;
/// Largest page size of a listing; a larger `top` is lowered to it.
pub const MAX_TOP: u32 = 1000;

/// `?op=NAME`.
#[derive(Debug, Deserialize)]
pub struct OpQuery {
    op: Option<String>,
}

impl OpQuery {
    fn operation(self) -> Result<String, ApiError> {
        match self.op {
            Some(op) if !op.is_empty() => Ok(op),
            _ => Err(ApiError::bad_request(
                "missing_operation",
                "the operation is missing: add ?op=NAME to the URL",
            )),
        }
    }
}

/// The answer to an accepted signal.
#[derive(Debug, Serialize)]
pub struct SignalAck {
    accepted: bool,
    duplicate: bool,
}

impl From<SignalOutcome> for SignalAck {
    fn from(o: SignalOutcome) -> Self {
        Self {
            accepted: true,
            duplicate: o == SignalOutcome::Duplicate,
        }
    }
}

fn check_idempotency_key(key: String) -> Result<String, String> {
    if key.is_empty() {
        Err("the idempotency key is empty".into())
    } else if key.len() > MAX_IDEMPOTENCY_KEY_LEN {
        Err(format!(
            "the idempotency key is {} bytes long; the limit is {MAX_IDEMPOTENCY_KEY_LEN}",
            key.len()
        ))
    } else {
        Ok(key)
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get(IDEMPOTENCY_KEY_HEADER) else {
        return Ok(None);
    };
    let bad = |m: String| ApiError::bad_request("bad_idempotency_key", m);
    let s = v
        .to_str()
        .map_err(|_| bad("the Idempotency-Key header must be visible ASCII".into()))?;
    check_idempotency_key(s.to_string()).map(Some).map_err(bad)
}

/// Set on entity responses from a node that does not lead the entity's partition (it forwarded
/// the request): a routing client learns its table is out of date.
pub const FORWARDED_HEADER: &str = "x-perdure-forwarded";

/// `x-perdure-forwarded: true` when this node does not lead `entity`'s partition.
fn forwarded_header(
    app: &App,
    entity: &perdure_types::EntityId,
) -> AppendHeaders<Option<(&'static str, &'static str)>> {
    let p = app.cluster.partition_of(entity);
    tracing::Span::current().record("partition", p);
    AppendHeaders((!app.cluster.is_leader(p)).then_some((FORWARDED_HEADER, "true")))
}

/// `POST /entities/{name}/{key}?op=OP`: signal; 202 once durable.
pub async fn signal(
    State(app): State<App>,
    EntityPath(entity): EntityPath,
    QueryParams(q): QueryParams<OpQuery>,
    headers: HeaderMap,
    OptionalJson(input): OptionalJson,
) -> Result<impl IntoResponse, ApiError> {
    let operation = q.operation()?;
    let idempotency_key = idempotency_key(&headers)?;
    let routed = forwarded_header(&app, &entity);
    // the facade checks type, operation and input (once) before anything is written
    let outcome = app
        .entities
        .signal(SignalRequest {
            entity,
            operation,
            input,
            idempotency_key,
        })
        .await?;
    Ok((StatusCode::ACCEPTED, routed, Json(SignalAck::from(outcome))))
}

/// `POST /entities/{name}/{key}/call?op=OP`: run an operation, answer its result.
pub async fn call(
    State(app): State<App>,
    EntityPath(entity): EntityPath,
    QueryParams(q): QueryParams<OpQuery>,
    OptionalJson(input): OptionalJson,
) -> Result<impl IntoResponse, ApiError> {
    let operation = q.operation()?;
    let routed = forwarded_header(&app, &entity);
    let result = app.entities.call(entity, &operation, input).await?;
    Ok((routed, Json(result)))
}

/// `GET /entities/{name}/{key}`: the committed state, 404 if none.
pub async fn get(
    State(app): State<App>,
    EntityPath(entity): EntityPath,
) -> Result<impl IntoResponse, ApiError> {
    match app.entities.get(&entity).await? {
        Some(state) => Ok((forwarded_header(&app, &entity), Json(state))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "entity_not_found",
            format!("entity {entity} does not exist (it has no state)"),
        )),
    }
}

/// `?top=N&continuation=TOKEN`.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    top: Option<u32>,
    continuation: Option<String>,
}

/// `GET /entities/{name}`: a page of entities of one type.
pub async fn list(
    State(app): State<App>,
    EntityName(name): EntityName,
    QueryParams(q): QueryParams<ListQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let top = match q.top {
        Some(0) => return Err(ApiError::bad_request("bad_query", "top must be at least 1")),
        Some(n) => n.min(MAX_TOP),
        None => DEFAULT_TOP,
    };
    let from_header = headers
        .get(CONTINUATION_HEADER)
        .map(|v| {
            v.to_str().map(str::to_string).map_err(|_| {
                ApiError::bad_request(
                    "bad_continuation",
                    "the x-ms-continuation-token header must be visible ASCII",
                )
            })
        })
        .transpose()?;
    let continuation = q.continuation.or(from_header).filter(|c| !c.is_empty());
    let page = app
        .entities
        .list(&name, continuation.as_deref(), top as usize)
        .await?;
    let next = page
        .continuation
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok());
    let mut resp = Json(page).into_response();
    if let Some(next) = next {
        resp.headers_mut().insert(CONTINUATION_HEADER, next);
    }
    Ok(resp)
}

/// An input that is `Some` whenever the field is present, `null` included.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// One signal of a batch.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BatchItem {
    name: String,
    key: String,
    op: String,
    #[serde(default, deserialize_with = "present")]
    input: Option<Value>,
    #[serde(default)]
    idempotency_key: Option<String>,
}

/// `{"signals": [...]}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    signals: Vec<BatchItem>,
}

/// One result of a batch: an acknowledgement or an error.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum BatchResult {
    /// Accepted.
    Ack(SignalAck),
    /// Refused or failed.
    Error {
        /// Why.
        error: ErrorBody,
    },
}

/// `{"results": [...]}`, one per signal, in order.
#[derive(Debug, Serialize)]
pub struct BatchResponse {
    results: Vec<BatchResult>,
}

/// Validates one batch item without a round trip: id, operation, input, idempotency key.
fn batch_request(app: &App, item: BatchItem) -> Result<SignalRequest, ApiError> {
    let entity = EntityId::new(&item.name, &item.key)?;
    if item.op.is_empty() {
        return Err(ApiError::bad_request(
            "missing_operation",
            "the operation (op) is empty",
        ));
    }
    let idempotency_key = item
        .idempotency_key
        .map(check_idempotency_key)
        .transpose()
        .map_err(|m| ApiError::bad_request("bad_idempotency_key", m))?;
    app.entities
        .registry()
        .check(&entity, &item.op, item.input.as_ref())?;
    Ok(SignalRequest {
        entity,
        operation: item.op,
        input: item.input,
        idempotency_key,
    })
}

/// `POST /entities:batch`: many signals in one request; one result each, in order.
pub async fn batch(
    State(app): State<App>,
    metrics: Option<Extension<Arc<OpMetrics>>>,
    JsonBody(req): JsonBody<BatchRequest>,
) -> Result<Json<BatchResponse>, ApiError> {
    let started = std::time::Instant::now();
    let metrics = metrics.as_ref().map(|m| m.0.as_ref());
    let max = app.http.max_batch_signals as usize;
    if req.signals.len() > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_signals",
            format!(
                "the batch holds {} signals; the limit (http.max_batch_signals) is {max}",
                req.signals.len()
            ),
        ));
    }
    tracing::Span::current().record("signals", req.signals.len());
    let mut results: Vec<Option<BatchResult>> = Vec::with_capacity(req.signals.len());
    let mut valid = Vec::new();
    // each signal counts as an entity operation (its own type, operation and outcome)
    let mut measured = Vec::with_capacity(if metrics.is_some() {
        req.signals.len()
    } else {
        0
    });
    for item in req.signals {
        if let Some(m) = metrics {
            measured.push(m.resolve(OpKind::Signal, &item.name, &item.op));
        }
        match batch_request(&app, item) {
            Ok(r) => {
                valid.push(r);
                results.push(None);
            }
            Err(e) => results.push(Some(BatchResult::Error { error: e.body() })),
        }
    }
    let mut outcomes = app.entities.signal_batch(valid).await.into_iter();
    let results = results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| match outcomes.next() {
                Some(Ok(o)) => BatchResult::Ack(o.into()),
                Some(Err(e)) => BatchResult::Error {
                    error: ApiError::from(e).body(),
                },
                None => BatchResult::Error {
                    error: ErrorBody {
                        code: "internal".into(),
                        message: "the runtime returned fewer results than signals".into(),
                    },
                },
            })
        })
        .collect::<Vec<_>>();
    let elapsed = started.elapsed();
    for (m, r) in measured.into_iter().zip(&results) {
        let outcome = match r {
            BatchResult::Ack(_) => Outcome::Ok,
            BatchResult::Error { error } => Outcome::of_code(&error.code),
        };
        m.record(outcome, elapsed);
    }
    Ok(Json(BatchResponse { results }))
}
