//! Orchestrations through the HTTP API: start, status, wait, list, raise event, terminate,
//! suspend, resume, rewind, restart, purge. Requests about one instance go straight to the
//! leader of its partition (the pinned partition function over the instance id, as entities);
//! listings and purges by filter go to the base URL, whose node asks every partition.

use crate::retry::Kind;
use crate::{decode, success, with_input, Client, Error, Response, BASE};
use perdure_types::api::{InstanceStatusBody, InstanceUrls, PurgeResult};
use perdure_types::orchestration::RuntimeStatus;
use perdure_types::{InstanceId, Target};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest wait one request asks the server for (its `timeoutMs` limit).
const MAX_WAIT_SLICE: Duration = Duration::from_secs(300);
/// Added to a long poll's own timeout for the request's (the answer comes after the wait).
const WAIT_MARGIN: Duration = Duration::from_secs(15);

/// The perdure extensions of a start.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Start no earlier than this time (the instance is `Pending` until then).
    pub scheduled_start: Option<SystemTime>,
    /// The statuses an existing instance of the id may have for the start to replace it
    /// (`Some(vec![])`: none). `None`: the server's default, a completed, failed or terminated
    /// instance is replaced.
    pub reuse_policy: Option<Vec<RuntimeStatus>>,
    /// The orchestrator version recorded with the instance.
    pub version: Option<String>,
}

/// Which instances a listing or a purge selects (every field optional).
#[derive(Debug, Clone, Default)]
pub struct OrchestrationFilter {
    /// Any of these statuses (empty: every status).
    pub runtime_status: Vec<RuntimeStatus>,
    /// Created at or after this time.
    pub created_from: Option<SystemTime>,
    /// Created before this time.
    pub created_to: Option<SystemTime>,
    /// Instance ids starting with this.
    pub instance_id_prefix: Option<String>,
    /// Only instances quarantined as poison (failed with `PoisonMessage`).
    pub poisoned: bool,
}

/// One page of a listing.
#[derive(Debug, Clone, Default)]
pub struct OrchestrationPage {
    /// The statuses of this page.
    pub instances: Vec<InstanceStatusBody>,
    /// Pass back to get the next page; `None` on the last page.
    pub continuation: Option<String>,
}

fn rfc3339(t: SystemTime) -> String {
    let ms = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    perdure_types::time::format_millis(ms)
}

fn statuses(s: &[RuntimeStatus]) -> String {
    s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
}

impl OrchestrationFilter {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if !self.runtime_status.is_empty() {
            q.push(("runtimeStatus", statuses(&self.runtime_status)));
        }
        if let Some(t) = self.created_from {
            q.push(("createdTimeFrom", rfc3339(t)));
        }
        if let Some(t) = self.created_to {
            q.push(("createdTimeTo", rfc3339(t)));
        }
        if let Some(p) = &self.instance_id_prefix {
            q.push(("instanceIdPrefix", p.clone()));
        }
        if self.poisoned {
            q.push(("poisoned", "true".into()));
        }
        q
    }
}

/// A new instance id, UUID-shaped (as the server makes them).
fn new_instance_id() -> String {
    let k = crate::new_idempotency_key();
    format!(
        "{}-{}-{}-{}-{}",
        &k[0..8],
        &k[8..12],
        &k[12..16],
        &k[16..20],
        &k[20..32]
    )
}

/// `text` as an optional `reason` query parameter.
fn reason(text: Option<&str>) -> Vec<(&'static str, String)> {
    text.map(|r| vec![("reason", r.to_string())])
        .unwrap_or_default()
}

