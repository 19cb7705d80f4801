//! `perdure-bench ingest`: stream ingestion from a Kafka-protocol broker, end to end, against
//! nodes started from the real binary.
//!
//! Per scenario (1 node, or 3 nodes with replication 3; keys uniform or zipf):
//!
//! 1. **Drain**: a fresh `perdure-kafka-mock` (librdkafka's mock cluster) with one topic of
//!    `--source-partitions` partitions is preloaded with `--records` records, key `k<i>` (one of
//!    `--counters` counters, picked uniform or zipf 0.99, the partition by the key as a Kafka
//!    producer does), value `1`. The subscription (`counter`, `$key`, `add`, input `$value`) is
//!    PUT, and the time from the PUT to every record applied with no lag gives records/s
//!    (progress every second: applied, lag, rate).
//! 2. **Latency at a fixed rate**: a producer writes at `--rate` records/s (default half the
//!    drain rate) for `--rate-seconds`, in small batches every 10 ms stamped with their time.
//!    Record-to-commit latency is read from the nodes' `perdure_ingest_commit_latency_seconds`
//!    histogram (the difference over the phase, summed over the nodes; p50/p99 interpolated
//!    within its buckets), and the time from the producer's last write to every record applied
//!    ("zero lag within X ms").
//! 3. **Verification**: every counter is read back over HTTP (64 at a time) and compared with
//!    what was produced for its key.
//! 4. **HTTP batches for comparison**: the load generator (`load.rs`) on the same nodes, 100
//!    signals per request, 16 requests in flight, the same key count and distribution.

use crate::load::{self, Dist, Keys, Op, Plan, Target};
use crate::suite::{machine, wait_balanced, workspace_root, write_config};
use anyhow::{bail, Context};
use futures::future::join_all;
use perdure_harness::brokers::{self, KafkaMock};
use perdure_harness::{Node, NodeSpec};
use rand::SeedableRng;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The Durable Functions base of perdure's HTTP API.
const BASE: &str = "/runtime/webhooks/durabletask";
/// The source topic.
const TOPIC: &str = "events";
/// How often the producer of the latency phase writes.
const PRODUCE_EVERY: Duration = Duration::from_millis(10);

/// Options of `perdure-bench ingest`.
#[derive(Debug, Clone, clap::Args)]
pub struct IngestArgs {
    /// Where results go (`ingest.json`, `ingest.md`; default `target/bench/ingest-<unix time>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The `perdure` binary (default: `perdure` next to this program).
    #[arg(long)]
    pub bin: Option<PathBuf>,
    /// Node counts to run, comma-separated (3 = replication 3).
    #[arg(long, value_delimiter = ',', default_value = "1,3")]
    pub nodes: Vec<usize>,
    /// Key distributions, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "uniform,zipf")]
    pub keys: Vec<Dist>,
    /// The broker (only `kafka`, the librdkafka mock cluster, so far).
    #[arg(long, default_value = "kafka")]
    pub broker: Broker,
    /// Records preloaded for the drain.
    #[arg(long, default_value_t = 2_000_000)]
    pub records: u64,
    /// Counters (distinct keys).
    #[arg(long, default_value_t = 10_000)]
    pub counters: u32,
    /// Partitions of the source topic.
    #[arg(long, default_value_t = 8)]
    pub source_partitions: u32,
    /// Offered records/s of the latency phase (default: half the drain rate just measured).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seconds the latency phase's producer writes.
    #[arg(long, default_value_t = 20.0)]
    pub rate_seconds: f64,
    /// Partitions of the perdure nodes.
    #[arg(long, default_value_t = 16)]
    pub partitions: u32,
    /// Seconds measured of the HTTP batch comparison (after 1 s of warm-up; 0 skips it).
    #[arg(long, default_value_t = 5.0)]
    pub http_seconds: f64,
}

