//! The `orchestration` workload: workers start new instances (unique ids `{worker}-{n}`,
//! HelloSequence5 and FanOutFanIn(20) in turn); after the final heal every instance ever
//! invoked is read, waiting (bounded) for it to finish, with a summary of its history. The
//! checker is `perdure_chaos::checker::orchestration`; the HTTP calls are in `orch_http.rs`.

use crate::orch_http::{OrchHttp, StartAnswer, StatusAnswer};
use crate::workload::{Recorder, FINAL_PROCESS};
use perdure_chaos::checker::orchestration::{summarize, FAN_OUT, FAN_OUT_N, HELLO, WORKLOAD};
use perdure_chaos::history::EventType;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Attempts of one start (as the Rust client's entity calls): each unknown outcome is retried,
/// on the next node; a retry that finds the instance there (409) counts as started.
const ATTEMPTS: usize = 3;

/// Final reads in flight at once.
const READERS: usize = 16;

/// Longest single wait of a final read (it waits again until its deadline).
const MAX_WAIT: Duration = Duration::from_secs(10);

/// The orchestration side of a worker: the HTTP client and the nodes, its own first.
#[derive(Debug, Clone)]
pub struct Starter {
    /// The API client.
    pub http: OrchHttp,
    /// Every node's base URL.
    pub urls: Arc<Vec<String>>,
    /// The index of the worker's own node.
    pub first: usize,
}

/// The orchestrator and input of a worker's `n`th instance (from 1): HelloSequence5 and
/// FanOutFanIn(20) in turn.
fn pick(n: u64) -> (&'static str, Value) {
    if n % 2 == 1 {
        (HELLO, Value::Null)
    } else {
        (FAN_OUT, json!(FAN_OUT_N))
    }
}

/// Starts worker `process`'s `n`th instance and records the `start` operation: ok on 202 (or a
/// 409 on an instance of this never-reused id: an earlier attempt did it), fail on another 4xx
/// when no earlier attempt's outcome is unknown, info otherwise.
pub async fn start(rec: &Recorder, s: &Starter, process: u64, n: u64) {
    let id = format!("{process}-{n}");
    let (name, input) = pick(n);
    let f = "start";
    let op = rec.invoke(
        process,
        WORKLOAD,
        &id,
        f,
        json!({"orchestrator": name, "input": input}),
    );
    let mut unknown: Option<String> = None;
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
        }
        let url = &s.urls[(s.first + attempt) % s.urls.len()];
        let (kind, value, error) = match s.http.start(url, name, &id, &input).await {
            StartAnswer::Accepted => (EventType::Ok, json!({"attempts": attempt + 1}), None),
            StartAnswer::Exists => (
                EventType::Ok,
                json!({"attempts": attempt + 1, "existed": true}),
                None,
            ),
            StartAnswer::Refused(e) if unknown.is_none() => (EventType::Fail, Value::Null, Some(e)),
            StartAnswer::Refused(e) => (
                EventType::Info,
                Value::Null,
                Some(format!("{e} (after an unknown attempt: {unknown:?})")),
            ),
            StartAnswer::Unknown(e) => {
                unknown = Some(e);
                continue;
            }
        };
        rec.complete(op, process, WORKLOAD, &id, f, kind, value, error);
        return;
    }
    rec.complete(
        op,
        process,
        WORKLOAD,
        &id,
        f,
        EventType::Info,
        Value::Null,
        unknown,
    );
}

/// What a final read records of a status answer: status, name, output, failure and the
/// history's summary.
fn observed(body: &Value) -> Value {
    let history = body["historyEvents"]
        .as_array()
        .map(|h| summarize(h))
        .unwrap_or_default();
    json!({
        "found": true,
        "status": body["runtimeStatus"],
        "name": body["name"],
        "output": body["output"],
        "failure": body["failureDetails"],
        "history": history,
    })
}

fn finished(body: &Value) -> bool {
    matches!(
        body["runtimeStatus"].as_str(),
        Some("Completed" | "Failed" | "Terminated")
    )
}

/// Reads instance `id` (a `final-read` operation of [`FINAL_PROCESS`]), waiting until it
/// finishes or `deadline` passes (one read at least); nodes tried in turn from `first`. Err:
/// no status could be read at all.
async fn final_read(
    rec: &Recorder,
    http: &OrchHttp,
    urls: &[String],
    first: usize,
    id: &str,
    deadline: Instant,
) -> Result<(), String> {
    let f = "final-read";
    let op = rec.invoke(FINAL_PROCESS, WORKLOAD, id, f, Value::Null);
    let mut last: Option<Value> = None;
    let mut error = String::new();
    let mut i = first;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let url = &urls[i % urls.len()];
        i += 1;
        match http.wait(url, id, left.min(MAX_WAIT)).await {
            StatusAnswer::Found(body) => {
                let done = finished(&body);
                last = Some(body);
                if done {
                    break;
                }
            }
            StatusAnswer::NotFound => {
                rec.complete(
                    op,
                    FINAL_PROCESS,
                    WORKLOAD,
                    id,
                    f,
                    EventType::Ok,
                    json!({"found": false}),
                    None,
                );
                return Ok(());
            }
            StatusAnswer::Error(e) => {
                error = e;
                if Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    match last {
        Some(body) => {
            rec.complete(
                op,
                FINAL_PROCESS,
                WORKLOAD,
                id,
                f,
                EventType::Ok,
                observed(&body),
                None,
            );
            Ok(())
        }
        None => {
            rec.complete(
                op,
                FINAL_PROCESS,
                WORKLOAD,
                id,
                f,
                EventType::Fail,
                Value::Null,
                Some(error.clone()),
            );
            Err(error)
        }
    }
}

/// The final phase: reads every instance of `ids`, [`READERS`] at a time, each waiting for it
/// to finish until `budget` after this phase began (then one more read each, without waiting).
/// Returns a line per instance whose status could not be read at all.
pub async fn final_reads(
    rec: Arc<Recorder>,
    http: OrchHttp,
    urls: Arc<Vec<String>>,
    ids: Vec<String>,
    budget: Duration,
) -> Vec<String> {
    let deadline = Instant::now() + budget;
    let queue = Arc::new(Mutex::new(ids.into_iter().collect::<VecDeque<String>>()));
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut readers = Vec::new();
    for r in 0..READERS {
        let (rec, http, urls, queue, failures) = (
            rec.clone(),
            http.clone(),
            urls.clone(),
            queue.clone(),
            failures.clone(),
        );
        readers.push(tokio::spawn(async move {
            loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
                let Some(id) = next else { break };
                if let Err(e) = final_read(&rec, &http, &urls, r, &id, deadline).await {
                    failures
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(format!(
                            "final read of orchestration {id} did not succeed: {e}"
                        ));
                }
            }
        }));
    }
    for r in readers {
        let _ = r.await;
    }
    let out = failures.lock().unwrap_or_else(|p| p.into_inner()).clone();
    out
}