impl Client {
    /// The URL of `segments` under `.../instances/{id}` on the node leading instance `id`'s
    /// partition when the routing table knows it, else under the base URL.
    fn instance_url(&self, id: &InstanceId, segments: &[&str]) -> Url {
        let mut url = self
            .leader_of(&Target::Instance(id.clone()))
            .unwrap_or_else(|| self.base.clone());
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty()
                .extend(BASE)
                .extend(["instances", id.as_str()])
                .extend(segments);
        }
        url
    }

    /// Starts orchestrator `name` with `input` under `instance_id`, or under a new random id
    /// made here (so that a retried start is recognized). Answers the instance's management
    /// URLs ([`Started`](crate::Started)) once it is durably created.
    ///
    /// An `instance_id` that exists in a status the server's default reuse policy does not
    /// replace (pending, running, suspended) is [`Error::AlreadyStarted`]. A start is retried
    /// like a signal; once an attempt may have been served, the retries replace nothing
    /// (`reusePolicy=none`), so a repeat that finds the instance its earlier attempt created is
    /// answered `instance_exists`: for an id made here that is this start's instance (answered
    /// as started), for a given id [`Error::AlreadyStarted`] with `retried: true`.
    pub async fn start_orchestration(
        &self,
        name: &str,
        instance_id: Option<&str>,
        input: Option<Value>,
    ) -> Result<InstanceUrls, Error> {
        self.start_orchestration_with(name, instance_id, input, &StartOptions::default())
            .await
    }

    /// [`Client::start_orchestration`] with a scheduled start, a reuse policy or a version.
    pub async fn start_orchestration_with(
        &self,
        name: &str,
        instance_id: Option<&str>,
        input: Option<Value>,
        options: &StartOptions,
    ) -> Result<InstanceUrls, Error> {
        if name.is_empty() {
            return Err(Error::InvalidArgument(
                "the orchestrator name is empty".into(),
            ));
        }
        let made_here = instance_id.is_none();
        let id = InstanceId::new(&instance_id.map_or_else(new_instance_id, str::to_string))?;
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(t) = options.scheduled_start {
            query.push(("scheduledStartTime", rfc3339(t)));
        }
        if let Some(v) = &options.version {
            query.push(("version", v.clone()));
        }
        self.ensure_routes().await;
        let (r, retried) = self
            .send_tracked(Kind::Idempotent, |maybe_served| {
                let mut url = self
                    .leader_of(&Target::Instance(id.clone()))
                    .unwrap_or_else(|| self.base.clone());
                if let Ok(mut path) = url.path_segments_mut() {
                    path.pop_if_empty()
                        .extend(BASE)
                        .extend(["orchestrators", name, id.as_str()]);
                }
                let policy = match (&options.reuse_policy, maybe_served) {
                    (_, true) => Some("none".to_string()),
                    (Some(p), false) if p.is_empty() => Some("none".to_string()),
                    (Some(p), false) => Some(statuses(p)),
                    (None, false) => None,
                };
                let mut req = self.request(Method::POST, &url).query(&query);
                if let Some(p) = policy {
                    req = req.query(&[("reusePolicy", p)]);
                }
                with_input(req, input.as_ref())
            })
            .await;
        let r = r?;
        match success(r) {
            Ok(r) => decode(&r),
            Err(e) => match e.for_instance(id.as_str(), retried) {
                // a retry found the instance its earlier attempt created: ours
                Error::AlreadyStarted { retried: true, .. } if made_here => {
                    Ok(InstanceUrls::new(self.url(&[]).as_str(), id.as_str()))
                }
                e => Err(e),
            },
        }
    }

    /// Instance `id`'s status (with its history, payloads included, when `history`);
    /// [`Error::InstanceNotFound`] for an unknown id.
    pub async fn orchestration_status(
        &self,
        id: &str,
        history: bool,
    ) -> Result<InstanceStatusBody, Error> {
        let iid = InstanceId::new(id)?;
        self.ensure_routes().await;
        let r = self
            .send(Kind::Idempotent, || {
                let mut req = self.request(Method::GET, &self.instance_url(&iid, &[]));
                if history {
                    req = req.query(&[("showHistory", "true"), ("showHistoryOutput", "true")]);
                }
                req
            })
            .await?;
        status_of(r, id)
    }

    /// Waits up to `timeout` for instance `id` to finish (long polls of at most 300 s each);
    /// answers its status then, finished or not (see
    /// [`RuntimeStatus::is_terminal`](perdure_types::orchestration::RuntimeStatus::is_terminal)).
    pub async fn wait_for_orchestration(
        &self,
        id: &str,
        timeout: Duration,
    ) -> Result<InstanceStatusBody, Error> {
        let iid = InstanceId::new(id)?;
        let until = tokio::time::Instant::now() + timeout;
        self.ensure_routes().await;
        loop {
            let slice = until
                .saturating_duration_since(tokio::time::Instant::now())
                .min(MAX_WAIT_SLICE);
            let r = self
                .send(Kind::Idempotent, || {
                    self.request(Method::GET, &self.instance_url(&iid, &["wait"]))
                        .query(&[("timeoutMs", slice.as_millis() as u64)])
                        .timeout(slice + WAIT_MARGIN)
                })
                .await?;
            let status = status_of(r, id)?;
            if status.runtime_status.is_terminal() || tokio::time::Instant::now() >= until {
                return Ok(status);
            }
        }
    }

    /// A page of at most `page_size` (server default 100, at most 1000) statuses `filter`
    /// selects, from `continuation` (the previous page's; `None` for the first).
    pub async fn list_orchestrations(
        &self,
        filter: &OrchestrationFilter,
        page_size: Option<u32>,
        continuation: Option<&str>,
    ) -> Result<OrchestrationPage, Error> {
        let url = self.url(&["instances"]);
        let mut query = filter.query();
        if let Some(n) = page_size {
            query.push(("top", n.to_string()));
        }
        let r = self
            .send(Kind::Idempotent, || {
                let mut req = self.request(Method::GET, &url).query(&query);
                if let Some(c) = continuation {
                    req = req.header("x-ms-continuation-token", c);
                }
                req
            })
            .await?;
        let r = success(r)?;
        Ok(OrchestrationPage {
            instances: decode(&r)?,
            continuation: r
                .headers
                .get("x-ms-continuation-token")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        })
    }

    /// Sends an instance request that answers 202 without a body.
    async fn instance_command(
        &self,
        kind: Kind,
        id: &str,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<(), Error> {
        let iid = InstanceId::new(id)?;
        self.ensure_routes().await;
        let (r, retried) = self
            .send_tracked(kind, |_| {
                let req = self
                    .request(Method::POST, &self.instance_url(&iid, segments))
                    .query(query);
                with_input(req, body)
            })
            .await;
        success(r?)
            .map(drop)
            .map_err(|e| e.for_instance(id, retried))
    }

    /// Raises event `event` with `data` on instance `id` (durably; the instance takes it at
    /// its next turn). [`Error::InstanceNotFound`] for an unknown instance,
    /// [`Error::InstanceFinished`] for a finished one. Not idempotent (a repeat raises it
    /// again): retried only when the connection was refused.
    pub async fn raise_event(
        &self,
        id: &str,
        event: &str,
        data: Option<Value>,
    ) -> Result<(), Error> {
        if event.is_empty() {
            return Err(Error::InvalidArgument("the event name is empty".into()));
        }
        self.instance_command(Kind::Call, id, &["raiseEvent", event], &[], data.as_ref())
            .await
    }

    /// Terminates instance `id` with `reason` (its output), and with `recursive` the
    /// sub-orchestrations it waits for.
    pub async fn terminate(
        &self,
        id: &str,
        reason: Option<&str>,
        recursive: bool,
    ) -> Result<(), Error> {
        let mut q = self::reason(reason);
        if recursive {
            q.push(("recursive", "true".into()));
        }
        self.instance_command(Kind::Idempotent, id, &["terminate"], &q, None)
            .await
    }

    /// Suspends instance `id`: its events wait until it is resumed.
    pub async fn suspend(&self, id: &str, reason: Option<&str>) -> Result<(), Error> {
        self.instance_command(
            Kind::Idempotent,
            id,
            &["suspend"],
            &self::reason(reason),
            None,
        )
        .await
    }

    /// Resumes the suspended instance `id`.
    pub async fn resume(&self, id: &str, reason: Option<&str>) -> Result<(), Error> {
        self.instance_command(
            Kind::Idempotent,
            id,
            &["resume"],
            &self::reason(reason),
            None,
        )
        .await
    }

    /// Rewinds the failed instance `id` (HTTP 410 `instance_state` for another status).
    pub async fn rewind(&self, id: &str, reason: Option<&str>) -> Result<(), Error> {
        self.instance_command(Kind::Call, id, &["rewind"], &self::reason(reason), None)
            .await
    }

    /// Starts instance `id`'s orchestrator again with its input: under a new random id when
    /// `new_instance_id`, else under `id`, replacing it (it must have finished). Answers the
    /// management URLs of the instance started.
    pub async fn restart(&self, id: &str, new_instance_id: bool) -> Result<InstanceUrls, Error> {
        let iid = InstanceId::new(id)?;
        self.ensure_routes().await;
        let r = self
            .send(Kind::Call, || {
                self.request(Method::POST, &self.instance_url(&iid, &["restart"]))
                    .query(&[("restartWithNewInstanceId", new_instance_id)])
            })
            .await?;
        decode(&success(r).map_err(|e| e.for_instance(id, false))?)
    }

    /// Purges the finished instance `id` (and with `recursive` the sub-orchestrations it
    /// started); answers how many instances were removed. [`Error::InstanceNotFound`] for an
    /// unknown id; HTTP 409 `instance_state` for one that has not finished.
    pub async fn purge_orchestration(&self, id: &str, recursive: bool) -> Result<u64, Error> {
        let iid = InstanceId::new(id)?;
        self.ensure_routes().await;
        let r = self
            .send(Kind::Idempotent, || {
                let req = self.request(Method::DELETE, &self.instance_url(&iid, &[]));
                if recursive {
                    req.query(&[("recursive", "true")])
                } else {
                    req
                }
            })
            .await?;
        let r = success(r).map_err(|e| e.for_instance(id, false))?;
        Ok(decode::<PurgeResult>(&r)?.instances_deleted)
    }

    /// Purges every finished instance `filter` selects (pending, running and suspended ones
    /// never); answers how many were removed (0 when none matched).
    pub async fn purge_orchestrations(&self, filter: &OrchestrationFilter) -> Result<u64, Error> {
        let url = self.url(&["instances"]);
        let query = filter.query();
        let r = self
            .send(Kind::Idempotent, || {
                self.request(Method::DELETE, &url).query(&query)
            })
            .await?;
        if r.status == StatusCode::NOT_FOUND {
            let e = Error::from_response(404, &r.body);
            if e.code() == Some("instance_not_found") {
                return Ok(0);
            }
            return Err(e);
        }
        Ok(decode::<PurgeResult>(&success(r)?)?.instances_deleted)
    }
}

