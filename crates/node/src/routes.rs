//! The catalog of every route the node's HTTP port serves: each router (`http`, `dashboard`,
//! `metrics`) registers its routes by these constants, and [`ROUTES`] lists them with their
//! methods. The OpenAPI conformance test (`crates/cli/tests/openapi`) checks [`ROUTES`] against
//! `docs/api/openapi.yaml` both ways and probes every one on a running node; a route added
//! without an entry here (or in the spec) fails it.

/// Signal (`POST`) or read the state of (`GET`) one entity.
pub const ENTITY: &str = "/runtime/webhooks/durabletask/entities/{name}/{key}";
/// Call an operation of one entity.
pub const ENTITY_CALL: &str = "/runtime/webhooks/durabletask/entities/{name}/{key}/call";
/// List the entities of one type.
pub const ENTITY_LIST: &str = "/runtime/webhooks/durabletask/entities/{name}";
/// Signal many entities.
pub const ENTITY_BATCH: &str = "/runtime/webhooks/durabletask/entities:batch";
/// Liveness.
pub const HEALTHZ: &str = "/healthz";
/// Readiness.
pub const READYZ: &str = "/readyz";
/// Members and partitions.
pub const CLUSTER: &str = "/cluster";
/// Remove a member.
pub const CLUSTER_MEMBER: &str = "/cluster/members/{id}";
/// The web dashboard's page.
pub const DASHBOARD: &str = "/";
/// Its script.
pub const DASHBOARD_JS: &str = "/dashboard/app.js";
/// Its style sheet.
pub const DASHBOARD_CSS: &str = "/dashboard/style.css";
/// The entity types, for the dashboard.
pub const DASHBOARD_TYPES: &str = "/dashboard/types";
/// The dashboard's live counters (with `metrics.enabled`).
pub const DASHBOARD_STATS: &str = "/dashboard/stats";
/// Prometheus metrics (with `metrics.enabled`).
pub const METRICS: &str = "/metrics";

/// One route: a method on a path template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// `GET`, `POST`, `DELETE` (a `GET` route answers `HEAD` too).
    pub method: &'static str,
    /// The path template, as the router matches it (`{name}` a path parameter).
    pub path: &'static str,
    /// Served only when `metrics.enabled` (404 `not_found` otherwise).
    pub metrics_only: bool,
}

const fn route(method: &'static str, path: &'static str) -> Route {
    Route {
        method,
        path,
        metrics_only: false,
    }
}

/// Every route the node serves.
pub const ROUTES: &[Route] = &[
    route("POST", ENTITY),
    route("GET", ENTITY),
    route("POST", ENTITY_CALL),
    route("GET", ENTITY_LIST),
    route("POST", ENTITY_BATCH),
    route("GET", HEALTHZ),
    route("GET", READYZ),
    route("GET", CLUSTER),
    route("DELETE", CLUSTER_MEMBER),
    route("GET", DASHBOARD),
    route("GET", DASHBOARD_JS),
    route("GET", DASHBOARD_CSS),
    route("GET", DASHBOARD_TYPES),
    Route {
        metrics_only: true,
        ..route("GET", DASHBOARD_STATS)
    },
    Route {
        metrics_only: true,
        ..route("GET", METRICS)
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_routes_live_under_the_durable_functions_base() {
        for r in ROUTES {
            let entity = r.path.contains("/entities");
            assert_eq!(entity, r.path.starts_with(crate::http::BASE), "{r:?}");
        }
    }
}
