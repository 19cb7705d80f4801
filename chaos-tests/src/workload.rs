//! Client workers: each picks, from its own seeded generator, a workload, a key and an operation,
//! records the invocation, runs it through the Rust client, and records how it ended.

use perdure_chaos::history::{Event, EventType};
use perdure_client::{Client, Error as ClientError};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The workloads (`ingest` has no client workers: a producer and subscriptions, `ingest.rs`).
pub const WORKLOADS: [&str; 6] = [
    "register",
    "counter",
    "list",
    "probe",
    "orchestration",
    "ingest",
];

/// Keys per workload (few keys: contention is the point; per-key histories stay searchable).
fn keys(workload: &str) -> u64 {
    match workload {
        "register" => 8,
        "counter" => 4,
        "list" => 4,
        _ => 3,
    }
}

/// Operations of one worker after which it appends to fresh list keys.
const LIST_GENERATION_OPS: u64 = 400;

/// Operations of one worker after which it uses fresh register keys.
const REGISTER_GENERATION_OPS: u64 = 800;

/// The process id of the final reads.
pub const FINAL_PROCESS: u64 = 1_000_000;

/// The shared history: events in the order they were recorded, with monotonic timestamps.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    next_op: AtomicU64,
    events: Mutex<Vec<Event>>,
    keys: Mutex<BTreeSet<(String, String)>>,
}

