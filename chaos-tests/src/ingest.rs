//! The `ingest` workload: stream ingestion under faults, exactly once.
//!
//! The harness runs a NATS JetStream server (`nats-server -js`) on 127.0.0.1, on its own side:
//! the nemeses never touch it, and since the network faults drop only packets to or from the
//! nodes' peer ports (`net.rs`), partitions and loss never cut a node from the broker (a node cut
//! from its peers loses its leaderships, so its consumers stop anyway). Two subscriptions read
//! the one stream: `chaos-counts` (`add` of `/amount` to counter `/user`) and
//! `chaos-positions` (`append` of `$position` to list `/user`). A producer publishes
//! `{"user", "amount"}` records at a steady rate for the whole run, each tick one `produce` op
//! in the history (the positions the broker acknowledged). A monitor reads the subscriptions'
//! status every second: for the progress line, and to tell the nemesis which nodes run the
//! consumers (`Cluster::consumers`: the "leader" variants pick one of them half the time).
//!
//! After the final heal: the producer has stopped; the harness waits (bounded) until both
//! subscriptions' checkpoints reach the stream's end with no lag, reads the whole stream back
//! from the broker, then every counter and list. The checker is
//! `perdure_chaos::checker::ingest`.

use crate::workload::{Recorder, FINAL_PROCESS};
use anyhow::{bail, Context};
use futures::StreamExt;
use perdure_chaos::checker::ingest::{COUNTER_PREFIX, LIST_PREFIX, STREAM_KEY, WORKLOAD};
use perdure_chaos::history::EventType;
use perdure_harness::brokers::NatsServer;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The producer's process id in the history.
pub const PRODUCER_PROCESS: u64 = FINAL_PROCESS + 1;
/// The JetStream stream.
const STREAM: &str = "chaos";
/// The subject records are published on.
const SUBJECT: &str = "chaos.events";
/// The subscriptions: name, entity type, operation, input.
const SUBSCRIPTIONS: [(&str, &str, &str, &str); 2] = [
    ("chaos-counts", "counter", "add", "/amount"),
    ("chaos-positions", "list", "append", "$position"),
];
/// The subscription whose consumers the nemesis is told about (both read the same stream).
const COUNTS: &str = SUBSCRIPTIONS[0].0;
/// Distinct record keys (users): many entities, lists of a few hundred positions at most.
const USERS: u64 = 500;
/// How often the producer publishes (the rate is spread over ticks).
const TICK: Duration = Duration::from_millis(100);
/// How long the drain may take after the final heal.
const DRAIN_BUDGET: Duration = Duration::from_secs(240);
/// How long reading the stream back and the final reads of the entities may take.
const READ_BUDGET: Duration = Duration::from_secs(90);
/// Final entity reads in flight at once.
const READERS: usize = 8;
/// The subscriptions' routes, under the Durable Functions base.
const ROUTE: &str = "/runtime/webhooks/durabletask/subscriptions";

/// The running workload: the broker, the producer and the monitor.
#[derive(Debug)]
pub struct IngestRun {
    nats: NatsServer,
    producer: tokio::task::JoinHandle<()>,
    monitor: tokio::task::JoinHandle<()>,
    /// The last position the broker acknowledged.
    last: Arc<AtomicU64>,
    /// Records acknowledged.
    produced: Arc<AtomicU64>,
    /// The monitor's last line.
    pub progress: Arc<Mutex<String>>,
    urls: Arc<Vec<String>>,
    http: reqwest::Client,
    rate: u64,
}

/// What the final phase found, for the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IngestSummary {
    /// Records in the stream at the end (its last position).
    pub produced: u64,
    /// Records per second asked of the producer.
    pub rate: u64,
    /// Each subscription's last status summary.
    pub subscriptions: Value,
    /// How long the drain took after the final heal (ms).
    pub drain_ms: u64,
    /// Whether both subscriptions caught up within the budget.
    pub drained: bool,
    /// Counters and lists read.
    pub entities_read: usize,
    /// Entity reads that never succeeded.
    pub failed_reads: usize,
}

fn status_url(url: &str, name: &str) -> String {
    format!("{url}{ROUTE}/{name}")
}

/// One subscription's status, from the first node that answers (starting at `first`).
async fn status(
    http: &reqwest::Client,
    urls: &[String],
    first: usize,
    name: &str,
) -> Option<Value> {
    for i in 0..urls.len() {
        let url = &urls[(first + i) % urls.len()];
        let Ok(r) = http.get(status_url(url, name)).send().await else {
            continue;
        };
        if !r.status().is_success() {
            continue;
        }
        if let Ok(v) = r.json::<Value>().await {
            return Some(v);
        }
    }
    None
}

