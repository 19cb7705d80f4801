//! Orchestration routes, Durable Functions' instance management API under [`super::BASE`]:
//! start, status, wait (a perdure extension), list, raise event, terminate, suspend, resume,
//! rewind, restart, purge (one instance or by filter).
//!
//! | route | answer |
//! |---|---|
//! | `POST /orchestrators/{name}[/{instanceId}]` | 202, `Location` and the management URLs |
//! | `GET /instances/{id}` | the status: 202 (with `Location`) while not finished, 200 when finished |
//! | `GET /instances/{id}/wait?timeoutMs=N` | the same, once finished or after N ms |
//! | `GET /instances` | a page of statuses, `x-ms-continuation-token` for the next |
//! | `POST /instances/{id}/raiseEvent/{eventName}`, `/terminate`, `/suspend`, `/resume`, `/rewind` | 202 |
//! | `POST /instances/{id}/restart` | 202 with the management URLs of the (new) instance |
//! | `DELETE /instances/{id}`, `DELETE /instances?filter` | 200 `{"instancesDeleted": n}` |
//!
//! Errors are the API's JSON errors; their statuses come from [`super::error`] (404 unknown
//! instance, 410 finished instance, 409 an existing id or a wrong status, 413 a payload over
//! `orchestrations.max_payload_bytes`, 400 a bad request).

use super::entities::FORWARDED_HEADER;
use super::error::{rewind_error, ApiError};
use super::extract::{OptionalJson, PathParams, QueryParams};
use super::{App, BASE, CONTINUATION_HEADER};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use perdure_runtime::orchestrations::{
    InstanceFilter, InstanceStatus, Query, StartRequest, MAX_QUERY_PAGE,
};
use perdure_types::api::{FailureInfo, InstanceStatusBody, InstanceUrls, PurgeResult};
use perdure_types::command::Millis;
use perdure_types::orchestration::{
    EventKind, FailureDetails, HistoryEvent, ParentInstance, ReusePolicy, RuntimeStatus,
};
use perdure_types::time::{format_millis, parse_rfc3339};
use perdure_types::{InstanceId, Target};
use serde::{Deserialize, Deserializer};
use serde_json::{json, Map, Value};
use std::time::Duration;

/// `timeoutMs` of a wait when none is given.
pub const DEFAULT_WAIT_MS: u64 = 30_000;
/// Longest `timeoutMs` of a wait; a longer one is lowered to it.
pub const MAX_WAIT_MS: u64 = 300_000;
/// Page size of an instance listing when `top` is not given.
pub const DEFAULT_TOP: u32 = 100;
/// Longest orchestrator version, and longest `instanceIdPrefix`, in bytes.
pub const MAX_TEXT_PARAM: usize = 256;

/// A query-string boolean, `true`/`false` in any case (Durable Functions' clients send `True`).
fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    let s = String::deserialize(d)?;
    if s.eq_ignore_ascii_case("true") {
        Ok(Some(true))
    } else if s.eq_ignore_ascii_case("false") {
        Ok(Some(false))
    } else {
        Err(serde::de::Error::custom(format!(
            "expected true or false, got {s:?}"
        )))
    }
}

fn bad_query(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("bad_query", message)
}

/// The API's base URL as the client reached it: the scheme this port serves and the request's
/// `Host` (Durable Functions writes its management URLs from the request's URL).
fn api_base(app: &App, headers: &HeaderMap) -> String {
    let scheme = if app.http.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or("localhost");
    format!("{scheme}://{host}{BASE}")
}

/// Records the instance (and its partition, for a valid id) on the request's span; answers
/// `x-perdure-forwarded: true` when this node does not lead that partition (a routing client
/// learns its table is out of date).
fn locate(app: &App, id: &str) -> Option<(&'static str, &'static str)> {
    let span = tracing::Span::current();
    span.record("instance", id);
    let id = InstanceId::new(id).ok()?;
    let p = Target::Instance(id).partition(app.cluster.count());
    span.record("partition", p);
    (!app.cluster.is_leader(p)).then_some((FORWARDED_HEADER, "true"))
}

