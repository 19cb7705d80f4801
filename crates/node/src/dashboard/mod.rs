//! The web dashboard every node serves at `/`: cluster members and health, partitions with their
//! replicas and leaders (from `GET /cluster`), live throughput, errors and latency (from
//! `GET /dashboard/stats`, present when `metrics.enabled`), orchestrations (turns/s,
//! activities/s, live instances, pending work items and instances by status from the same stats;
//! an instance list, paged with `x-ms-continuation-token` and filtered by runtime status, and one
//! instance's status and history, from the instances routes of the HTTP API; "not available"
//! when they answer 404), and an entity browser (the entity list and state routes). Plain HTML,
//! CSS and JavaScript compiled into the binary: no build step, no external resources.

use crate::routes;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use perdure_runtime::Runtime;
use std::sync::Arc;

/// The page.
pub const INDEX_HTML: &str = include_str!("index.html");
/// Its script.
pub const APP_JS: &str = include_str!("app.js");
/// Its style sheet.
pub const STYLE_CSS: &str = include_str!("style.css");

/// `GET /`, `GET /dashboard/app.js`, `GET /dashboard/style.css`, `GET /dashboard/types`.
pub fn router(runtime: Arc<Runtime>) -> Router {
    Router::new()
        .route(routes::DASHBOARD, get(index))
        .route(routes::DASHBOARD_JS, get(app_js))
        .route(routes::DASHBOARD_CSS, get(style_css))
        .route(routes::DASHBOARD_TYPES, get(types))
        .with_state(runtime)
}

async fn index() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INDEX_HTML,
    )
}

async fn app_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        APP_JS,
    )
}

async fn style_css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        STYLE_CSS,
    )
}

/// `GET /dashboard/types`: the entity types this node runs, with their operations.
async fn types(State(runtime): State<Arc<Runtime>>) -> Json<serde_json::Value> {
    let r = runtime.entities().registry();
    let types: Vec<serde_json::Value> = r
        .names()
        .into_iter()
        .filter_map(|n| r.get(n).ok())
        .map(|t| serde_json::json!({ "name": t.name(), "operations": t.operations() }))
        .collect();
    Json(serde_json::json!({ "types": types }))
}