/// The source broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Broker {
    /// `perdure-kafka-mock`: librdkafka's in-memory mock cluster, one broker.
    Kafka,
}

/// Where and with what the scenarios run (from `perdure-bench ingest` or the suite).
#[derive(Debug, Clone)]
pub struct Setup {
    /// The `perdure` binary.
    pub bin: PathBuf,
    /// Where the nodes keep their data.
    pub data: PathBuf,
    /// Partitions of the nodes.
    pub partitions: u32,
    /// Records preloaded.
    pub records: u64,
    /// Counters.
    pub counters: u32,
    /// Source partitions.
    pub source_partitions: u32,
    /// Offered rate of the latency phase (`None`: half the drain rate).
    pub rate: Option<f64>,
    /// Seconds of the latency phase's producer.
    pub rate_seconds: f64,
    /// Seconds of the HTTP batch comparison (0: skipped).
    pub http_seconds: f64,
}

/// One scenario's result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IngestRow {
    /// Nodes (3 = replication 3).
    pub nodes: usize,
    /// Key distribution.
    pub dist: Dist,
    /// Records preloaded.
    pub records: u64,
    /// The largest source partition's share of the records (the partition follows the key).
    pub max_partition_share: f64,
    /// Seconds from the PUT to every record applied with no lag.
    pub drain_secs: f64,
    /// Records per second of the drain.
    pub drain_per_sec: f64,
    /// Node CPU cores used during the drain (all nodes).
    pub drain_node_cores: f64,
    /// Offered records/s of the latency phase.
    pub rate: f64,
    /// Records the latency phase produced.
    pub rate_records: u64,
    /// Records/s the producer achieved.
    pub rate_achieved: f64,
    /// Record-to-commit p50, ms (from the histogram's buckets).
    pub latency_p50_ms: f64,
    /// Record-to-commit p99, ms.
    pub latency_p99_ms: f64,
    /// Records the histogram counted in the phase.
    pub latency_count: u64,
    /// Ms from the producer's last write to every record applied.
    pub zero_lag_ms: f64,
    /// Highest lag seen during the latency phase.
    pub max_lag: u64,
    /// Counters read back, and how many differed from what was produced.
    pub verified: u64,
    /// Counters that differed.
    pub mismatched: u64,
    /// Records dead-lettered (0 expected).
    pub dead_lettered: u64,
    /// The HTTP batch path on the same nodes: adds/s, p50 ms, p99 ms (100 signals/request).
    pub http_adds_per_sec: Option<f64>,
    /// Its p99, ms.
    pub http_p99_ms: Option<f64>,
}

/// Summaries: the markdown table of `rows`.
pub fn markdown(rows: &[IngestRow]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "\n## Stream ingestion (Kafka mock, `perdure-bench ingest`)\n\nDrain = preloaded records from the subscription's PUT to zero lag; latency = record timestamp to the target partition's answer (`perdure_ingest_commit_latency_seconds`, bucket-interpolated) at a fixed offered rate; zero lag = from the producer's last write to every record applied. Counters read back and compared. HTTP = the load generator, 100 signals per request, 16 in flight, same keys.\n\n| nodes | keys | records | max partition share | drain records/s | node cores | offered/s | p50 | p99 | zero lag after stop | max lag | verified (mismatched) | HTTP batches adds/s | HTTP p99 |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {:?} | {} | {:.1}% | {:.0} | {:.2} | {:.0} | {:.1} ms | {:.1} ms | {:.0} ms | {} | {} ({}) | {} | {} |",
            r.nodes,
            r.dist,
            r.records,
            r.max_partition_share * 100.0,
            r.drain_per_sec,
            r.drain_node_cores,
            r.rate,
            r.latency_p50_ms,
            r.latency_p99_ms,
            r.zero_lag_ms,
            r.max_lag,
            r.verified,
            r.mismatched,
            r.http_adds_per_sec.map_or("-".into(), |v| format!("{v:.0}")),
            r.http_p99_ms.map_or("-".into(), |v| format!("{v:.1} ms")),
        );
    }
    s
}