/// `response` with the `x-perdure-forwarded` header when `forwarded` says so.
fn with_forwarded(
    mut response: Response,
    forwarded: Option<(&'static str, &'static str)>,
) -> Response {
    if let Some((k, v)) = forwarded {
        response
            .headers_mut()
            .insert(k, HeaderValue::from_static(v));
    }
    response
}

/// `Location: url` on `response` (omitted in the impossible case that it is not a header value).
fn with_location(mut response: Response, url: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(url) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

/// 202 with `Location` (the status URL) and the management URLs of instance `id`.
fn accepted_with_urls(base: &str, id: &str) -> Response {
    let urls = InstanceUrls::new(base, id);
    let location = urls.status_query_get_uri.clone();
    with_location(
        (StatusCode::ACCEPTED, Json(urls)).into_response(),
        &location,
    )
}

fn parse_time(param: &str, text: &str) -> Result<Millis, ApiError> {
    parse_rfc3339(text).map_err(|e| bad_query(format!("{param}: {e}")))
}

/// `Completed,Failed` as statuses (case-insensitive; empty items skipped).
fn parse_statuses(param: &str, text: &str) -> Result<Vec<RuntimeStatus>, ApiError> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|e| bad_query(format!("{param}: {e}"))))
        .collect()
}

/// `reusePolicy`: the statuses an existing instance may have for a start to replace it, or
/// `none`.
fn parse_policy(text: &str) -> Result<ReusePolicy, ApiError> {
    let replaceable = if text.trim().eq_ignore_ascii_case("none") {
        Vec::new()
    } else {
        parse_statuses("reusePolicy", text)?
    };
    Ok(ReusePolicy {
        replaceable,
        ignore_if_running: false,
    })
}

fn check_len(param: &str, text: &str) -> Result<(), ApiError> {
    if text.len() > MAX_TEXT_PARAM {
        return Err(bad_query(format!(
            "{param} is {} bytes long; the limit is {MAX_TEXT_PARAM}",
            text.len()
        )));
    }
    Ok(())
}

/// `?scheduledStartTime=..&reusePolicy=..&version=..` (perdure extensions of a start).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartQuery {
    scheduled_start_time: Option<String>,
    reuse_policy: Option<String>,
    version: Option<String>,
}

/// `POST /orchestrators/{name}[/{instanceId}]`: starts an instance; 202 with `Location` and
/// the management URLs.
pub async fn start(
    State(app): State<App>,
    path: PathParams,
    QueryParams(q): QueryParams<StartQuery>,
    headers: HeaderMap,
    OptionalJson(input): OptionalJson,
) -> Result<Response, ApiError> {
    let name = path.get("name").to_string();
    let instance_id = path.0.get("instanceId").cloned();
    let forwarded = instance_id.as_deref().and_then(|id| locate(&app, id));
    let scheduled_start = q
        .scheduled_start_time
        .as_deref()
        .map(|t| parse_time("scheduledStartTime", t))
        .transpose()?;
    let policy = match q.reuse_policy.as_deref() {
        Some(p) => parse_policy(p)?,
        None => ReusePolicy::default(),
    };
    if let Some(v) = &q.version {
        check_len("version", v)?;
    }
    let started = app
        .orchestrations
        .start(StartRequest {
            name,
            instance_id,
            input,
            scheduled_start,
            policy,
            version: q.version,
        })
        .await?;
    let id = started.instance_id.as_str();
    let forwarded = forwarded.or_else(|| locate(&app, id));
    Ok(with_forwarded(
        accepted_with_urls(&api_base(&app, &headers), id),
        forwarded,
    ))
}

