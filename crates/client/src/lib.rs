//! The Rust client for perdure's HTTP API: signal, call, read, list and batch-signal durable
//! entities; start, watch and manage orchestrations (see [`Client::start_orchestration`]); with
//! retries that never apply an operation twice.
//!
//! ```no_run
//! # async fn demo() -> Result<(), perdure_client::Error> {
//! use perdure_client::Client;
//! use serde_json::json;
//!
//! let client = Client::new("http://127.0.0.1:7071")?;
//! client.signal("counter", "a", "add", Some(json!(5))).await?;
//! let value = client.call("counter", "a", "get", None).await?;
//! let state = client.get("counter", "a").await?;
//! assert_eq!(Some(value), state);
//! # Ok(()) }
//! ```
//!
//! Retries: signals (each with an idempotency key, the same on every attempt), reads and
//! listings are retried on connection errors, timeouts, `503` and `504` (`outcome_unknown`: the
//! same idempotency key makes the retry safe), with exponential backoff, up to
//! [`RetryPolicy::attempts`]. A call is not idempotent and is retried only when its connection
//! was refused (it never reached the server). No request is retried on a `4xx`.
//!
//! Orchestrations: reads (status, wait, list), starts (each under an instance id, made by the
//! client when none is given), terminate, suspend, resume and purges are retried like signals;
//! raising an event, rewind and restart like calls. A start retried after an attempt that may
//! have been served replaces nothing: its repeat finds the instance and is answered 409
//! `instance_exists`, reported as started (a client-made id) or as
//! [`Error::AlreadyStarted`] with `retried: true`.

#![warn(missing_docs)]

mod error;
mod key;
mod orchestrations;
mod retry;
mod routing;
use routing::Routes;
mod subscriptions;
mod types;

pub use error::{ApiError, Error};
pub use key::new_idempotency_key;
pub use orchestrations::{OrchestrationFilter, OrchestrationPage, StartOptions};
pub use perdure_types::api::{
    FailureInfo, InstanceStatusBody as OrchestrationStatus, InstanceUrls as Started,
};
pub use perdure_types::orchestration::RuntimeStatus;
pub use retry::RetryPolicy;
pub use types::{BatchSignal, EntityPage, EntitySummary, SignalAck};

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode, Url};
use retry::{Failure, Kind};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::time::Duration;

/// Base path of the entity routes.
const BASE: [&str; 3] = ["runtime", "webhooks", "durabletask"];
/// Header carrying a signal's idempotency key.
const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// A client of one perdure node (or load balancer). Cheap to clone; clones share connections.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    retry: RetryPolicy,
    /// Whether entity requests go straight to their partition's leader.
    routing: bool,
    /// The routing table, learned from `GET /cluster`.
    routes: std::sync::Arc<std::sync::RwLock<Routes>>,
}

/// Builds a [`Client`] with a timeout and a retry policy.
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    base_url: String,
    timeout: Duration,
    connect_timeout: Duration,
    retry: RetryPolicy,
    routing: bool,
    token: Option<Token>,
}

/// An API token; its `Debug` does not show it.
#[derive(Clone)]
struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}

impl ClientBuilder {
    /// The API token sent with every request as `Authorization: Bearer TOKEN` (a node with
    /// `[auth]` tokens answers 401 without one, 403 when its role is too low). Default none.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(Token(token.into()));
        self
    }

    /// Timeout of one attempt, from sending to the last byte of the answer. Default 30 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Timeout of connecting. Default 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The retry policy. Default [`RetryPolicy::default`].
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Send entity requests straight to their partition's leader (default `true`); `false`
    /// sends everything to the base URL, whose node forwards.
    pub fn routing(mut self, on: bool) -> Self {
        self.routing = on;
        self
    }

    /// Attempts in all, the first included (shorthand for a field of [`RetryPolicy`]).
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.retry.attempts = attempts.max(1);
        self
    }

    /// Wait before the first retry, and the most between two (see [`RetryPolicy`]).
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.retry.initial_backoff = initial;
        self.retry.max_backoff = max;
        self
    }

    /// Builds the client; fails on a base URL that is not `http(s)://HOST[:PORT][/PATH]`.
    pub fn build(self) -> Result<Client, Error> {
        let invalid = |reason: String| Error::InvalidUrl {
            url: self.base_url.clone(),
            reason,
        };
        let base = Url::parse(&self.base_url).map_err(|e| invalid(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(invalid("the scheme must be http or https".into()));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(invalid("the URL may not have a query or fragment".into()));
        }
        let mut headers = HeaderMap::new();
        if let Some(Token(token)) = &self.token {
            let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| Error::InvalidArgument("the token must be visible ASCII".into()))?;
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        let http = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .default_headers(headers)
            .build()
            .map_err(Error::Transport)?;
        Ok(Client {
            http,
            base,
            retry: RetryPolicy {
                attempts: self.retry.attempts.max(1),
                ..self.retry
            },
            routing: self.routing,
            routes: Default::default(),
        })
    }
}