fn log(t: Instant, msg: &str) {
    eprintln!("[{:>6.1} s] {msg}", t.elapsed().as_secs_f64());
}

/// Nodes started from the real binary, stopped when dropped.
struct Nodes {
    nodes: Vec<Node>,
    urls: Vec<String>,
}

impl Nodes {
    async fn start(setup: &Setup, n: usize) -> anyhow::Result<Self> {
        let dir = setup.data.join(format!("ingest-{n}"));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        let specs: Vec<NodeSpec> = (1..=n as u64)
            .map(|id| NodeSpec::new(id, 90, &dir))
            .collect::<Result<_, _>>()?;
        for s in &specs {
            write_config(s, &specs, setup.partitions, None)?;
        }
        let mut nodes: Vec<Node> = specs
            .iter()
            .map(|s| Node::new(s.clone(), &setup.bin))
            .collect();
        for node in &mut nodes {
            node.start(&Default::default())?;
        }
        let urls: Vec<String> = specs.iter().map(NodeSpec::url).collect();
        for u in &urls {
            if !perdure_harness::ready(u, Duration::from_secs(60)).await {
                bail!("{u} not ready within 60 s");
            }
        }
        if n > 1 {
            wait_balanced(&urls[0], n).await;
        }
        Ok(Self { nodes, urls })
    }

    fn cpu(&self) -> f64 {
        self.nodes
            .iter()
            .filter_map(Node::pid)
            .map(|pid| load::cpu_seconds(&format!("/proc/{pid}/stat")))
            .sum()
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            let _ = n.stop(Duration::from_secs(10));
        }
    }
}