/// What a status answer shows.
#[derive(Debug, Clone, Copy)]
struct Shown {
    history: bool,
    history_output: bool,
    input: bool,
    error_on_failure: bool,
}

/// `?showHistory=..&showHistoryOutput=..&showInput=..&returnInternalServerErrorOnFailure=..`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusQuery {
    #[serde(default, deserialize_with = "flag")]
    show_history: Option<bool>,
    #[serde(default, deserialize_with = "flag")]
    show_history_output: Option<bool>,
    #[serde(default, deserialize_with = "flag")]
    show_input: Option<bool>,
    #[serde(default, deserialize_with = "flag")]
    return_internal_server_error_on_failure: Option<bool>,
}

impl StatusQuery {
    fn shown(&self) -> Shown {
        Shown {
            history: self.show_history.unwrap_or(false),
            history_output: self.show_history_output.unwrap_or(false),
            input: self.show_input.unwrap_or(true),
            error_on_failure: self
                .return_internal_server_error_on_failure
                .unwrap_or(false),
        }
    }
}

/// `GET /instances/{instanceId}`: the status; 202 (with `Location`) while the instance has not
/// finished, 200 once it has (500 for a failed one with `returnInternalServerErrorOnFailure`).
pub async fn status(
    State(app): State<App>,
    path: PathParams,
    QueryParams(q): QueryParams<StatusQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = path.get("instanceId");
    let forwarded = locate(&app, id);
    let shown = q.shown();
    let s = app.orchestrations.status(id, shown.history).await?;
    Ok(with_forwarded(
        status_answer(&api_base(&app, &headers), s, shown),
        forwarded,
    ))
}

/// `?timeoutMs=N` and the status query's parameters.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaitQuery {
    timeout_ms: Option<u64>,
    #[serde(default, deserialize_with = "flag")]
    show_history: Option<bool>,
    #[serde(default, deserialize_with = "flag")]
    show_history_output: Option<bool>,
    #[serde(default, deserialize_with = "flag")]
    show_input: Option<bool>,
    #[serde(default, deserialize_with = "flag")]
    return_internal_server_error_on_failure: Option<bool>,
}

/// `GET /instances/{instanceId}/wait?timeoutMs=N` (perdure extension): waits until the
/// instance finishes or `N` ms (default 30 000, at most 300 000) pass; answers as
/// [`status`] then.
pub async fn wait(
    State(app): State<App>,
    path: PathParams,
    QueryParams(q): QueryParams<WaitQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = path.get("instanceId");
    let forwarded = locate(&app, id);
    let shown = StatusQuery {
        show_history: q.show_history,
        show_history_output: q.show_history_output,
        show_input: q.show_input,
        return_internal_server_error_on_failure: q.return_internal_server_error_on_failure,
    }
    .shown();
    let timeout = Duration::from_millis(q.timeout_ms.unwrap_or(DEFAULT_WAIT_MS).min(MAX_WAIT_MS));
    let s = app.orchestrations.wait(id, timeout, shown.history).await?;
    Ok(with_forwarded(
        status_answer(&api_base(&app, &headers), s, shown),
        forwarded,
    ))
}

/// A status as Durable Functions answers it: the body, and 200, 202 (with `Location`) or 500.
fn status_answer(base: &str, s: InstanceStatus, shown: Shown) -> Response {
    let id = s.record.instance_id.to_string();
    let code = match s.record.status {
        RuntimeStatus::Failed if shown.error_on_failure => StatusCode::INTERNAL_SERVER_ERROR,
        st if st.is_terminal() => StatusCode::OK,
        _ => StatusCode::ACCEPTED,
    };
    let resp = (code, Json(status_body(s, shown))).into_response();
    if code == StatusCode::ACCEPTED {
        with_location(resp, &InstanceUrls::new(base, &id).status_query_get_uri)
    } else {
        resp
    }
}