/// The parts of a status the harness looks at: applied, lag, per source partition the committed
/// position, the consumer's node, state and error.
fn summarize(s: &Value) -> Value {
    let parts: Vec<Value> = s["partitions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            json!({
                "partition": p["source_partition"],
                "position": p["position"],
                "end": p["end"],
                "applied": p["applied"],
                "lag": p["lag"],
                "node": p["node"],
                "state": p["state"],
                "error": p["error"],
            })
        })
        .collect();
    json!({
        "applied": s["applied"],
        "dead_lettered": s["dead_lettered"],
        "failed": s["failed"],
        "lag": s["lag"],
        "error": s["error"],
        "partitions": parts,
    })
}

/// Whether a status shows every record up to `target` applied: each source partition's
/// checkpoint at or past it, no lag, and as many records counted.
fn caught_up(s: &Value, target: u64) -> bool {
    let parts = s["partitions"].as_array().cloned().unwrap_or_default();
    let done = s["applied"].as_u64().unwrap_or(0) + s["dead_lettered"].as_u64().unwrap_or(0);
    !parts.is_empty()
        && parts
            .iter()
            .all(|p| p["position"].as_u64().unwrap_or(0) >= target)
        && s["lag"].as_u64() == Some(0)
        && done >= target
}

/// One line about a status: committed position, applied, lag, consumer node and state.
fn line(name: &str, s: &Value) -> String {
    let parts: Vec<String> = s["partitions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            format!(
                "pos {} node {} {}{}",
                p["position"].as_u64().unwrap_or(0),
                p["node"].as_u64().map_or("-".into(), |n| n.to_string()),
                p["state"].as_str().unwrap_or("?"),
                p["error"]
                    .as_str()
                    .map(|e| format!(" ({})", e.chars().take(60).collect::<String>()))
                    .unwrap_or_default()
            )
        })
        .collect();
    format!(
        "{name}: applied {} lag {} [{}]",
        s["applied"].as_u64().unwrap_or(0),
        s["lag"].as_u64().unwrap_or(0),
        parts.join("; ")
    )
}