impl Recorder {
    /// A recorder whose clock starts now.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            next_op: AtomicU64::new(0),
            events: Mutex::new(Vec::new()),
            keys: Mutex::new(BTreeSet::new()),
        }
    }

    /// µs since the start.
    pub fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// ms since the start.
    pub fn now_ms(&self) -> u64 {
        self.now_us() / 1000
    }

    /// Records an invocation; returns its op id.
    pub fn invoke(&self, process: u64, workload: &str, key: &str, f: &str, value: Value) -> u64 {
        let op = self.next_op.fetch_add(1, Ordering::Relaxed);
        self.keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((workload.to_string(), key.to_string()));
        let mut ev = self.events.lock().unwrap_or_else(|p| p.into_inner());
        ev.push(Event {
            op,
            process,
            kind: EventType::Invoke,
            time_us: self.now_us(),
            workload: workload.into(),
            key: key.into(),
            f: f.into(),
            value,
            error: None,
        });
        op
    }

    /// Records a completion of `op`.
    #[allow(clippy::too_many_arguments)]
    pub fn complete(
        &self,
        op: u64,
        process: u64,
        workload: &str,
        key: &str,
        f: &str,
        kind: EventType,
        value: Value,
        error: Option<String>,
    ) {
        let mut ev = self.events.lock().unwrap_or_else(|p| p.into_inner());
        ev.push(Event {
            op,
            process,
            kind,
            time_us: self.now_us(),
            workload: workload.into(),
            key: key.into(),
            f: f.into(),
            value,
            error,
        });
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every (workload, key) touched.
    pub fn keys(&self) -> Vec<(String, String)> {
        self.keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Completions so far by type: (ok, fail, info), and invocations.
    pub fn counts(&self) -> (u64, u64, u64, u64) {
        let ev = self.events.lock().unwrap_or_else(|p| p.into_inner());
        let mut c = (0, 0, 0, 0);
        for e in ev.iter() {
            match e.kind {
                EventType::Ok => c.0 += 1,
                EventType::Fail => c.1 += 1,
                EventType::Info => c.2 += 1,
                EventType::Invoke => c.3 += 1,
            }
        }
        c
    }
}

/// How an error ends an operation: `Fail` when it certainly did not happen (a 4xx other than
/// 408/429, or any error of a read), `Info` otherwise.
fn classify(e: &ClientError, read: bool) -> EventType {
    if read {
        return EventType::Fail;
    }
    match e {
        ClientError::Api { status, .. }
            if (400..500).contains(status) && *status != 408 && *status != 429 =>
        {
            EventType::Fail
        }
        ClientError::InvalidEntityId(_) | ClientError::InvalidArgument(_) => EventType::Fail,
        _ => EventType::Info,
    }
}

/// Builds the client of worker `w`: based at one node; even workers route to partition leaders,
/// odd ones send everything to their node (which forwards).
pub fn client(url: &str, routing: bool) -> anyhow::Result<Client> {
    Ok(Client::builder(url)
        .timeout(Duration::from_secs(2))
        .connect_timeout(Duration::from_millis(500))
        .attempts(3)
        .backoff(Duration::from_millis(50), Duration::from_millis(500))
        .routing(routing)
        .build()?)
}

/// One operation: records it, runs it, records the outcome; returns the ok value.
#[allow(clippy::too_many_arguments)]
pub async fn run_op(
    rec: &Recorder,
    c: &Client,
    process: u64,
    seed: u64,
    workload: &str,
    key: &str,
    f: &str,
    input: Value,
) -> Option<Value> {
    let op = rec.invoke(process, workload, key, f, input.clone());
    let read = f == "read" || f == "final-read";
    let result: Result<Value, ClientError> = match (workload, f) {
        ("register", "write") => c.call("register", key, "set", Some(input)).await,
        ("register", "cas") => c.call("register", key, "cas", Some(input)).await,
        ("register", _) if input["via"] == "call" => c.call("register", key, "get", None).await,
        ("counter", "add") | ("list", "append") => {
            let idem = format!("chaos-{seed}-op{op}");
            let op_name = if workload == "counter" {
                "add"
            } else {
                "append"
            };
            c.signal_with_key(workload, key, op_name, Some(input), &idem)
                .await
                .map(|_| Value::Null)
        }
        ("probe", "visit") => c.call("probe", key, "visit", None).await,
        (_, _) => c.get(workload, key).await.map(|v| v.unwrap_or(Value::Null)),
    };
    match result {
        Ok(v) => {
            rec.complete(
                op,
                process,
                workload,
                key,
                f,
                EventType::Ok,
                v.clone(),
                None,
            );
            Some(v)
        }
        Err(e) => {
            rec.complete(
                op,
                process,
                workload,
                key,
                f,
                classify(&e, read),
                Value::Null,
                Some(e.to_string()),
            );
            None
        }
    }
}

/// A worker: runs operations until `stop`, a short seeded pause between two.
pub async fn worker(
    w: u64,
    seed: u64,
    workloads: Vec<String>,
    c: Client,
    orch: crate::orchestration::Starter,
    rec: Arc<Recorder>,
    stop: Arc<AtomicBool>,
) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed.wrapping_mul(0x9e37_79b9).wrapping_add(w));
    let mut seen: HashMap<String, Value> = HashMap::new();
    let mut n: u64 = 0;
    let mut instances: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let unique = w * 1_000_000 + n;
        let mut wl = workloads[rng.gen_range(0..workloads.len())].clone();
        if wl == "orchestration" && workloads.len() > 1 && rng.gen_bool(0.6) {
            // an instance costs a few commands and 5-20 activities: picked less often, so the
            // other workloads keep most of their operations beside it (still seeded)
            wl = workloads[rng.gen_range(0..workloads.len())].clone();
        }
        if wl == "orchestration" {
            // a new instance each time (its own ids, its own HTTP calls)
            instances += 1;
            crate::orchestration::start(&rec, &orch, w, instances).await;
            let pause = rng.gen_range(2..15);
            tokio::time::sleep(Duration::from_millis(pause)).await;
            continue;
        }
        let k = rng.gen_range(0..keys(&wl));
        // a list's whole state is rewritten by every append: move to fresh list keys as the
        // run goes on (per worker, by its own operation count), so lists stay short
        let key = if wl == "list" {
            format!("l{}-{k}", n / LIST_GENERATION_OPS)
        } else if wl == "register" {
            // fresh register keys too: per-key histories stay small enough to search
            format!("r{}-{k}", n / REGISTER_GENERATION_OPS)
        } else {
            format!("{}{k}", &wl[..1])
        };
        let (f, input) = match wl.as_str() {
            "register" => match rng.gen_range(0..10) {
                0..=3 => (
                    "read",
                    json!({"via": if rng.gen_bool(0.5) { "call" } else { "state" }}),
                ),
                4..=6 => ("write", json!(unique)),
                _ => (
                    "cas",
                    json!({"expected": seen.get(&key).cloned().unwrap_or(Value::Null), "new": unique}),
                ),
            },
            "counter" => {
                if rng.gen_range(0..10) < 7 {
                    ("add", json!(rng.gen_range(1..=5)))
                } else {
                    ("read", Value::Null)
                }
            }
            "list" => {
                if rng.gen_range(0..10) < 7 {
                    ("append", json!(unique))
                } else {
                    ("read", Value::Null)
                }
            }
            _ => ("visit", Value::Null),
        };
        let out = run_op(&rec, &c, w, seed, &wl, &key, f, input).await;
        if wl == "register" && f == "read" {
            if let Some(v) = out {
                seen.insert(key, v);
            }
        }
        let pause = rng.gen_range(2..15);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}