/// A stored JSON payload (JSON text) as a JSON value; text that is not JSON as a string.
fn payload(text: Option<&str>) -> Value {
    match text {
        None => Value::Null,
        Some(t) => serde_json::from_str(t).unwrap_or_else(|_| Value::String(t.to_string())),
    }
}

fn status_body(s: InstanceStatus, shown: Shown) -> InstanceStatusBody {
    let r = s.record;
    let output = match (&r.output, &r.failure) {
        (Some(o), _) => payload(Some(o)),
        (None, Some(f)) if r.status == RuntimeStatus::Failed => Value::String(f.message.clone()),
        _ => Value::Null,
    };
    InstanceStatusBody {
        name: r.name,
        instance_id: r.instance_id.to_string(),
        runtime_status: r.status,
        input: shown.input.then(|| payload(r.input.as_deref())),
        custom_status: payload(r.custom_status.as_deref()),
        output,
        created_time: format_millis(r.created_at),
        last_updated_time: format_millis(r.updated_at),
        execution_id: r.execution_id,
        history_event_count: r.history_events,
        history_size_bytes: r.history_bytes,
        failure_details: r.failure.map(|f| FailureInfo {
            error_type: f.error_type,
            error_message: f.message,
            stack_trace: f.stack_trace,
        }),
        history_events: s.history.filter(|_| shown.history).map(|h| {
            h.iter()
                .map(|e| history_event(e, shown.history_output))
                .collect()
        }),
    }
}

/// A failure in a history event, Durable Task's way (`ErrorType`, `ErrorMessage`, ...).
fn failure_json(f: &FailureDetails) -> Value {
    json!({
        "ErrorType": f.error_type,
        "ErrorMessage": f.message,
        "StackTrace": f.stack_trace,
        "InnerFailure": f.inner.as_deref().map(failure_json),
        "IsNonRetriable": f.non_retriable,
    })
}

fn parent_json(p: &ParentInstance) -> Value {
    json!({
        "InstanceId": p.instance_id.as_str(),
        "ExecutionId": p.execution_id,
        "Name": p.name,
        "TaskScheduledId": p.task_id,
    })
}