/// The subscription's status (`GET .../subscriptions/{name}`).
async fn status(http: &reqwest::Client, url: &str, name: &str) -> Option<Value> {
    http.get(format!("{url}{BASE}/subscriptions/{name}"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// Applied + dead-lettered, and the lag, of a status.
fn progress(s: &Value) -> (u64, u64) {
    (
        s["applied"].as_u64().unwrap_or(0) + s["dead_lettered"].as_u64().unwrap_or(0),
        s["lag"].as_u64().unwrap_or(u64::MAX),
    )
}

/// Polls the status every `every` until `total` records are applied (or dead-lettered) with no
/// lag; prints progress every second; returns the time it took from `since`, the last status
/// and the highest lag seen.
async fn wait_drained(
    http: &reqwest::Client,
    url: &str,
    name: &str,
    total: u64,
    since: Instant,
    every: Duration,
    within: Duration,
) -> anyhow::Result<(Duration, Value, u64)> {
    let mut last_print = Instant::now();
    let mut last_applied: Option<u64> = None;
    let mut max_lag = 0;
    let mut last = Value::Null;
    loop {
        if let Some(s) = status(http, url, name).await {
            let (done, lag) = progress(&s);
            if lag != u64::MAX {
                max_lag = max_lag.max(lag);
            }
            if done >= total && lag == 0 {
                return Ok((since.elapsed(), s, max_lag));
            }
            last_applied.get_or_insert(done);
            if last_print.elapsed() >= Duration::from_secs(1) {
                let rate = done.saturating_sub(last_applied.unwrap_or(done)) as f64
                    / last_print.elapsed().as_secs_f64();
                eprintln!(
                    "  {:>6.1} s: applied {done} / {total}, lag {lag}, {rate:.0} records/s",
                    since.elapsed().as_secs_f64()
                );
                last_print = Instant::now();
                last_applied = Some(done);
            }
            last = s;
        }
        if since.elapsed() > within {
            bail!("{name} did not drain {total} records within {within:?}: {last:#}");
        }
        tokio::time::sleep(every).await;
    }
}

/// The `perdure_ingest_commit_latency_seconds` buckets of subscription `name`, summed over the
/// nodes: (upper bound, cumulative count), sorted.
async fn latency_buckets(http: &reqwest::Client, urls: &[String], name: &str) -> Vec<(f64, u64)> {
    let mut sum: Vec<(f64, u64)> = Vec::new();
    let want = format!("subscription=\"{name}\"");
    for u in urls {
        let Ok(r) = http.get(format!("{u}/metrics")).send().await else {
            continue;
        };
        let text = r.text().await.unwrap_or_default();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("perdure_ingest_commit_latency_seconds_bucket{")
            else {
                continue;
            };
            if !rest.contains(&want) {
                continue;
            }
            let Some((labels, value)) = rest.split_once("} ") else {
                continue;
            };
            let le = labels
                .split(',')
                .find_map(|l| l.strip_prefix("le=\""))
                .map(|l| l.trim_end_matches('"'));
            let bound = match le {
                Some("+Inf") => f64::INFINITY,
                Some(v) => v.parse().unwrap_or(f64::NAN),
                None => continue,
            };
            let count = value.trim().parse::<f64>().unwrap_or(0.0) as u64;
            match sum.iter_mut().find(|(b, _)| *b == bound) {
                Some(e) => e.1 += count,
                None => sum.push((bound, count)),
            }
        }
    }
    sum.sort_by(|a, b| a.0.total_cmp(&b.0));
    sum
}

/// The `q` quantile (seconds) of the difference `after - before` of cumulative buckets,
/// interpolated linearly within its bucket (as Prometheus' `histogram_quantile`), and the count.
fn quantile(before: &[(f64, u64)], after: &[(f64, u64)], q: f64) -> (f64, u64) {
    let delta: Vec<(f64, u64)> = after
        .iter()
        .map(|(b, c)| {
            let was = before.iter().find(|(x, _)| x == b).map_or(0, |(_, c)| *c);
            (*b, c.saturating_sub(was))
        })
        .collect();
    let total = delta.last().map_or(0, |d| d.1);
    if total == 0 {
        return (f64::NAN, 0);
    }
    let rank = q * total as f64;
    let mut prev = (0.0, 0u64);
    for &(bound, count) in &delta {
        if count as f64 >= rank {
            if bound.is_infinite() {
                return (prev.0, total);
            }
            let inside = (count - prev.1) as f64;
            let frac = if inside > 0.0 {
                (rank - prev.1 as f64) / inside
            } else {
                1.0
            };
            return (prev.0 + (bound - prev.0) * frac, total);
        }
        prev = (bound, count);
    }
    (prev.0, total)
}

/// Now in ms since the epoch, as a Kafka record's timestamp.
fn kafka_now() -> rskafka::chrono::DateTime<rskafka::chrono::Utc> {
    use rskafka::chrono::TimeZone;
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0));
    rskafka::chrono::Utc
        .timestamp_millis_opt(ms)
        .single()
        .unwrap_or_default()
}

/// The source partition of key index `k` (the key decides, as a Kafka producer's partitioner).
fn partition_of(k: u32, partitions: u32) -> u32 {
    // a multiplicative hash: neighbouring ranks of the zipf land on different partitions
    (k.wrapping_mul(2_654_435_761) >> 7) % partitions
}

fn key_name(k: u32) -> String {
    format!("k{k}")
}

/// Preloads `records` records into the topic; adds each to `expected`; returns the largest
/// partition's share.
async fn preload(
    bootstrap: &str,
    setup: &Setup,
    dist: Dist,
    expected: &mut [i64],
    seed: u64,
) -> anyhow::Result<f64> {
    let keys = Keys::new(setup.counters, dist);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut per: Vec<Vec<brokers::KafkaRecord>> =
        (0..setup.source_partitions).map(|_| Vec::new()).collect();
    for _ in 0..setup.records {
        let k = keys.pick(&mut rng);
        expected[k as usize] += 1;
        per[partition_of(k, setup.source_partitions) as usize].push(brokers::KafkaRecord {
            key: Some(key_name(k).into_bytes()),
            headers: Vec::new(),
            value: b"1".to_vec(),
        });
    }
    let max = per.iter().map(Vec::len).max().unwrap_or(0);
    let produced = join_all(
        per.into_iter()
            .enumerate()
            .map(|(p, records)| brokers::produce_kafka(bootstrap, TOPIC, p as u32, records)),
    )
    .await;
    for r in produced {
        r?;
    }
    Ok(max as f64 / setup.records.max(1) as f64)
}