/// Starts the broker (under `dir`, on a port no node uses as its peer port), creates the stream
/// and the two subscriptions, and starts the producer (`rate` records a second until `stop`)
/// and the monitor (which keeps `consumers` up to date).
#[allow(clippy::too_many_arguments)]
pub async fn start(
    dir: &Path,
    peer_ports: &[u16],
    urls: Arc<Vec<String>>,
    http: reqwest::Client,
    rec: Arc<Recorder>,
    seed: u64,
    rate: u64,
    stop: Arc<AtomicBool>,
    consumers: Arc<Mutex<Vec<u64>>>,
) -> anyhow::Result<IngestRun> {
    // a fresh stream each run (a report folder may be reused)
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    let dir = dir.to_path_buf();
    let ports = peer_ports.to_vec();
    let nats = tokio::task::spawn_blocking(move || {
        for _ in 0..5 {
            let n = NatsServer::start(&dir)?;
            // the fault rules match peer ports by number: never share one
            if !ports.contains(&n.port()) {
                return Ok(n);
            }
        }
        bail!("nats-server: no port apart from the nodes' peer ports")
    })
    .await?
    .context("starting nats-server (apt-get install -y nats-server, or bash .ci/brokers-env.sh)")?;
    let url = nats.url();
    perdure_harness::brokers::create_nats_stream(&url, STREAM, &[SUBJECT])
        .await
        .context("creating the stream")?;
    let source = json!({"nats": {"url": url, "stream": STREAM, "subject": SUBJECT}});
    for (name, entity, operation, input) in SUBSCRIPTIONS {
        let body = json!({"source": source, "mapping": {
            "entity": entity, "key": "/user", "operation": operation, "input": input}});
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut i = 0;
        loop {
            let u = &urls[i % urls.len()];
            i += 1;
            let last = match http.put(status_url(u, name)).json(&body).send().await {
                Ok(r) if r.status().is_success() => break,
                Ok(r) => format!("{}: {}", r.status(), r.text().await.unwrap_or_default()),
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                bail!("creating subscription {name}: {last}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    println!(
        "ingest: nats-server at {url} (log {}), stream {STREAM}, subscriptions {}; producing {rate} records/s over {USERS} keys",
        nats.log().display(),
        SUBSCRIPTIONS.map(|s| s.0).join(", ")
    );
    let last = Arc::new(AtomicU64::new(0));
    let produced = Arc::new(AtomicU64::new(0));
    let producer = tokio::spawn(produce(
        url.clone(),
        rec,
        seed,
        rate,
        stop.clone(),
        last.clone(),
        produced.clone(),
    ));
    let progress = Arc::new(Mutex::new(String::from("ingest: starting")));
    let monitor = tokio::spawn(monitor(
        urls.clone(),
        http.clone(),
        stop,
        produced.clone(),
        progress.clone(),
        consumers,
    ));
    Ok(IngestRun {
        nats,
        producer,
        monitor,
        last,
        produced,
        progress,
        urls,
        http,
        rate,
    })
}

/// The producer: every tick a batch of `rate / 10` records over random users, amounts 1-5;
/// each batch is a `produce` op, ok with the first and last position the broker acknowledged.
async fn produce(
    url: String,
    rec: Arc<Recorder>,
    seed: u64,
    rate: u64,
    stop: Arc<AtomicBool>,
    last: Arc<AtomicU64>,
    produced: Arc<AtomicU64>,
) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x696e_6765_7374);
    let per_tick = (rate * TICK.as_millis() as u64 / 1000).max(1);
    let js = match async_nats::connect(&url).await {
        Ok(c) => async_nats::jetstream::new(c),
        Err(e) => {
            eprintln!("ingest producer: cannot connect to {url}: {e}");
            return;
        }
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let op = rec.invoke(
            PRODUCER_PROCESS,
            WORKLOAD,
            STREAM_KEY,
            "produce",
            json!({"records": per_tick}),
        );
        let mut acks = Vec::new();
        let mut error = None;
        for _ in 0..per_tick {
            let payload = json!({"user": format!("u{}", rng.gen_range(0..USERS)),
                "amount": rng.gen_range(1..=5)})
            .to_string();
            match js.publish(SUBJECT, payload.into()).await {
                Ok(ack) => acks.push(ack),
                Err(e) => {
                    error = Some(e.to_string());
                    break;
                }
            }
        }
        let (mut first, mut end) = (u64::MAX, 0);
        for ack in acks {
            match ack.await {
                Ok(a) => {
                    first = first.min(a.sequence);
                    end = end.max(a.sequence);
                    produced.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => error = Some(e.to_string()),
            }
        }
        last.fetch_max(end, Ordering::Relaxed);
        let (kind, value) = if error.is_none() && end > 0 {
            (EventType::Ok, json!({"first": first, "last": end}))
        } else {
            (EventType::Info, Value::Null)
        };
        rec.complete(
            op,
            PRODUCER_PROCESS,
            WORKLOAD,
            STREAM_KEY,
            "produce",
            kind,
            value,
            error,
        );
    }
}

/// Every second until `stop`: both subscriptions' status (for the progress line) and the nodes
/// running the consumers (for the nemesis).
async fn monitor(
    urls: Arc<Vec<String>>,
    http: reqwest::Client,
    stop: Arc<AtomicBool>,
    produced: Arc<AtomicU64>,
    progress: Arc<Mutex<String>>,
    consumers: Arc<Mutex<Vec<u64>>>,
) {
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        n += 1;
        let mut lines = vec![format!(
            "ingest: produced {}",
            produced.load(Ordering::Relaxed)
        )];
        let mut nodes = Vec::new();
        for (name, ..) in SUBSCRIPTIONS {
            match status(&http, &urls, n, name).await {
                Some(s) => {
                    if name == COUNTS {
                        nodes.extend(
                            s["partitions"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter_map(|p| p["node"].as_u64()),
                        );
                    }
                    lines.push(line(name, &s));
                }
                None => lines.push(format!("{name}: no status")),
            }
        }
        *consumers.lock().unwrap_or_else(|p| p.into_inner()) = nodes;
        *progress.lock().unwrap_or_else(|p| p.into_inner()) = lines.join(", ");
    }
}

impl IngestRun {
    /// The final phase (the producer stopped, the cluster healed): waits until both
    /// subscriptions caught up with the stream, reads the stream back and every counter and
    /// list into the history.
    pub async fn finish(
        self,
        rec: &Recorder,
        client: &perdure_client::Client,
    ) -> (IngestSummary, Vec<String>) {
        let mut problems = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.producer).await;
        self.monitor.abort();
        let url = self.nats.url();
        // the stream's end: the truth, whatever the producer saw of its acks
        let end = match stream_end(&url).await {
            Ok(e) => e,
            Err(e) => {
                problems.push(format!("ingest: the stream's end: {e}"));
                self.last.load(Ordering::Relaxed)
            }
        };
        println!(
            "[{:>5.1}s] ingest: {} records in the stream ({} acknowledged to the producer); waiting up to {DRAIN_BUDGET:?} for both subscriptions to apply them",
            rec.now_ms() as f64 / 1000.0,
            end,
            self.produced.load(Ordering::Relaxed)
        );
        let started = Instant::now();
        let ops: Vec<u64> = SUBSCRIPTIONS
            .iter()
            .map(|(name, ..)| {
                rec.invoke(
                    FINAL_PROCESS,
                    WORKLOAD,
                    name,
                    "drain",
                    json!({"target": end}),
                )
            })
            .collect();
        let mut last: Vec<Option<Value>> = vec![None; SUBSCRIPTIONS.len()];
        let mut done = vec![false; SUBSCRIPTIONS.len()];
        let mut printed = Instant::now();
        let mut n = 0usize;
        while started.elapsed() < DRAIN_BUDGET && done.iter().any(|d| !d) {
            n += 1;
            for (i, (name, ..)) in SUBSCRIPTIONS.iter().enumerate() {
                if done[i] {
                    continue;
                }
                if let Some(s) = status(&self.http, &self.urls, n, name).await {
                    done[i] = caught_up(&s, end);
                    last[i] = Some(s);
                }
            }
            if printed.elapsed() >= Duration::from_secs(3) {
                printed = Instant::now();
                let lines: Vec<String> = SUBSCRIPTIONS
                    .iter()
                    .zip(&last)
                    .map(|((name, ..), s)| {
                        s.as_ref()
                            .map_or(format!("{name}: no status"), |s| line(name, s))
                    })
                    .collect();
                println!(
                    "[{:>5.1}s] ingest drain (target position {end}): {}",
                    rec.now_ms() as f64 / 1000.0,
                    lines.join(", ")
                );
            }
            if done.iter().any(|d| !d) {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        let drain_ms = started.elapsed().as_millis() as u64;
        let mut subs = serde_json::Map::new();
        for (i, (name, ..)) in SUBSCRIPTIONS.iter().enumerate() {
            let summary = last[i].as_ref().map(summarize).unwrap_or(Value::Null);
            subs.insert(name.to_string(), summary.clone());
            let why = if done[i] {
                Value::Null
            } else {
                json!(format!(
                    "not caught up with position {end} within {DRAIN_BUDGET:?}: {}",
                    last[i]
                        .as_ref()
                        .map_or("no status".into(), |s| line(name, s))
                ))
            };
            rec.complete(
                ops[i],
                FINAL_PROCESS,
                WORKLOAD,
                name,
                "drain",
                EventType::Ok,
                json!({"caught_up": done[i], "why": why, "status": summary, "waited_ms": drain_ms}),
                None,
            );
        }
        let drained = done.iter().all(|d| *d);
        println!(
            "[{:>5.1}s] ingest: {} in {drain_ms} ms; reading the stream back and {} counters and lists",
            rec.now_ms() as f64 / 1000.0,
            if drained {
                "both subscriptions caught up"
            } else {
                "NOT CAUGHT UP"
            },
            2 * USERS
        );
        let deadline = Instant::now() + READ_BUDGET;
        let op = rec.invoke(
            FINAL_PROCESS,
            WORKLOAD,
            STREAM_KEY,
            "final-read",
            Value::Null,
        );
        match read_stream(&url, end, deadline).await {
            Ok(records) => rec.complete(
                op,
                FINAL_PROCESS,
                WORKLOAD,
                STREAM_KEY,
                "final-read",
                EventType::Ok,
                json!({ "records": records }),
                None,
            ),
            Err(e) => {
                problems.push(format!("ingest: reading the stream back: {e}"));
                rec.complete(
                    op,
                    FINAL_PROCESS,
                    WORKLOAD,
                    STREAM_KEY,
                    "final-read",
                    EventType::Fail,
                    Value::Null,
                    Some(e.to_string()),
                );
            }
        }
        let keys: Vec<(&str, String)> = (0..USERS)
            .flat_map(|u| [("counter", format!("u{u}")), ("list", format!("u{u}"))])
            .collect();
        let failed: Vec<String> = futures::stream::iter(keys.iter())
            .map(|(entity, user)| read_entity(rec, client, entity, user, deadline))
            .buffer_unordered(READERS)
            .filter_map(|r| async move { r })
            .collect()
            .await;
        let failed_reads = failed.len();
        problems.extend(failed.into_iter().take(10));
        (
            IngestSummary {
                produced: end,
                rate: self.rate,
                subscriptions: Value::Object(subs),
                drain_ms,
                drained,
                entities_read: keys.len() - failed_reads,
                failed_reads,
            },
            problems,
        )
    }
}

/// Reads `entity` `user` into the history (key `counter/USER` or `list/USER`), retried until
/// `deadline`; a problem line when it never succeeded.
async fn read_entity(
    rec: &Recorder,
    client: &perdure_client::Client,
    entity: &str,
    user: &str,
    deadline: Instant,
) -> Option<String> {
    let key = format!(
        "{}{user}",
        if entity == "counter" {
            COUNTER_PREFIX
        } else {
            LIST_PREFIX
        }
    );
    loop {
        let op = rec.invoke(FINAL_PROCESS, WORKLOAD, &key, "final-read", Value::Null);
        match client.get(entity, user).await {
            Ok(v) => {
                let v = v.unwrap_or(Value::Null);
                rec.complete(
                    op,
                    FINAL_PROCESS,
                    WORKLOAD,
                    &key,
                    "final-read",
                    EventType::Ok,
                    v,
                    None,
                );
                return None;
            }
            Err(e) => {
                rec.complete(
                    op,
                    FINAL_PROCESS,
                    WORKLOAD,
                    &key,
                    "final-read",
                    EventType::Fail,
                    Value::Null,
                    Some(e.to_string()),
                );
                if Instant::now() > deadline {
                    return Some(format!(
                        "final read of {entity} {user} did not succeed: {e}"
                    ));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// The stream's last position.
async fn stream_end(url: &str) -> anyhow::Result<u64> {
    let js = async_nats::jetstream::new(async_nats::connect(url).await?);
    let mut stream = js.get_stream(STREAM).await?;
    Ok(stream.info().await?.state.last_sequence)
}

/// Every record of the stream up to position `end`: `[position, user, amount]`.
async fn read_stream(url: &str, end: u64, deadline: Instant) -> anyhow::Result<Vec<Value>> {
    use async_nats::jetstream::consumer;
    let mut out = Vec::with_capacity(end as usize);
    if end == 0 {
        return Ok(out);
    }
    let js = async_nats::jetstream::new(async_nats::connect(url).await?);
    let stream = js.get_stream(STREAM).await?;
    let reader = stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await?;
    let mut messages = reader.messages().await?;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(next) = tokio::time::timeout(left, messages.next()).await else {
            bail!("{} of {end} records read within the budget", out.len());
        };
        let m = match next {
            Some(m) => m?,
            None => bail!("the stream's messages ended after {} records", out.len()),
        };
        let position = m
            .info()
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .stream_sequence;
        let body: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
        out.push(json!([position, body["user"], body["amount"]]));
        if position >= end {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{caught_up, line, summarize};
    use serde_json::json;

    /// A status as `GET .../subscriptions/{name}` answers it (one JetStream partition).
    fn body(position: u64, lag: Option<u64>, applied: u64) -> serde_json::Value {
        json!({"name": "chaos-counts", "applied": applied, "failed": 0, "dead_lettered": 0,
            "lag": lag.unwrap_or(0), "error": null,
            "partitions": [{"source_partition": 0, "home_partition": 3, "node": lag.map(|_| 2),
                "state": if lag.is_some() { "running" } else { "idle" }, "error": null,
                "position": position, "end": lag.map(|l| position + l), "lag": lag,
                "applied": applied, "failed": 0, "dead_lettered": 0, "checkpoint_at": null}]})
    }

    #[test]
    fn caught_up_needs_the_checkpoint_at_the_end_and_no_lag() {
        assert!(caught_up(&body(100, Some(0), 100), 100));
        assert!(caught_up(&body(100, None, 103), 100)); // duplicates count toward applied
        assert!(!caught_up(&body(99, Some(0), 100), 100));
        assert!(!caught_up(&body(100, Some(0), 90), 100));
        let mut no_lag_field = body(100, Some(0), 100);
        no_lag_field["lag"] = json!(null);
        assert!(!caught_up(&no_lag_field, 100));
        assert!(!caught_up(
            &json!({"applied": 100, "lag": 0, "partitions": []}),
            100
        ));
        let s = summarize(&body(100, Some(0), 100));
        assert_eq!(s["partitions"][0]["node"], 2);
        assert_eq!(s["partitions"][0]["position"], 100);
        assert!(line("c", &body(7, Some(3), 7)).contains("pos 7 node 2 running"));
    }
}