/// One history event as an object: `EventType` (Durable Task's name), `Timestamp`, `EventId`
/// and the event's fields in Durable Functions' PascalCase. Payloads (`Input`, `Result`,
/// `Output`) only with `outputs` (`showHistoryOutput`), as Durable Functions does.
pub fn history_event(e: &HistoryEvent, outputs: bool) -> Value {
    let mut m = Map::new();
    m.insert("EventType".into(), json!(e.kind_name()));
    m.insert("Timestamp".into(), json!(format_millis(e.timestamp)));
    m.insert("EventId".into(), json!(e.event_id));
    let mut fields: Vec<(&str, Value)> = Vec::new();
    let mut payloads: Vec<(&str, &Option<String>)> = Vec::new();
    match &e.kind {
        EventKind::ExecutionStarted {
            name,
            version,
            input,
            parent,
            scheduled_start,
            execution_id,
        } => {
            payloads.push(("Input", input));
            fields.push(("Name", json!(name)));
            fields.push(("Version", json!(version)));
            fields.push(("ExecutionId", json!(execution_id)));
            fields.push((
                "ParentInstance",
                parent.as_ref().map_or(Value::Null, parent_json),
            ));
            fields.push((
                "ScheduledStartTime",
                scheduled_start.map_or(Value::Null, |t| json!(format_millis(t))),
            ));
        }
        EventKind::ExecutionCompleted {
            status,
            result,
            failure,
        } => {
            payloads.push(("Result", result));
            fields.push(("OrchestrationStatus", json!(status.as_str())));
            fields.push((
                "FailureDetails",
                failure.as_ref().map_or(Value::Null, failure_json),
            ));
        }
        EventKind::ExecutionTerminated { reason, recurse } => {
            fields.push(("Reason", payload(reason.as_deref())));
            fields.push(("Recurse", json!(recurse)));
        }
        EventKind::TaskScheduled { name, input } => {
            payloads.push(("Input", input));
            fields.push(("Name", json!(name)));
        }
        EventKind::TaskCompleted {
            scheduled_id,
            result,
        }
        | EventKind::SubOrchestrationCompleted {
            scheduled_id,
            result,
        } => {
            payloads.push(("Result", result));
            fields.push(("TaskScheduledId", json!(scheduled_id)));
        }
        EventKind::TaskFailed {
            scheduled_id,
            failure,
        }
        | EventKind::SubOrchestrationFailed {
            scheduled_id,
            failure,
        } => {
            fields.push(("TaskScheduledId", json!(scheduled_id)));
            fields.push(("FailureDetails", failure_json(failure)));
        }
        EventKind::SubOrchestrationCreated {
            name,
            instance_id,
            input,
        } => {
            payloads.push(("Input", input));
            fields.push(("Name", json!(name)));
            fields.push(("InstanceId", json!(instance_id.as_str())));
        }
        EventKind::TimerCreated { fire_at } => {
            fields.push(("FireAt", json!(format_millis(*fire_at))));
        }
        EventKind::TimerFired { timer_id, fire_at } => {
            fields.push(("TimerId", json!(timer_id)));
            fields.push(("FireAt", json!(format_millis(*fire_at))));
        }
        EventKind::OrchestratorStarted | EventKind::OrchestratorCompleted => {}
        EventKind::EventSent {
            instance_id,
            name,
            input,
        } => {
            payloads.push(("Input", input));
            fields.push(("InstanceId", json!(instance_id.as_str())));
            fields.push(("Name", json!(name)));
        }
        EventKind::EventRaised { name, input } => {
            payloads.push(("Input", input));
            fields.push(("Name", json!(name)));
        }
        EventKind::ContinueAsNew { input } => payloads.push(("Input", input)),
        EventKind::ExecutionSuspended { reason }
        | EventKind::ExecutionResumed { reason }
        | EventKind::ExecutionRewound { reason } => {
            fields.push(("Reason", json!(reason)));
        }
        EventKind::EntityOperationSignaled {
            request_id,
            target,
            operation,
            input,
            scheduled_time,
        } => {
            payloads.push(("Input", input));
            fields.push(("RequestId", json!(request_id)));
            fields.push(("TargetInstanceId", json!(target)));
            fields.push(("Operation", json!(operation)));
            fields.push((
                "ScheduledTime",
                scheduled_time.map_or(Value::Null, |t| json!(format_millis(t))),
            ));
        }
        EventKind::EntityOperationCalled {
            request_id,
            target,
            operation,
            input,
        } => {
            payloads.push(("Input", input));
            fields.push(("RequestId", json!(request_id)));
            fields.push(("TargetInstanceId", json!(target)));
            fields.push(("Operation", json!(operation)));
        }
        EventKind::EntityOperationCompleted { request_id, output } => {
            payloads.push(("Output", output));
            fields.push(("RequestId", json!(request_id)));
        }
        EventKind::EntityOperationFailed {
            request_id,
            failure,
        } => {
            fields.push(("RequestId", json!(request_id)));
            fields.push(("FailureDetails", failure_json(failure)));
        }
        EventKind::EntityLockRequested {
            critical_section_id,
            lock_set,
        } => {
            fields.push(("CriticalSectionId", json!(critical_section_id)));
            fields.push(("LockSet", json!(lock_set)));
        }
        EventKind::EntityLockGranted {
            critical_section_id,
        } => fields.push(("CriticalSectionId", json!(critical_section_id))),
        EventKind::EntityUnlockSent {
            critical_section_id,
            target,
        } => {
            fields.push(("CriticalSectionId", json!(critical_section_id)));
            fields.push(("TargetInstanceId", json!(target)));
        }
    }
    for (k, v) in fields {
        m.insert(k.to_string(), v);
    }
    if outputs {
        for (k, v) in payloads {
            m.insert(k.to_string(), payload(v.as_deref()));
        }
    }
    Value::Object(m)
}