/// A response read to its end: status, headers and the whole body.
#[derive(Debug)]
struct Response {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

fn check_op(op: &str) -> Result<(), Error> {
    if op.is_empty() {
        return Err(Error::InvalidArgument("the operation name is empty".into()));
    }
    Ok(())
}

fn decode<T: DeserializeOwned>(r: &Response) -> Result<T, Error> {
    serde_json::from_slice(&r.body).map_err(|e| {
        Error::Decode(format!(
            "{e} in {:?}",
            String::from_utf8_lossy(&r.body[..r.body.len().min(200)])
        ))
    })
}

/// Turns any non-2xx answer into [`Error::Api`].
fn success(r: Response) -> Result<Response, Error> {
    if r.status.is_success() {
        Ok(r)
    } else {
        Err(Error::from_response(r.status.as_u16(), &r.body))
    }
}

impl Client {
    /// A client of the node at `base_url` (`http://127.0.0.1:7071`) with default settings.
    pub fn new(base_url: &str) -> Result<Self, Error> {
        Self::builder(base_url).build()
    }

    /// A builder for a client of the node at `base_url`.
    pub fn builder(base_url: &str) -> ClientBuilder {
        ClientBuilder {
            base_url: base_url.to_string(),
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            token: None,
            routing: true,
        }
    }

    /// The URL of `segments` under the API's base path on the node leading entity
    /// `name`/`key`'s partition, when the routing table knows it; else under the base URL.
    fn entity_url(&self, name: &str, key: &str, segments: &[&str]) -> Url {
        let mut url = self
            .routed_base(name, key)
            .unwrap_or_else(|| self.base.clone());
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(BASE).extend(segments);
        }
        url
    }

