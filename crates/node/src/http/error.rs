//! The one error shape of the HTTP API: `{"error":{"code":"...","message":"..."}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use perdure_types::ErrorKind;
use serde::Serialize;
use std::borrow::Cow;

/// An error answered to an HTTP client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A short machine-readable code (`bad_entity_id`, `unavailable`, ...).
    pub code: Cow<'static, str>,
    /// A sentence for people.
    pub message: String,
}

/// The body of an error: `{"code": .., "message": ..}`, also used for batch items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorBody {
    /// See [`ApiError::code`].
    pub code: Cow<'static, str>,
    /// See [`ApiError::message`].
    pub message: String,
}

#[derive(Serialize)]
struct Envelope {
    error: ErrorBody,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: Cow::Borrowed(code),
            message: message.into(),
        }
    }

    /// 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// The code and message, without the status.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code.clone(),
            message: self.message.clone(),
        }
    }
}

impl From<perdure_runtime::Error> for ApiError {
    fn from(e: perdure_runtime::Error) -> Self {
        Self {
            status: status_of_error(e.kind(), e.code()),
            code: Cow::Owned(e.code().to_string()),
            message: e.to_string(),
        }
    }
}

/// The HTTP status of a runtime error of `kind` with `code`: its kind's ([`status_of`]), but for
/// the codes Durable Functions answers otherwise: `instance_finished` (an event, terminate,
/// suspend or resume for an instance that finished) is 410 Gone, `payload_too_large` (an
/// input, event or reason over `orchestrations.max_payload_bytes`) 413. Codes survive
/// forwarding, so a request served by another node's leader gets the same status.
pub fn status_of_error(kind: ErrorKind, code: &str) -> StatusCode {
    match code {
        "instance_finished" => StatusCode::GONE,
        "payload_too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        _ => status_of(kind),
    }
}

/// The error of a rewind: as any runtime error, but `instance_state` (the instance has not
/// failed) is 410 Gone, as Durable Functions answers a rewind of an instance that is not failed.
pub fn rewind_error(e: perdure_runtime::Error) -> ApiError {
    let mut a = ApiError::from(e);
    if a.code == "instance_state" {
        a.status = StatusCode::GONE;
    }
    a
}

/// The HTTP status of each kind of failure: the one place HTTP meets the runtime's errors.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::FailedPrecondition => StatusCode::CONFLICT,
        ErrorKind::OperationFailed => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorKind::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
    }
}

/// The HTTP status of each subscription error: 400 `invalid_subscription` (the message names the
/// field), 404 `subscription_not_found`, 409 `too_many_subscriptions`, 503 `unavailable`.
impl From<perdure_ingest::IngestError> for ApiError {
    fn from(e: perdure_ingest::IngestError) -> Self {
        use perdure_ingest::IngestError as E;
        let (status, code) = match &e {
            E::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_subscription"),
            E::NotFound(_) => (StatusCode::NOT_FOUND, "subscription_not_found"),
            E::TooMany(_) => (StatusCode::CONFLICT, "too_many_subscriptions"),
            E::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        };
        Self::new(status, code, e.to_string())
    }
}

impl From<perdure_types::IdError> for ApiError {
    fn from(e: perdure_types::IdError) -> Self {
        Self::bad_request("bad_entity_id", format!("invalid entity id: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        let mut resp = (
            status,
            Json(Envelope {
                error: ErrorBody {
                    code: self.code,
                    message: self.message,
                },
            }),
        )
            .into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE
            || status == StatusCode::GATEWAY_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
        {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if status == StatusCode::REQUEST_TIMEOUT {
            // the rest of a body that timed out may still be on its way: do not read it as
            // the next request
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_errors_map_to_their_status_class() {
        let e = ApiError::from(perdure_runtime::Error::Unavailable("no leader".into()));
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.code, "unavailable");
        let e = ApiError::from(perdure_runtime::Error::Operation("boom".into()));
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        let e = ApiError::from(perdure_runtime::Error::UnknownEntityType {
            name: "x".into(),
            known: "counter".into(),
        });
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.code, "unknown_entity_type");
    }

    #[test]
    fn a_write_past_its_deadline_is_504_outcome_unknown() {
        let r = ApiError::from(perdure_runtime::Error::DeadlineExceeded {
            partition: 1,
            waited_ms: 10_000,
            write: true,
        });
        assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(r.code, "outcome_unknown");
        assert_eq!(r.into_response().headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn too_many_idempotency_keys_is_429_with_retry_after() {
        let e = ApiError::from(perdure_runtime::Error::TooManyIdempotencyKeys {
            partition: 3,
            max: 10,
            window_ms: 3_600_000,
        });
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.code, "too_many_idempotency_keys");
        assert!(e.message.contains("entities.max_idempotency_keys"));
        assert_eq!(e.into_response().headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn orchestration_errors_answer_as_durable_functions_does() {
        use perdure_runtime::Error as E;
        use perdure_types::orchestration::RuntimeStatus;
        use perdure_types::InstanceId;
        let id = || InstanceId::new("i").unwrap();
        let finished = E::InstanceFinished {
            instance: id(),
            status: RuntimeStatus::Completed,
            what: "events",
        };
        let state = || E::InstanceState {
            instance: id(),
            status: RuntimeStatus::Running,
            why: "x".into(),
        };
        let cases = [
            (E::InstanceNotFound(id()), 404, "instance_not_found"),
            (
                E::InstanceExists {
                    instance: id(),
                    status: RuntimeStatus::Running,
                },
                409,
                "instance_exists",
            ),
            (state(), 409, "instance_state"),
            (
                E::PayloadTooLarge {
                    what: "the input",
                    bytes: 2,
                    max: 1,
                },
                413,
                "payload_too_large",
            ),
            (
                E::UnknownOrchestrator {
                    name: "x".into(),
                    known: "y".into(),
                },
                400,
                "unknown_orchestrator",
            ),
            (E::BadRequest("x".into()), 400, "bad_request"),
        ];
        for (e, status, code) in cases {
            let a = ApiError::from(e);
            assert_eq!((a.status.as_u16(), &*a.code), (status, code));
        }
        // the same through a forwarding node
        let there = E::Remote(finished.to_failure());
        let a = ApiError::from(there);
        assert_eq!((a.status.as_u16(), &*a.code), (410, "instance_finished"));
        assert_eq!(rewind_error(state()).status, StatusCode::GONE);
        assert_eq!(
            rewind_error(E::InstanceNotFound(id())).status,
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn unavailable_says_when_to_retry() {
        let r = ApiError::from(perdure_runtime::Error::Unavailable("x".into())).into_response();
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
    }
}
