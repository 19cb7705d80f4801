//! The request-path middleware: every HTTP request by its matched route template, and every
//! entity operation request by the kind its route declares.
//!
//! Nothing here matches a route string or re-parses a path. [`track`] (around the whole app)
//! labels a request with the router's [`MatchedPath`]; [`measure_op`] is attached to each entity
//! handler where its route is declared (`http::router`), with the kind as its state, and takes
//! the entity type from the router's extracted path parameters and the operation from the `op`
//! query parameter. Renaming a route or its parameters cannot detach a metric from it.

use super::ops::{OpKind, OpMetrics, OpRef, Outcome, LATENCY_BUCKETS};
use axum::extract::{FromRequestParts, MatchedPath, Query, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The route label of requests no route matched.
const UNMATCHED: &str = "unmatched";

/// HTTP request counters and latency, and the entity-operation handles handed to the routes.
#[derive(Debug)]
pub struct RequestMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    ops: Arc<OpMetrics>,
}

impl RequestMetrics {
    /// Registers `perdure_http_requests_total{route,method,status}` and
    /// `perdure_http_request_duration_seconds{route,method}` in `registry`.
    pub(super) fn new(registry: &Registry, ops: Arc<OpMetrics>) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                "perdure_http_requests_total",
                "HTTP requests answered, by route template, method and status code.",
            ),
            &["route", "method", "status"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "perdure_http_request_duration_seconds",
                "HTTP request latency (received to response headers), by route template and method.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route", "method"],
        )?;
        registry.register(Box::new(duration.clone()))?;
        Ok(Self {
            requests,
            duration,
            ops,
        })
    }

    /// The entity operation metrics.
    pub fn ops(&self) -> &Arc<OpMetrics> {
        &self.ops
    }

    /// Counts one answered HTTP request.
    pub fn record_http(&self, route: &str, method: &str, status: StatusCode, elapsed: Duration) {
        self.requests
            .with_label_values(&[route, method, status.as_str()])
            .inc();
        self.duration
            .with_label_values(&[route, method])
            .observe(elapsed.as_secs_f64());
    }
}

/// Middleware around the whole app: counts every request by route template ([`MatchedPath`],
/// or `unmatched`), method and status, and hands [`OpMetrics`] to the routes inside (to
/// [`measure_op`] and the batch handler) as a request extension.
pub async fn track(State(m): State<Arc<RequestMetrics>>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = req.method().clone();
    req.extensions_mut().insert(m.ops.clone());
    let resp = next.run(req).await;
    m.record_http(
        route.as_ref().map_or(UNMATCHED, |r| r.as_str()),
        method.as_str(),
        resp.status(),
        started.elapsed(),
    );
    resp
}

/// Middleware on one entity handler, its state the handler's [`OpKind`]: counts the request as
/// an entity operation by type, operation and outcome (from the status), rejections by the
/// handler's extractors included. Passes the request through when metrics are off (no
/// [`OpMetrics`] extension from [`track`]). Costs two small allocations (the path parameters, the
/// operation name) besides the lookup and increments of [`OpMetrics`].
pub async fn measure_op(State(kind): State<OpKind>, req: Request, next: Next) -> Response {
    let Some(ops) = req.extensions().get::<Arc<OpMetrics>>().cloned() else {
        return next.run(req).await;
    };
    let started = Instant::now();
    let (mut parts, body) = req.into_parts();
    let handles = resolve(&ops, kind, &mut parts).await;
    let resp = next.run(Request::from_parts(parts, body)).await;
    handles.record(Outcome::of_status(resp.status()), started.elapsed());
    resp
}

/// The `op` query parameter, parsed as the entity handlers parse it.
#[derive(Debug, Deserialize)]
struct OpParam {
    op: Option<String>,
}

/// The handles of a request to an entity route: its type is the route's first path parameter
/// (positional, as the handlers' `EntityPath` and `EntityName` read it), its operation the `op`
/// query parameter (reads have none). What does not parse is counted as `other`.
async fn resolve<'a>(ops: &'a OpMetrics, kind: OpKind, parts: &mut Parts) -> OpRef<'a> {
    let params = RawPathParams::from_request_parts(parts, &()).await.ok();
    let type_name = params
        .as_ref()
        .and_then(|p| p.iter().next())
        .map_or("", |(_, value)| value);
    let op = match kind {
        OpKind::Read => None,
        OpKind::Signal | OpKind::Call => Query::<OpParam>::try_from_uri(&parts.uri)
            .ok()
            .and_then(|Query(q)| q.op),
    };
    ops.resolve(kind, type_name, op.as_deref().unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::handler::Handler;
    use axum::middleware::from_fn_with_state;
    use axum::routing::{get, post};
    use prometheus::{Encoder, TextEncoder};

    /// A router whose entity routes are spelled nothing like the API's: other templates, other
    /// parameter names; the kinds come with the handlers.
    fn renamed(m: Arc<RequestMetrics>) -> axum::Router {
        axum::Router::new()
            .route(
                "/v2/types/{t}/instances/{id}/signal",
                post(
                    (|| async { StatusCode::ACCEPTED })
                        .layer(from_fn_with_state(OpKind::Signal, measure_op)),
                ),
            )
            .route(
                "/v2/types/{t}/instances/{id}",
                get((|| async { StatusCode::NOT_FOUND })
                    .layer(from_fn_with_state(OpKind::Read, measure_op))),
            )
            .layer(from_fn_with_state(m, track))
    }

    #[tokio::test]
    async fn entity_routes_are_measured_whatever_their_templates_are_named() {
        let registry = Registry::new();
        let types = perdure_runtime::Registry::builtin();
        let ops = Arc::new(OpMetrics::new(&registry, &types).unwrap());
        let m = Arc::new(RequestMetrics::new(&registry, ops).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, renamed(m)).await.unwrap();
        });
        let http = reqwest::Client::new();
        let r = http
            .post(format!("{url}/v2/types/counter/instances/k/signal?op=add"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let r = http
            .get(format!("{url}/v2/types/Counter/instances/k"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        server.abort();

        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        for series in [
            r#"perdure_entity_operations_total{kind="signal",operation="add",outcome="ok",type="counter"} 1"#,
            r#"perdure_entity_operations_total{kind="read",operation="state",outcome="rejected",type="counter"} 1"#,
            r#"perdure_http_requests_total{method="POST",route="/v2/types/{t}/instances/{id}/signal",status="202"} 1"#,
            r#"perdure_http_requests_total{method="GET",route="/v2/types/{t}/instances/{id}",status="404"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == series), "{series}\n{text}");
        }
    }
}