    /// The retry policy in force.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// The URL of `segments` under the API's base path (each segment percent-encoded, so a key
    /// may hold `/`, spaces, `?`...).
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(BASE).extend(segments);
        }
        url
    }

    /// Sends the request `build` makes, again as the policy and `kind` allow; answers the last
    /// response (any status that is not retried) or the last transport error.
    async fn send(
        &self,
        kind: Kind,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Response, Error> {
        self.send_tracked(kind, |_| build()).await.0
    }

    /// [`Client::send`], telling `build` whether an earlier attempt may have been served (it
    /// timed out, its connection broke, or it was answered 503), and answering that too.
    async fn send_tracked(
        &self,
        kind: Kind,
        build: impl Fn(bool) -> reqwest::RequestBuilder,
    ) -> (Result<Response, Error>, bool) {
        let mut attempt = 1;
        let mut maybe_served = false;
        loop {
            let outcome = match build(maybe_served).send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    resp.bytes().await.map(|body| Response {
                        status,
                        headers,
                        body: body.to_vec(),
                    })
                }
                Err(e) => Err(e),
            };
            if let Ok(r) = &outcome {
                if r.headers.contains_key("x-perdure-forwarded") {
                    // the node had to forward: the leader moved since the table was learned
                    self.mark_routes_stale();
                }
            }
            let failure = match &outcome {
                Ok(r) if r.status == StatusCode::SERVICE_UNAVAILABLE => {
                    Failure::Status(r.status.as_u16())
                }
                Ok(_) => return (outcome.map_err(Error::Transport), maybe_served),
                Err(e) => Failure::of(e),
            };
            // a leader that moved or died explains the failure: learn the table again (also when
            // this attempt is the last, so the next request goes to the right node)
            self.mark_routes_stale();
            if attempt >= self.retry.attempts || !retry::retryable(kind, failure) {
                return (outcome.map_err(Error::Transport), maybe_served);
            }
            maybe_served |= failure.maybe_served();
            self.ensure_routes().await;
            let wait = self.retry.backoff(attempt);
            tracing::debug!(
                ?failure,
                attempt,
                wait_ms = wait.as_millis() as u64,
                "retrying"
            );
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    fn request(&self, method: Method, url: &Url) -> reqwest::RequestBuilder {
        self.http.request(method, url.clone())
    }

    /// Signals `op` with `input` to entity `name`/`key`; returns once the signal is durable.
    /// One fresh idempotency key is made for the signal and sent, the same, with every attempt, so
    /// retries apply it once.
    pub async fn signal(
        &self,
        name: &str,
        key: &str,
        op: &str,
        input: Option<Value>,
    ) -> Result<SignalAck, Error> {
        self.signal_with_key(name, key, op, input, &new_idempotency_key())
            .await
    }

    /// Like [`Client::signal`] with the caller's idempotency key: a signal sent again with the
    /// same key (within the server's window) is acknowledged as a duplicate and not applied.
    pub async fn signal_with_key(
        &self,
        name: &str,
        key: &str,
        op: &str,
        input: Option<Value>,
        idempotency_key: &str,
    ) -> Result<SignalAck, Error> {
        perdure_types::EntityId::new(name, key)?;
        check_op(op)?;
        if idempotency_key.is_empty() {
            return Err(Error::InvalidArgument(
                "the idempotency key is empty".into(),
            ));
        }
        self.ensure_routes().await;
        let r = self
            .send(Kind::Idempotent, || {
                let url = self.entity_url(name, key, &["entities", name, key]);
                let req = self
                    .request(Method::POST, &url)
                    .query(&[("op", op)])
                    .header(IDEMPOTENCY_KEY, idempotency_key);
                with_input(req, input.as_ref())
            })
            .await?;
        decode(&success(r)?)
    }

    /// Runs `op` with `input` on entity `name`/`key` and returns its result (`null` when it has
    /// none) once its effects are committed. Retried only when the connection was refused.
    pub async fn call(
        &self,
        name: &str,
        key: &str,
        op: &str,
        input: Option<Value>,
    ) -> Result<Value, Error> {
        perdure_types::EntityId::new(name, key)?;
        check_op(op)?;
        self.ensure_routes().await;
        let r = self
            .send(Kind::Call, || {
                let url = self.entity_url(name, key, &["entities", name, key, "call"]);
                let req = self.request(Method::POST, &url).query(&[("op", op)]);
                with_input(req, input.as_ref())
            })
            .await?;
        decode(&success(r)?)
    }

    /// The committed state of entity `name`/`key`, `None` when it does not exist.
    pub async fn get(&self, name: &str, key: &str) -> Result<Option<Value>, Error> {
        perdure_types::EntityId::new(name, key)?;
        self.ensure_routes().await;
        let r = self
            .send(Kind::Idempotent, || {
                self.request(
                    Method::GET,
                    &self.entity_url(name, key, &["entities", name, key]),
                )
            })
            .await?;
        if r.status == StatusCode::NOT_FOUND {
            let e = Error::from_response(404, &r.body);
            return match e.code() {
                Some("entity_not_found") => Ok(None),
                _ => Err(e),
            };
        }
        decode(&success(r)?).map(Some)
    }

    /// The cluster as the node sees it (`GET /cluster`): members with their health, and every
    /// partition's replicas, leader and role.
    pub async fn cluster_status(&self) -> Result<Value, Error> {
        let url = Self::cluster_url(&self.base);
        let r = self
            .send(Kind::Idempotent, || self.request(Method::GET, &url))
            .await?;
        decode(&success(r)?)
    }

    /// Removes member `node_id` from the cluster for good (`DELETE /cluster/members/{id}`);
    /// answers the new membership. Its replicas then move to the other members.
    pub async fn remove_member(&self, node_id: u64) -> Result<Value, Error> {
        let mut url = Self::cluster_url(&self.base);
        if let Ok(mut path) = url.path_segments_mut() {
            path.push("members").push(&node_id.to_string());
        }
        let r = self
            .send(Kind::Idempotent, || self.request(Method::DELETE, &url))
            .await?;
        decode(&success(r)?)
    }

    /// Whether entity requests go straight to their partition's leader (default on): the client
    /// learns the routing table from `GET /cluster` at first use and again when a request fails
    /// in a way a moved leader explains. Off, every request goes to the base URL, which forwards.
    pub fn routing(&self) -> bool {
        self.routing
    }

    /// A page of at most `top` (server default 100, at most 1000) entities of type `name`,
    /// starting at `continuation` (from the previous page; `None` for the first).
    pub async fn list(
        &self,
        name: &str,
        continuation: Option<&str>,
        top: Option<u32>,
    ) -> Result<EntityPage, Error> {
        perdure_types::EntityId::new(name, "-")?;
        let url = self.url(&["entities", name]);
        let r = self
            .send(Kind::Idempotent, || {
                let mut req = self.request(Method::GET, &url);
                if let Some(top) = top {
                    req = req.query(&[("top", top)]);
                }
                if let Some(c) = continuation {
                    req = req.query(&[("continuation", c)]);
                }
                req
            })
            .await?;
        let r = success(r)?;
        let mut page: EntityPage = decode(&r)?;
        if page.continuation.is_none() {
            page.continuation = r
                .headers
                .get("x-ms-continuation-token")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
        }
        Ok(page)
    }

    /// Signals many entities in one request; one result per signal, in order. Signals without
    /// an idempotency key get one, kept across retries. The whole batch is retried like a
    /// signal; afterwards, items the server answered `unavailable` are retried alone (with
    /// their keys) while attempts remain. Items refused for bad input are answered as errors.
    pub async fn signal_batch(
        &self,
        mut signals: Vec<BatchSignal>,
    ) -> Result<Vec<Result<SignalAck, ApiError>>, Error> {
        for s in &mut signals {
            if s.idempotency_key.is_none() {
                s.idempotency_key = Some(new_idempotency_key());
            }
        }
        let url = self.url(&["entities:batch"]);
        let mut results: Vec<Option<Result<SignalAck, ApiError>>> = vec![None; signals.len()];
        let mut pending: Vec<usize> = (0..signals.len()).collect();
        let mut round = 1;
        while !pending.is_empty() {
            let body = serde_json::json!({
                "signals": pending.iter().map(|&i| &signals[i]).collect::<Vec<_>>()
            });
            let r = self
                .send(Kind::Idempotent, || {
                    self.request(Method::POST, &url).json(&body)
                })
                .await?;
            let resp: types::BatchResponse = decode(&success(r)?)?;
            if resp.results.len() != pending.len() {
                return Err(Error::Decode(format!(
                    "{} results for {} signals",
                    resp.results.len(),
                    pending.len()
                )));
            }
            let mut again = Vec::new();
            for (i, res) in pending.into_iter().zip(resp.results) {
                results[i] = Some(match res {
                    types::BatchItemResult::Ack(ack) => Ok(ack),
                    types::BatchItemResult::Error { error } => {
                        if error.code == "unavailable" && round < self.retry.attempts {
                            again.push(i);
                        }
                        Err(error)
                    }
                });
            }
            pending = again;
            if !pending.is_empty() {
                tokio::time::sleep(self.retry.backoff(round)).await;
                round += 1;
            }
        }
        Ok(results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(ApiError {
                        code: "internal".into(),
                        message: "no result".into(),
                    })
                })
            })
            .collect())
    }
}

