//! Request extractors whose every rejection is an [`ApiError`] (JSON), never a panic.

use super::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use perdure_types::EntityId;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The `{name}/{key}` of an entity route, validated; recorded on the request's span.
#[derive(Debug)]
pub struct EntityPath(pub EntityId);

impl<S: Send + Sync> FromRequestParts<S> for EntityPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path((name, key)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request("bad_path", e.body_text()))?;
        let span = tracing::Span::current();
        span.record("entity_name", name.as_str());
        span.record("entity_key", key.as_str());
        Ok(Self(EntityId::new(&name, &key)?))
    }
}

/// The `{name}` of an entity-type route, validated like an entity id's name.
#[derive(Debug)]
pub struct EntityName(pub String);

impl<S: Send + Sync> FromRequestParts<S> for EntityName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(name) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request("bad_path", e.body_text()))?;
        tracing::Span::current().record("entity_name", name.as_str());
        // A name is valid when it makes a valid id with some key.
        let id = EntityId::new(&name, "-")?;
        Ok(Self(id.name().to_string()))
    }
}

/// A route's path parameters by name (percent-decoded); a malformed one is a 400 `bad_path`.
#[derive(Debug)]
pub struct PathParams(pub std::collections::HashMap<String, String>);

impl PathParams {
    /// Parameter `name` of the route (empty if the route has none of that name).
    pub fn get(&self, name: &str) -> &str {
        self.0.get(name).map(String::as_str).unwrap_or_default()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PathParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<std::collections::HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map(|Path(m)| Self(m))
            .map_err(|e| ApiError::bad_request("bad_path", e.body_text()))
    }
}

/// Query parameters; a malformed query string is a 400 `bad_query`.
#[derive(Debug)]
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| Self(q))
            .map_err(|e| ApiError::bad_request("bad_query", e.body_text()))
    }
}

/// Reads the whole body within the configured limit (413 `body_too_large` past it) and time
/// (408 `body_timeout` past `http.body_read_timeout_ms`).
async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the request body is larger than http.max_body_bytes",
            )
        } else if timed_out(&e) {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                "the request body did not arrive within http.body_read_timeout_ms",
            )
        } else {
            ApiError::bad_request("bad_body", e.body_text())
        }
    })
}

/// Whether reading the body failed because it took longer than the body timeout.
fn timed_out(e: &axum::extract::rejection::BytesRejection) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        source = s.source();
    }
    false
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request("bad_json", format!("the body is not valid JSON: {e}")))
}

/// An optional JSON body (an operation's input): empty → `None`. The content type is not
/// checked, so `curl -d 5` works.
#[derive(Debug)]
pub struct OptionalJson(pub Option<Value>);

impl<S: Send + Sync> FromRequest<S> for OptionalJson {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = body_bytes(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(None));
        }
        parse_json(&bytes).map(|v| Self(Some(v)))
    }
}

/// The whole body, read within the configured limit and time (for a handler that parses it
/// itself).
#[derive(Debug)]
pub struct BodyBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for BodyBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        body_bytes(req, state).await.map(Self)
    }
}

/// A required JSON body of type `T`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = body_bytes(req, state).await?;
        parse_json(&bytes).map(Self)
    }
}
