//! Who may do what on the HTTP port: API tokens with roles (`[auth]`), and, without tokens, the
//! browser guards (allowed `Host`, same-`Origin` writes). One middleware over every route.
//!
//! | route | role needed with `[auth]` tokens |
//! |---|---|
//! | `GET /healthz`, `GET /readyz`, `GET /`, `GET /dashboard/{app.js,style.css}` | none |
//! | other `GET`/`HEAD` (entity state, listings, `/cluster`, `/metrics`, `/dashboard/*`) | `read` |
//! | `POST` entity and orchestration routes (signal, call, batch; start, raise event, terminate, suspend, resume, rewind, restart) | `write` |
//! | `DELETE` of orchestration instances (purge one, purge by filter) | `write` |
//! | `PUT`, `DELETE` and `POST` (pause, resume) of stream subscriptions: they change what the cluster consumes, an operator's decision | `admin` |
//! | `DELETE /cluster/members/{id}` (and any other `DELETE`) | `admin` |
//!
//! A token is read from `Authorization: Bearer TOKEN`, else the `x-functions-key` header, else
//! the `code` query parameter (the last two as Durable Functions clients send them). Missing or
//! unknown: 401 `unauthorized` (with `WWW-Authenticate: Bearer`); known but its role too low: 403
//! `forbidden`. Tokens are compared by their SHA-256 digests, never logged.
//!
//! Without tokens (anyone reaching the port may do anything), browsers are kept from driving a
//! node on a trusted network: the `Host` must be an IP address, `localhost` (or a name under
//! `.localhost`) or listed in `http.allowed_hosts`, so a DNS-rebinding page (`Host:
//! attacker.example`) is refused 403 `host_not_allowed`; and a request that is not `GET`/`HEAD`
//! carrying an `Origin` other than the node itself (the `Host` it was sent to) is refused 403
//! `cross_origin` (a cross-site form or `text/plain` POST).

use super::error::ApiError;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use perdure_types::config::{AuthConfig, HttpConfig, Role};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;

/// The header Durable Functions clients send their key in.
pub const FUNCTIONS_KEY_HEADER: &str = "x-functions-key";

/// The access policy of one node.
#[derive(Debug, Clone)]
pub struct Access {
    /// SHA-256 of each token → its name and role; empty: no authentication.
    tokens: Arc<HashMap<[u8; 32], (String, Role)>>,
    /// Host names allowed besides IP addresses and localhost (lower case); `*` allows all.
    allowed_hosts: Arc<Vec<String>>,
}

impl Access {
    /// The policy `auth` and `http` configure.
    pub fn new(auth: &AuthConfig, http: &HttpConfig) -> Self {
        let tokens = auth
            .tokens
            .iter()
            .map(|t| (digest(&t.token), (t.name.clone(), t.role)))
            .collect();
        Self {
            tokens: Arc::new(tokens),
            allowed_hosts: Arc::new(
                http.allowed_hosts
                    .iter()
                    .map(|h| h.to_ascii_lowercase())
                    .collect(),
            ),
        }
    }

