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
/// Start an orchestration under a new random instance id.
pub const ORCHESTRATOR: &str = "/runtime/webhooks/durabletask/orchestrators/{name}";
/// Start an orchestration under the instance id given.
pub const ORCHESTRATOR_INSTANCE: &str =
    "/runtime/webhooks/durabletask/orchestrators/{name}/{instanceId}";
/// List (`GET`) or purge (`DELETE`) the instances a filter selects.
pub const INSTANCES: &str = "/runtime/webhooks/durabletask/instances";
/// The status (`GET`) or purge (`DELETE`) of one instance.
pub const INSTANCE: &str = "/runtime/webhooks/durabletask/instances/{instanceId}";
/// Wait for an instance to finish (long poll).
pub const INSTANCE_WAIT: &str = "/runtime/webhooks/durabletask/instances/{instanceId}/wait";
/// Raise an event on an instance.
pub const INSTANCE_RAISE_EVENT: &str =
    "/runtime/webhooks/durabletask/instances/{instanceId}/raiseEvent/{eventName}";
/// Terminate an instance.
pub const INSTANCE_TERMINATE: &str =
    "/runtime/webhooks/durabletask/instances/{instanceId}/terminate";
/// Suspend an instance.
pub const INSTANCE_SUSPEND: &str = "/runtime/webhooks/durabletask/instances/{instanceId}/suspend";
/// Resume a suspended instance.
pub const INSTANCE_RESUME: &str = "/runtime/webhooks/durabletask/instances/{instanceId}/resume";
/// Rewind a failed instance.
pub const INSTANCE_REWIND: &str = "/runtime/webhooks/durabletask/instances/{instanceId}/rewind";
/// Restart an instance (under its id or a new one).
pub const INSTANCE_RESTART: &str = "/runtime/webhooks/durabletask/instances/{instanceId}/restart";
/// List the stream subscriptions.
pub const SUBSCRIPTIONS: &str = "/runtime/webhooks/durabletask/subscriptions";
/// Create or replace (`PUT`), read with its progress (`GET`) or delete (`DELETE`) one
/// subscription.
pub const SUBSCRIPTION: &str = "/runtime/webhooks/durabletask/subscriptions/{name}";
/// A subscription's dead letters.
pub const SUBSCRIPTION_DEAD_LETTERS: &str =
    "/runtime/webhooks/durabletask/subscriptions/{name}/dead-letters";
/// Pause a subscription.
pub const SUBSCRIPTION_PAUSE: &str = "/runtime/webhooks/durabletask/subscriptions/{name}/pause";
/// Resume a paused subscription.
pub const SUBSCRIPTION_RESUME: &str = "/runtime/webhooks/durabletask/subscriptions/{name}/resume";
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
    /// `GET`, `PUT`, `POST`, `DELETE` (a `GET` route answers `HEAD` too).
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
    route("POST", ORCHESTRATOR),
    route("POST", ORCHESTRATOR_INSTANCE),
    route("GET", INSTANCES),
    route("DELETE", INSTANCES),
    route("GET", INSTANCE),
    route("DELETE", INSTANCE),
    route("GET", INSTANCE_WAIT),
    route("POST", INSTANCE_RAISE_EVENT),
    route("POST", INSTANCE_TERMINATE),
    route("POST", INSTANCE_SUSPEND),
    route("POST", INSTANCE_RESUME),
    route("POST", INSTANCE_REWIND),
    route("POST", INSTANCE_RESTART),
    route("GET", SUBSCRIPTIONS),
    route("PUT", SUBSCRIPTION),
    route("GET", SUBSCRIPTION),
    route("DELETE", SUBSCRIPTION),
    route("GET", SUBSCRIPTION_DEAD_LETTERS),
    route("POST", SUBSCRIPTION_PAUSE),
    route("POST", SUBSCRIPTION_RESUME),
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
    fn entity_orchestration_and_subscription_routes_live_under_the_durable_functions_base() {
        for r in ROUTES {
            let durable = [
                "/entities",
                "/orchestrators/",
                "/instances",
                "/subscriptions",
            ]
            .iter()
            .any(|p| r.path.contains(p));
            assert_eq!(durable, r.path.starts_with(crate::http::BASE), "{r:?}");
        }
    }
}