/// The filter parameters of a listing and of a purge by filter.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FilterQuery {
    runtime_status: Option<String>,
    created_time_from: Option<String>,
    created_time_to: Option<String>,
    instance_id_prefix: Option<String>,
    #[serde(default, deserialize_with = "flag")]
    poisoned: Option<bool>,
}

impl FilterQuery {
    fn filter(&self) -> Result<InstanceFilter, ApiError> {
        if let Some(p) = &self.instance_id_prefix {
            check_len("instanceIdPrefix", p)?;
        }
        Ok(InstanceFilter {
            statuses: match &self.runtime_status {
                Some(s) => parse_statuses("runtimeStatus", s)?,
                None => Vec::new(),
            },
            created_from: self
                .created_time_from
                .as_deref()
                .map(|t| parse_time("createdTimeFrom", t))
                .transpose()?,
            created_to: self
                .created_time_to
                .as_deref()
                .map(|t| parse_time("createdTimeTo", t))
                .transpose()?,
            prefix: self.instance_id_prefix.clone().filter(|p| !p.is_empty()),
            poisoned: self.poisoned.unwrap_or(false),
        })
    }
}

/// A listing's parameters: the filter, `top`, `showInput`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    runtime_status: Option<String>,
    created_time_from: Option<String>,
    created_time_to: Option<String>,
    instance_id_prefix: Option<String>,
    #[serde(default, deserialize_with = "flag")]
    poisoned: Option<bool>,
    top: Option<u32>,
    #[serde(default, deserialize_with = "flag")]
    show_input: Option<bool>,
}

/// `GET /instances`: a page (JSON array) of the statuses the filter selects, in partition then
/// instance-id order; `x-ms-continuation-token` (in and out) for the next page.
pub async fn list(
    State(app): State<App>,
    QueryParams(q): QueryParams<ListQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let filter = FilterQuery {
        runtime_status: q.runtime_status,
        created_time_from: q.created_time_from,
        created_time_to: q.created_time_to,
        instance_id_prefix: q.instance_id_prefix,
        poisoned: q.poisoned,
    }
    .filter()?;
    let page_size = match q.top {
        Some(0) => return Err(bad_query("top must be at least 1")),
        Some(n) => n.min(MAX_QUERY_PAGE),
        None => DEFAULT_TOP,
    };
    let continuation = headers
        .get(CONTINUATION_HEADER)
        .map(|v| {
            v.to_str().map(str::to_string).map_err(|_| {
                ApiError::bad_request(
                    "bad_continuation",
                    "the x-ms-continuation-token header must be visible ASCII",
                )
            })
        })
        .transpose()?
        .filter(|c| !c.is_empty());
    let page = app
        .orchestrations
        .query(Query {
            filter,
            page_size,
            continuation,
        })
        .await?;
    let shown = Shown {
        history: false,
        history_output: false,
        input: q.show_input.unwrap_or(true),
        error_on_failure: false,
    };
    let body: Vec<InstanceStatusBody> = page
        .instances
        .into_iter()
        .map(|record| {
            status_body(
                InstanceStatus {
                    record,
                    history: None,
                },
                shown,
            )
        })
        .collect();
    let mut resp = Json(body).into_response();
    if let Some(next) = page
        .continuation
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
    {
        resp.headers_mut().insert(CONTINUATION_HEADER, next);
    }
    Ok(resp)
}