    /// Whether requests need a token.
    pub fn authenticates(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Admits or refuses a request by its method, path, query and headers.
    fn check(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<(), ApiError> {
        let needed = required_role(method, path);
        if self.authenticates() {
            let Some(needed) = needed else {
                return Ok(());
            };
            let Some(token) = presented_token(headers, query) else {
                return Err(unauthorized("this node requires an API token"));
            };
            let Some((name, role)) = self.tokens.get(&digest(&token)) else {
                return Err(unauthorized("unknown API token"));
            };
            if *role < needed {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!("token {name:?} has the {role:?} role; this request needs {needed:?}"),
                ));
            }
            return Ok(());
        }
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        if let Some(host) = host {
            if !self.host_allowed(host) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "host_not_allowed",
                    format!(
                        "this node does not answer for host {host:?} (add it to http.allowed_hosts)"
                    ),
                ));
            }
        }
        if !matches!(*method, Method::GET | Method::HEAD) {
            if let Some(origin) = headers.get(header::ORIGIN) {
                let same = origin
                    .to_str()
                    .ok()
                    .and_then(authority_of_origin)
                    .zip(host)
                    .is_some_and(|(o, h)| o.eq_ignore_ascii_case(h));
                if !same {
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "cross_origin",
                        format!(
                            "a state-changing request from origin {:?} is refused (browsers on \
                             other sites may not drive this node)",
                            origin.to_str().unwrap_or("?")
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether the node answers for `host` (a `Host` header value, with or without port).
    fn host_allowed(&self, host: &str) -> bool {
        let name = host_name(host).to_ascii_lowercase();
        let name = name.trim_end_matches('.');
        name.parse::<std::net::IpAddr>().is_ok()
            || name == "localhost"
            || name.ends_with(".localhost")
            || self
                .allowed_hosts
                .iter()
                .any(|a| a == "*" || a.trim_end_matches('.') == name)
    }
}

/// The middleware: refuses what [`Access`] refuses, with the API's JSON errors.
pub async fn guard(State(access): State<Access>, req: Request, next: Next) -> Response {
    match access.check(
        req.method(),
        req.uri().path(),
        req.uri().query(),
        req.headers(),
    ) {
        Ok(()) => next.run(req).await,
        Err(e) => {
            tracing::debug!(method = %req.method(), path = req.uri().path(), code = %e.code, "request refused");
            let unauthorized = e.status == StatusCode::UNAUTHORIZED;
            let mut resp = e.into_response();
            if unauthorized {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            resp
        }
    }
}

/// The role a request needs (`None`: open to anyone).
fn required_role(method: &Method, path: &str) -> Option<Role> {
    use crate::routes::{DASHBOARD, DASHBOARD_CSS, DASHBOARD_JS, HEALTHZ, READYZ};
    let open = [HEALTHZ, READYZ, DASHBOARD, DASHBOARD_JS, DASHBOARD_CSS];
    match *method {
        Method::GET | Method::HEAD if open.contains(&path) => None,
        Method::GET | Method::HEAD => Some(Role::Read),
        Method::DELETE if is_instances(path) => Some(Role::Write),
        Method::DELETE => Some(Role::Admin),
        _ if path.starts_with("/cluster/") || is_subscriptions(path) => Some(Role::Admin),
        _ => Some(Role::Write),
    }
}

/// Whether `path` is `.../instances` or under it (purges need `write`, as Durable Functions'
/// purge is an instance-management operation like terminate).
fn is_instances(path: &str) -> bool {
    path.strip_prefix(crate::routes::INSTANCES)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Whether `path` is `.../subscriptions` or under it (changes need `admin`).
fn is_subscriptions(path: &str) -> bool {
    path.strip_prefix(crate::routes::SUBSCRIPTIONS)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The token a request presents: `Authorization: Bearer`, `x-functions-key`, `?code=`.
fn presented_token(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_string())
        });
    let key = || {
        headers
            .get(FUNCTIONS_KEY_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_string())
    };
    let code = || {
        let q = query?;
        let pairs: Vec<(String, String)> = query_pairs(q);
        pairs.into_iter().find(|(k, _)| k == "code").map(|(_, v)| v)
    };
    bearer.or_else(key).or_else(code).filter(|t| !t.is_empty())
}

/// `a=1&b=x%20y` as decoded pairs.
fn query_pairs(q: &str) -> Vec<(String, String)> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(
        &format!("/?{q}").parse().unwrap_or_default(),
    )
    .map(|axum::extract::Query(v)| v)
    .unwrap_or_default()
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", format!(
        "{message}: send it as `Authorization: Bearer TOKEN`, the x-functions-key header or ?code=TOKEN"
    ))
}

