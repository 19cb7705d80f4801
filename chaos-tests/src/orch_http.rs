//! The orchestration HTTP calls of the `orchestration` workload, all in this one module: plain
//! reqwest on Durable Functions' paths (`/runtime/webhooks/durabletask`), until the Rust client
//! has orchestration methods to call instead.

use serde_json::Value;
use std::time::Duration;

/// The orchestration API's base path.
const BASE: &str = "/runtime/webhooks/durabletask";

/// How long a start may take before its outcome is unknown.
const START_TIMEOUT: Duration = Duration::from_secs(2);

/// The answer to a start.
#[derive(Debug)]
pub enum StartAnswer {
    /// 202: started.
    Accepted,
    /// 409 `instance_exists`: an instance with that id exists (the start of a unique id that a
    /// retry, ours or the node's, finds already done).
    Exists,
    /// Another 4xx (not 408/429): refused, nothing written.
    Refused(String),
    /// A timeout, a connection error, 408, 429 or a 5xx: unknown.
    Unknown(String),
}

/// The answer to a status read.
#[derive(Debug)]
pub enum StatusAnswer {
    /// 200 (finished) or 202 (not yet): the status body.
    Found(Value),
    /// 404 `instance_not_found`: no such instance.
    NotFound,
    /// Anything else (no answer, a 5xx, an unreadable body).
    Error(String),
}

/// The HTTP client of the orchestration calls.
#[derive(Debug, Clone)]
pub struct OrchHttp {
    http: reqwest::Client,
}

impl OrchHttp {
    /// A client with a 500 ms connect timeout (each call sets its own total timeout).
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_millis(500))
                .build()?,
        })
    }

    /// `POST {url}/.../orchestrators/{name}/{id}?reusePolicy=none` with `input` as the body
    /// (none when null): an existing instance of that id, finished or not, refuses the start.
    pub async fn start(&self, url: &str, name: &str, id: &str, input: &Value) -> StartAnswer {
        let mut req = self
            .http
            .post(format!("{url}{BASE}/orchestrators/{name}/{id}"))
            .query(&[("reusePolicy", "none")])
            .timeout(START_TIMEOUT);
        if !input.is_null() {
            req = req.json(input);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return StartAnswer::Unknown(e.to_string()),
        };
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        match status {
            202 => StartAnswer::Accepted,
            409 if body.contains("instance_exists") => StartAnswer::Exists,
            408 | 429 => StartAnswer::Unknown(format!("{status}: {body}")),
            400..=499 => StartAnswer::Refused(format!("{status}: {body}")),
            _ => StartAnswer::Unknown(format!("{status}: {body}")),
        }
    }

    /// `GET {url}/.../instances/{id}/wait?timeoutMs=N&showHistory=true&showHistoryOutput=true`:
    /// the status once the instance finished, or after `wait` (0: at once).
    pub async fn wait(&self, url: &str, id: &str, wait: Duration) -> StatusAnswer {
        let ms = wait.as_millis().to_string();
        let resp = self
            .http
            .get(format!("{url}{BASE}/instances/{id}/wait"))
            .query(&[
                ("timeoutMs", ms.as_str()),
                ("showHistory", "true"),
                ("showHistoryOutput", "true"),
            ])
            .timeout(wait + Duration::from_secs(5))
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => return StatusAnswer::Error(e.to_string()),
        };
        match resp.status().as_u16() {
            200 | 202 => match resp.json::<Value>().await {
                Ok(v) => StatusAnswer::Found(v),
                Err(e) => StatusAnswer::Error(format!("unreadable status: {e}")),
            },
            s => {
                let body = resp.text().await.unwrap_or_default();
                if s == 404 && body.contains("instance_not_found") {
                    StatusAnswer::NotFound
                } else {
                    StatusAnswer::Error(format!("{s}: {body}"))
                }
            }
        }
    }
}