/// Adds `input` as the JSON body, if any.
fn with_input(req: reqwest::RequestBuilder, input: Option<&Value>) -> reqwest::RequestBuilder {
    match input {
        Some(v) => req.json(v),
        None => req,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_encode_keys_and_keep_a_base_path() {
        let c = Client::new("http://127.0.0.1:7071").unwrap();
        assert_eq!(
            c.url(&["entities", "counter", "a/b c?"]).as_str(),
            "http://127.0.0.1:7071/runtime/webhooks/durabletask/entities/counter/a%2Fb%20c%3F"
        );
        assert_eq!(
            c.url(&["entities:batch"]).as_str(),
            "http://127.0.0.1:7071/runtime/webhooks/durabletask/entities:batch"
        );
        let c = Client::new("http://lb:80/perdure/").unwrap();
        assert_eq!(
            c.url(&["entities", "counter"]).as_str(),
            "http://lb/perdure/runtime/webhooks/durabletask/entities/counter"
        );
    }

    #[test]
    fn bad_base_urls_are_refused() {
        for u in [
            "127.0.0.1:7071",
            "ftp://x",
            "mailto:a@b",
            "http://x/?q=1",
            "",
        ] {
            assert!(
                matches!(Client::new(u), Err(Error::InvalidUrl { .. })),
                "{u}"
            );
        }
    }

    #[test]
    fn attempts_are_at_least_one() {
        let c = Client::builder("http://x").attempts(0).build().unwrap();
        assert_eq!(c.retry_policy().attempts, 1);
    }
}