/// `example.com` of `example.com:8080`, `::1` of `[::1]:8080`.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// `host:port` of an `Origin` (`http://host:port`), `None` for `null` or junk.
fn authority_of_origin(origin: &str) -> Option<&str> {
    let (_, rest) = origin.split_once("://")?;
    Some(rest.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use perdure_types::config::TokenConfig;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn open() -> Access {
        Access::new(
            &AuthConfig::default(),
            &HttpConfig {
                allowed_hosts: vec!["perdure.internal".into()],
                ..HttpConfig::default()
            },
        )
    }

    #[test]
    fn without_tokens_only_hosts_the_node_answers_for_are_served() {
        let a = open();
        for host in [
            "127.0.0.1:7071",
            "localhost:7071",
            "[::1]:7071",
            "10.1.2.3",
            "perdure.internal:7071",
            "app.localhost",
        ] {
            a.check(&Method::GET, "/cluster", None, &headers(&[("host", host)]))
                .unwrap_or_else(|e| panic!("{host}: {e:?}"));
        }
        let e = a
            .check(
                &Method::GET,
                "/cluster",
                None,
                &headers(&[("host", "attacker.example")]),
            )
            .unwrap_err();
        assert_eq!(
            (e.status, &*e.code),
            (StatusCode::FORBIDDEN, "host_not_allowed")
        );
    }

    #[test]
    fn without_tokens_writes_from_another_origin_are_refused() {
        let a = open();
        let same = headers(&[
            ("host", "127.0.0.1:7071"),
            ("origin", "http://127.0.0.1:7071"),
        ]);
        a.check(&Method::POST, "/x", None, &same).unwrap();
        let foreign = headers(&[
            ("host", "127.0.0.1:7071"),
            ("origin", "https://evil.example"),
        ]);
        let e = a.check(&Method::POST, "/x", None, &foreign).unwrap_err();
        assert_eq!(e.code, "cross_origin");
        let null = headers(&[("host", "127.0.0.1:7071"), ("origin", "null")]);
        assert!(a.check(&Method::DELETE, "/x", None, &null).is_err());
        // reads are not state-changing; no Origin (curl, the client) is fine
        a.check(&Method::GET, "/x", None, &foreign).unwrap();
        a.check(
            &Method::POST,
            "/x",
            None,
            &headers(&[("host", "127.0.0.1:7071")]),
        )
        .unwrap();
    }

    #[test]
    fn tokens_and_roles() {
        let token = |name: &str, token: &str, role| TokenConfig {
            name: name.into(),
            token: token.into(),
            role,
        };
        let a = Access::new(
            &AuthConfig {
                tokens: vec![
                    token("r", "reader-token-0123456", Role::Read),
                    token("w", "writer-token-0123456", Role::Write),
                    token("a", "admin-token-01234567", Role::Admin),
                ],
            },
            &HttpConfig::default(),
        );
        let del = |h: &HeaderMap, q| a.check(&Method::DELETE, "/cluster/members/4", q, h);
        assert_eq!(
            del(&headers(&[]), None).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        let bad = headers(&[("authorization", "Bearer nope-nope-nope-nope")]);
        assert_eq!(
            del(&bad, None).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        let w = headers(&[("authorization", "Bearer writer-token-0123456")]);
        assert_eq!(del(&w, None).unwrap_err().status, StatusCode::FORBIDDEN);
        del(
            &headers(&[("x-functions-key", "admin-token-01234567")]),
            None,
        )
        .unwrap();
        del(&headers(&[]), Some("code=admin-token-01234567")).unwrap();
        let r = headers(&[("authorization", "bearer reader-token-0123456")]);
        a.check(&Method::GET, "/cluster", None, &r).unwrap();
        assert_eq!(
            a.check(
                &Method::POST,
                "/runtime/webhooks/durabletask/entities/c/a",
                None,
                &r
            )
            .unwrap_err()
            .status,
            StatusCode::FORBIDDEN
        );
        a.check(
            &Method::POST,
            "/runtime/webhooks/durabletask/entities/c/a",
            None,
            &w,
        )
        .unwrap();
        // a purge is instance management: write, like terminate
        let purge = "/runtime/webhooks/durabletask/instances/i-1";
        assert_eq!(
            a.check(&Method::DELETE, purge, None, &r)
                .unwrap_err()
                .status,
            StatusCode::FORBIDDEN
        );
        a.check(&Method::DELETE, purge, None, &w).unwrap();
        a.check(
            &Method::DELETE,
            "/runtime/webhooks/durabletask/instances",
            None,
            &w,
        )
        .unwrap();
        assert!(!is_instances("/runtime/webhooks/durabletask/instancesX"));
        // subscriptions: reads need read, changes admin
        let sub = "/runtime/webhooks/durabletask/subscriptions/orders";
        a.check(&Method::GET, sub, None, &r).unwrap();
        for (m, p) in [
            (Method::PUT, sub.to_string()),
            (Method::DELETE, sub.to_string()),
            (Method::POST, format!("{sub}/pause")),
        ] {
            assert_eq!(
                a.check(&m, &p, None, &w).unwrap_err().status,
                StatusCode::FORBIDDEN,
                "{m} {p}"
            );
        }
        a.check(
            &Method::PUT,
            sub,
            None,
            &headers(&[("authorization", "Bearer admin-token-01234567")]),
        )
        .unwrap();
        // health and the dashboard's page are open; anything else needs a token
        a.check(&Method::GET, "/readyz", None, &headers(&[]))
            .unwrap();
        a.check(&Method::GET, "/", None, &headers(&[])).unwrap();
        assert!(a
            .check(&Method::GET, "/metrics", None, &headers(&[]))
            .is_err());
        // with tokens the Host is not checked (a token is needed anyway)
        a.check(
            &Method::GET,
            "/cluster",
            None,
            &headers(&[
                ("host", "lb.example"),
                ("authorization", "Bearer reader-token-0123456"),
            ]),
        )
        .unwrap();
    }
}