/// A status answer: 200 (finished) or 202 (not yet) with the status; errors typed for `id`.
fn status_of(r: Response, id: &str) -> Result<InstanceStatusBody, Error> {
    decode(&success(r).map_err(|e| e.for_instance(id, false))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_the_apis_query_parameters() {
        let f = OrchestrationFilter {
            runtime_status: vec![RuntimeStatus::Completed, RuntimeStatus::Failed],
            created_from: Some(UNIX_EPOCH + Duration::from_millis(1_714_979_289_123)),
            created_to: None,
            instance_id_prefix: Some("order-".into()),
            poisoned: true,
        };
        assert_eq!(
            f.query(),
            vec![
                ("runtimeStatus", "Completed,Failed".to_string()),
                ("createdTimeFrom", "2024-05-06T07:08:09.123Z".to_string()),
                ("instanceIdPrefix", "order-".to_string()),
                ("poisoned", "true".to_string()),
            ]
        );
        assert!(OrchestrationFilter::default().query().is_empty());
    }

    #[test]
    fn instance_urls_route_and_encode_the_id() {
        let c = Client::new("http://127.0.0.1:7071").unwrap();
        let id = InstanceId::new("a b/c").unwrap();
        assert_eq!(
            c.instance_url(&id, &["raiseEvent", "Go"]).as_str(),
            "http://127.0.0.1:7071/runtime/webhooks/durabletask/instances/a%20b%2Fc/raiseEvent/Go"
        );
        let made = new_instance_id();
        assert_eq!((made.len(), &made[8..9]), (36, "-"));
        assert!(InstanceId::new(&made).is_ok());
    }
}