/// `DELETE /instances?filter`: purges every finished instance the filter selects; 200 with how
/// many, 404 when none (as Durable Functions). A filter is required (Durable Functions requires
/// `createdTimeFrom`): an empty one is 400, so a stray request cannot purge everything.
pub async fn purge_where(
    State(app): State<App>,
    QueryParams(q): QueryParams<FilterQuery>,
) -> Result<Json<PurgeResult>, ApiError> {
    let filter = q.filter()?;
    if filter == InstanceFilter::default() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "a purge by filter needs at least one of runtimeStatus, createdTimeFrom, createdTimeTo, \
             instanceIdPrefix, poisoned (to purge every finished instance: \
             runtimeStatus=Completed,Failed,Terminated)",
        ));
    }
    let n = app.orchestrations.purge_where(filter).await?;
    if n == 0 {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "instance_not_found",
            "no finished instance matches the filter (running, pending and suspended instances are never purged)",
        ));
    }
    Ok(Json(PurgeResult {
        instances_deleted: n,
    }))
}

/// `?recursive=true`.
#[derive(Debug, Deserialize)]
pub struct RecursiveQuery {
    #[serde(default, deserialize_with = "flag")]
    recursive: Option<bool>,
}

/// `DELETE /instances/{instanceId}[?recursive=true]`: purges a finished instance (and, with
/// `recursive`, the sub-orchestrations it started); 200 `{"instancesDeleted": n}`, 404 unknown,
/// 409 not finished.
pub async fn purge(
    State(app): State<App>,
    path: PathParams,
    QueryParams(q): QueryParams<RecursiveQuery>,
) -> Result<Response, ApiError> {
    let id = path.get("instanceId");
    let forwarded = locate(&app, id);
    let n = app
        .orchestrations
        .purge(id, q.recursive.unwrap_or(false))
        .await?;
    Ok(with_forwarded(
        Json(PurgeResult {
            instances_deleted: n,
        })
        .into_response(),
        forwarded,
    ))
}

/// `POST /instances/{instanceId}/raiseEvent/{eventName}` (body: the event's data): 202; 404
/// unknown instance, 410 finished.
pub async fn raise_event(
    State(app): State<App>,
    path: PathParams,
    OptionalJson(data): OptionalJson,
) -> Result<Response, ApiError> {
    let id = path.get("instanceId");
    let forwarded = locate(&app, id);
    app.orchestrations
        .raise_event(id, path.get("eventName"), data)
        .await?;
    Ok(with_forwarded(
        StatusCode::ACCEPTED.into_response(),
        forwarded,
    ))
}

/// `?reason=TEXT[&recursive=true]`.
#[derive(Debug, Deserialize)]
pub struct ReasonQuery {
    reason: Option<String>,
    #[serde(default, deserialize_with = "flag")]
    recursive: Option<bool>,
}

/// `POST /instances/{instanceId}/terminate?reason=..[&recursive=true]`: 202; 404 unknown, 410
/// finished.
pub async fn terminate(
    State(app): State<App>,
    path: PathParams,
    QueryParams(q): QueryParams<ReasonQuery>,
) -> Result<Response, ApiError> {
    let id = path.get("instanceId");
    let forwarded = locate(&app, id);
    app.orchestrations
        .terminate(
            id,
            q.reason.map(Value::String),
            q.recursive.unwrap_or(false),
        )
        .await?;
    Ok(with_forwarded(
        StatusCode::ACCEPTED.into_response(),
        forwarded,
    ))
}

/// `POST /instances/{instanceId}/suspend?reason=..`: 202; 404 unknown, 410 finished.
pub async fn suspend(
    State(app): State<App>,
    path: PathParams,
    QueryParams(q): QueryParams<ReasonQuery>,
) -> Result<Response, ApiError> {
    let id = path.get("instanceId");
    let forwarded = locate(&app, id);
    app.orchestrations.suspend(id, q.reason).await?;
    Ok(with_forwarded(
        StatusCode::ACCEPTED.into_response(),
        forwarded,
    ))
}