/// Writes at `rate` records/s for `secs` (a batch every [`PRODUCE_EVERY`], each partition's
/// records in one produce request, the partitions in parallel); returns the records written,
/// the time of the last write and the rate achieved.
async fn produce_at(
    bootstrap: &str,
    setup: &Setup,
    dist: Dist,
    rate: f64,
    secs: f64,
    expected: &mut [i64],
    seed: u64,
) -> anyhow::Result<(u64, Instant, f64)> {
    use rskafka::client::partition::{Compression, UnknownTopicHandling};
    let client = rskafka::client::ClientBuilder::new(vec![bootstrap.to_string()])
        .build()
        .await
        .context("connecting the producer")?;
    let mut parts = Vec::new();
    for p in 0..setup.source_partitions {
        parts.push(Arc::new(
            client
                .partition_client(TOPIC, p as i32, UnknownTopicHandling::Retry)
                .await
                .context("partition client")?,
        ));
    }
    let keys = Keys::new(setup.counters, dist);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(PRODUCE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last = Instant::now();
    while started.elapsed().as_secs_f64() < secs {
        tick.tick().await;
        let due = ((started.elapsed().as_secs_f64().min(secs) * rate) as u64).saturating_sub(sent);
        if due == 0 {
            continue;
        }
        let now = kafka_now();
        let mut per: Vec<Vec<rskafka::record::Record>> =
            (0..setup.source_partitions).map(|_| Vec::new()).collect();
        for _ in 0..due {
            let k = keys.pick(&mut rng);
            expected[k as usize] += 1;
            per[partition_of(k, setup.source_partitions) as usize].push(rskafka::record::Record {
                key: Some(key_name(k).into_bytes()),
                value: Some(b"1".to_vec()),
                headers: Default::default(),
                timestamp: now,
            });
        }
        let results = join_all(
            per.into_iter()
                .zip(&parts)
                .filter(|(r, _)| !r.is_empty())
                .map(|(r, part)| async move { part.produce(r, Compression::NoCompression).await }),
        )
        .await;
        for r in results {
            r.context("produce")?;
        }
        sent += due;
        last = Instant::now();
    }
    let achieved = sent as f64 / started.elapsed().as_secs_f64();
    Ok((sent, last, achieved))
}

/// Every counter's value now (0 when it does not exist), 64 reads at a time.
async fn read_counters(http: &reqwest::Client, url: &str, counters: u32) -> Vec<i64> {
    use futures::StreamExt;
    let mut got: Vec<(usize, i64)> = futures::stream::iter(0..counters as usize)
        .map(|k| async move {
            let v = async {
                let r = http
                    .get(format!(
                        "{url}{BASE}/entities/counter/{}",
                        key_name(k as u32)
                    ))
                    .send()
                    .await
                    .ok()?;
                if r.status().as_u16() == 404 {
                    return Some(0);
                }
                r.json::<Value>().await.ok()?.as_i64()
            }
            .await;
            (k, v.unwrap_or(0))
        })
        .buffer_unordered(64)
        .collect()
        .await;
    got.sort_unstable();
    got.into_iter().map(|(_, v)| v).collect()
}

/// Reads every counter back (64 at a time); returns (read, mismatched), printing the first few
/// mismatches.
async fn verify(http: &reqwest::Client, url: &str, expected: &[i64]) -> anyhow::Result<(u64, u64)> {
    use futures::StreamExt;
    let results: Vec<(usize, Option<i64>)> =
        futures::stream::iter(expected.iter().enumerate().filter(|(_, &e)| e > 0))
            .map(|(k, _)| async move {
                let got = async {
                    let r = http
                        .get(format!(
                            "{url}{BASE}/entities/counter/{}",
                            key_name(k as u32)
                        ))
                        .send()
                        .await
                        .ok()?;
                    r.json::<Value>().await.ok()?.as_i64()
                }
                .await;
                (k, got)
            })
            .buffer_unordered(64)
            .collect()
            .await;
    let mut bad = 0;
    for (k, got) in &results {
        if *got != Some(expected[*k]) {
            bad += 1;
            if bad <= 5 {
                eprintln!(
                    "  MISMATCH counter {}: got {got:?}, produced {}",
                    key_name(*k as u32),
                    expected[*k]
                );
            }
        }
    }
    Ok((results.len() as u64, bad))
}

/// One scenario on running nodes: its own broker, subscription and counters.
async fn scenario(
    setup: &Setup,
    nodes: &Nodes,
    dist: Dist,
    t: Instant,
) -> anyhow::Result<IngestRow> {
    let n = nodes.urls.len();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let url = nodes.urls[0].clone();
    let kafka = KafkaMock::start(TOPIC, setup.source_partitions)
        .context("starting perdure-kafka-mock (cargo build --release -p perdure-kafka-mock)")?;
    let name = format!("bench-{dist:?}").to_lowercase();
    let mut expected = vec![0i64; setup.counters as usize];
    log(
        t,
        &format!(
            "{n} node(s), {dist:?}: preloading {} records into {} partitions",
            setup.records, setup.source_partitions
        ),
    );
    // the counters as earlier scenarios on the same nodes left them (their records, their HTTP
    // batches): what this one produces comes on top
    let counters_before = read_counters(&http, &url, setup.counters).await;
    let p0 = Instant::now();
    let share = preload(kafka.bootstrap(), setup, dist, &mut expected, 1).await?;
    log(
        t,
        &format!(
            "  preloaded in {:.1} s ({:.0} records/s; largest partition {:.1}%)",
            p0.elapsed().as_secs_f64(),
            setup.records as f64 / p0.elapsed().as_secs_f64(),
            share * 100.0
        ),
    );
    // the drain: from the PUT to zero lag
    let spec = json!({
        "source": {"kafka": {"brokers": [kafka.bootstrap()], "topic": TOPIC}},
        "mapping": {"entity": "counter", "key": "$key", "operation": "add", "input": "$value"}
    });
    let cpu0 = nodes.cpu();
    let put_at = Instant::now();
    let r = http
        .put(format!("{url}{BASE}/subscriptions/{name}"))
        .json(&spec)
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("PUT subscription: {} {}", r.status(), r.text().await?);
    }
    let (took, s, _) = wait_drained(
        &http,
        &url,
        &name,
        setup.records,
        put_at,
        Duration::from_millis(100),
        Duration::from_secs(1800),
    )
    .await?;
    let drain_node_cores = (nodes.cpu() - cpu0) / took.as_secs_f64();
    let drain_per_sec = setup.records as f64 / took.as_secs_f64();
    log(
        t,
        &format!(
            "  drained {} records in {:.2} s: {drain_per_sec:.0} records/s, nodes {drain_node_cores:.2} cores",
            setup.records,
            took.as_secs_f64()
        ),
    );
    let mut dead_lettered = s["dead_lettered"].as_u64().unwrap_or(0);
    // the latency phase at a fixed offered rate
    let rate = setup.rate.unwrap_or(drain_per_sec / 2.0).max(100.0);
    log(
        t,
        &format!(
            "  latency phase: {rate:.0} records/s for {} s",
            setup.rate_seconds
        ),
    );
    let before = latency_buckets(&http, &nodes.urls, &name).await;
    let max_lag = Arc::new(AtomicU64::new(0));
    let lag_watch = {
        let (http, url, name, max_lag) = (http.clone(), url.clone(), name.clone(), max_lag.clone());
        tokio::spawn(async move {
            let mut last_print = Instant::now();
            let started = Instant::now();
            let mut prev: Option<u64> = None;
            loop {
                if let Some(s) = status(&http, &url, &name).await {
                    let (done, lag) = progress(&s);
                    if lag != u64::MAX {
                        max_lag.fetch_max(lag, Ordering::Relaxed);
                    }
                    if last_print.elapsed() >= Duration::from_secs(1) {
                        let rate = prev.map_or(0.0, |p| {
                            done.saturating_sub(p) as f64 / last_print.elapsed().as_secs_f64()
                        });
                        eprintln!(
                            "  {:>6.1} s: applied {done}, lag {lag}, {rate:.0} records/s",
                            started.elapsed().as_secs_f64()
                        );
                        last_print = Instant::now();
                        prev = Some(done);
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let (sent, stopped_at, achieved) = produce_at(
        kafka.bootstrap(),
        setup,
        dist,
        rate,
        setup.rate_seconds,
        &mut expected,
        2,
    )
    .await?;
    lag_watch.abort();
    let total = setup.records + sent;
    let (zero_lag, s, max_lag_tail) = wait_drained(
        &http,
        &url,
        &name,
        total,
        stopped_at,
        Duration::from_millis(20),
        Duration::from_secs(600),
    )
    .await?;
    let after = latency_buckets(&http, &nodes.urls, &name).await;
    let (p50, count) = quantile(&before, &after, 0.5);
    let (p99, _) = quantile(&before, &after, 0.99);
    dead_lettered = dead_lettered.max(s["dead_lettered"].as_u64().unwrap_or(0));
    let max_lag = max_lag.load(Ordering::Relaxed).max(max_lag_tail);
    log(
        t,
        &format!(
            "  offered {rate:.0}/s (achieved {achieved:.0}/s, {sent} records): p50 {:.1} ms, p99 {:.1} ms ({count} observed); zero lag {:.0} ms after the producer stopped",
            p50 * 1000.0,
            p99 * 1000.0,
            zero_lag.as_secs_f64() * 1000.0
        ),
    );
    // verification: every counter against what was produced
    let v0 = Instant::now();
    let expected: Vec<i64> = expected
        .iter()
        .zip(&counters_before)
        .map(|(produced, was)| produced + was)
        .collect();
    let (verified, mismatched) = verify(&http, &url, &expected).await?;
    log(
        t,
        &format!(
            "  verified {verified} counters in {:.1} s: {mismatched} mismatched",
            v0.elapsed().as_secs_f64()
        ),
    );
    // the subscription goes before its broker: a subscription whose broker is gone kept the
    // next one's consumers from starting (seen with 0.1.0: `partitions: []` for a minute)
    let _ = http
        .delete(format!("{url}{BASE}/subscriptions/{name}"))
        .send()
        .await;
    drop(kafka);
    // the HTTP batch path on the same nodes
    let (mut http_adds, mut http_p99) = (None, None);
    if setup.http_seconds > 0.0 {
        let plan = Plan {
            target: Target::Perdure,
            url: url.clone(),
            keys: setup.counters,
            dist,
            op: Op::Signal,
            batch: 100,
            concurrency: 16,
            rate: None,
            warmup: Duration::from_secs(1),
            measure: Duration::from_secs_f64(setup.http_seconds),
            routing: true,
            attempts: 3,
            prefix: load::fresh_prefix(),
            tick: Duration::from_millis(250),
            progress: false,
        };
        log(t, &format!("  HTTP batches: {}", plan.describe()));
        let o = load::execute(plan).await?;
        log(t, &format!("  -> {}", o.summary()));
        if !o.verified() {
            bail!(
                "HTTP batches: applied {} vs acknowledged {}",
                o.applied,
                o.acknowledged
            );
        }
        http_adds = Some(o.per_sec);
        http_p99 = Some(o.q(0.99));
    }
    Ok(IngestRow {
        nodes: n,
        dist,
        records: setup.records,
        max_partition_share: share,
        drain_secs: took.as_secs_f64(),
        drain_per_sec,
        drain_node_cores,
        rate,
        rate_records: sent,
        rate_achieved: achieved,
        latency_p50_ms: p50 * 1000.0,
        latency_p99_ms: p99 * 1000.0,
        latency_count: count,
        zero_lag_ms: zero_lag.as_secs_f64() * 1000.0,
        max_lag,
        verified,
        mismatched,
        dead_lettered,
        http_adds_per_sec: http_adds,
        http_p99_ms: http_p99,
    })
}

/// Runs every (node count, distribution) scenario; node counts on fresh nodes, the
/// distributions one after another on them. A failed scenario is logged and the rest go on.
pub async fn run_scenarios(
    setup: &Setup,
    node_counts: &[usize],
    dists: &[Dist],
    t: Instant,
) -> (Vec<IngestRow>, Vec<String>) {
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for &n in node_counts {
        log(t, &format!("starting {n} node(s)"));
        let nodes = match Nodes::start(setup, n).await {
            Ok(nodes) => nodes,
            Err(e) => {
                failed.push(format!("{n} node(s): {e:#}"));
                continue;
            }
        };
        for &dist in dists {
            match scenario(setup, &nodes, dist, t).await {
                Ok(r) => rows.push(r),
                Err(e) => {
                    log(t, &format!("{n} node(s), {dist:?} FAILED: {e:#}"));
                    failed.push(format!("{n} node(s), {dist:?}: {e:#}"));
                }
            }
        }
        log(t, &format!("stopping {n} node(s)"));
        drop(nodes);
    }
    (rows, failed)
}

/// The `perdure` binary: `bin`, else next to this program.
pub fn binary(bin: Option<&Path>) -> anyhow::Result<PathBuf> {
    let bin = match bin {
        Some(b) => b.to_path_buf(),
        None => std::env::current_exe()?
            .parent()
            .context("the program's directory")?
            .join("perdure"),
    };
    if !bin.exists() {
        bail!(
            "{} does not exist: build it (cargo build --release -p perdure-cli) or pass --bin",
            bin.display()
        );
    }
    Ok(bin)
}

/// `perdure-bench ingest`.
pub async fn run(args: IngestArgs) -> anyhow::Result<()> {
    let out = args.out.clone().unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        workspace_root().join(format!("target/bench/ingest-{t}"))
    });
    std::fs::create_dir_all(&out).with_context(|| out.display().to_string())?;
    let setup = Setup {
        bin: binary(args.bin.as_deref())?,
        data: out.clone(),
        partitions: args.partitions,
        records: args.records,
        counters: args.counters,
        source_partitions: args.source_partitions,
        rate: args.rate,
        rate_seconds: args.rate_seconds,
        http_seconds: args.http_seconds,
    };
    let t = Instant::now();
    log(
        t,
        &format!(
            "perdure-bench ingest: {}; broker {:?}; results in {}",
            machine(),
            args.broker,
            out.display()
        ),
    );
    let (rows, failed) = run_scenarios(&setup, &args.nodes, &args.keys, t).await;
    let v = json!({
        "machine": machine(),
        "args": format!("{args:?}"),
        "ingest": rows,
        "failed": failed,
    });
    std::fs::write(out.join("ingest.json"), serde_json::to_string_pretty(&v)?)?;
    let md = markdown(&rows);
    std::fs::write(out.join("ingest.md"), &md)?;
    println!("{md}");
    if !failed.is_empty() {
        bail!("{}", failed.join("; "));
    }
    Ok(())
}