/// `POST /instances/{instanceId}/resume?reason=..`: 202; 404 unknown, 410 finished.
pub async fn resume(
    State(app): State<App>,
    path: PathParams,
    QueryParams(q): QueryParams<ReasonQuery>,
) -> Result<Response, ApiError> {
    let id = path.get("instanceId");
    let forwarded = locate(&app, id);
    app.orchestrations.resume(id, q.reason).await?;
    Ok(with_forwarded(
        StatusCode::ACCEPTED.into_response(),
        forwarded,
    ))
}

/// `POST /instances/{instanceId}/rewind?reason=..`: 202; 404 unknown, 410 when the instance has
/// not failed (as Durable Functions).
pub async fn rewind(
    State(app): State<App>,
    path: PathParams,
    QueryParams(q): QueryParams<ReasonQuery>,
) -> Result<Response, ApiError> {
    let id = path.get("instanceId");
    let forwarded = locate(&app, id);
    // only a failed instance is rewound: said here, before the runtime is asked
    let s = app
        .orchestrations
        .status(id, false)
        .await
        .map_err(rewind_error)?;
    if s.record.status != RuntimeStatus::Failed {
        return Err(rewind_error(perdure_runtime::Error::InstanceState {
            instance: s.record.instance_id,
            status: s.record.status,
            why: "only a failed instance can be rewound".into(),
        }));
    }
    app.orchestrations
        .rewind(id, q.reason)
        .await
        .map_err(rewind_error)?;
    Ok(with_forwarded(
        StatusCode::ACCEPTED.into_response(),
        forwarded,
    ))
}

/// `?restartWithNewInstanceId=true|false` (default true, as Durable Functions).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestartQuery {
    #[serde(default, deserialize_with = "flag")]
    restart_with_new_instance_id: Option<bool>,
}

/// `POST /instances/{instanceId}/restart[?restartWithNewInstanceId=false]`: starts the instance
/// again with its input (under a new id, or replacing it once it finished); 202 with `Location`
/// and the management URLs of the instance started.
pub async fn restart(
    State(app): State<App>,
    path: PathParams,
    QueryParams(q): QueryParams<RestartQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = path.get("instanceId");
    let forwarded = locate(&app, id);
    let started = app
        .orchestrations
        .restart(id, q.restart_with_new_instance_id.unwrap_or(true))
        .await?;
    Ok(with_forwarded(
        accepted_with_urls(&api_base(&app, &headers), started.instance_id.as_str()),
        forwarded,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_and_statuses_parse_case_insensitively() {
        let p = parse_policy("completed, FAILED").unwrap();
        assert_eq!(
            p.replaceable,
            vec![RuntimeStatus::Completed, RuntimeStatus::Failed]
        );
        assert!(parse_policy("None").unwrap().replaceable.is_empty());
        assert_eq!(parse_policy("done").unwrap_err().code, "bad_query");
        assert_eq!(
            parse_statuses("runtimeStatus", "Running,,Pending").unwrap(),
            vec![RuntimeStatus::Running, RuntimeStatus::Pending]
        );
    }

    #[test]
    fn history_events_are_written_in_durable_functions_case_with_json_payloads() {
        let e = HistoryEvent::scheduled(
            2,
            1_714_979_289_123,
            EventKind::TaskScheduled {
                name: "SayHello".into(),
                input: Some("\"Tokyo\"".into()),
            },
        );
        assert_eq!(
            history_event(&e, true),
            json!({"EventType": "TaskScheduled", "Timestamp": "2024-05-06T07:08:09.123Z",
                   "EventId": 2, "Name": "SayHello", "Input": "Tokyo"})
        );
        // without showHistoryOutput no payload
        assert_eq!(history_event(&e, false).get("Input"), None);
        let done = HistoryEvent::new(
            0,
            EventKind::TaskCompleted {
                scheduled_id: 2,
                result: Some("[1,2]".into()),
            },
        );
        let v = history_event(&done, true);
        assert_eq!(
            (v["TaskScheduledId"].clone(), v["Result"].clone()),
            (json!(2), json!([1, 2]))
        );
        assert_eq!(v["EventId"], -1);
    }
}
