//! `perdure-bench load`: a first load generator against a running node's HTTP API.
//!
//! Closed loop (`--concurrency` workers, each sending its next request when the last one is
//! acknowledged) or open loop (`--rate` requests per second on a fixed schedule, latency timed
//! from each request's intended send time, so a stall shows up in the latency instead of lowering
//! the offered load). Signals `add(1)` to counters: `--keys 1` is one hot counter. With
//! `--batch N` each request carries N signals through the batch endpoint. Every signal carries an
//! idempotency key. At the end the counters are read back: the applied sum must equal the
//! acknowledged signals (applied operations are counted, not accepted ones).
//!
//! `--target restate` drives the peer (`benches/peers/restate.sh`) the same way: each request is
//! a Restate ingress call `POST /Counter/{key}/add` with an `idempotency-key`, answered once the
//! add ran and is durable (like a perdure signal, answered once applied and durable); the
//! counters are read back with `GET /Counter/{key}/get`.

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use rand::Rng;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BASE: &str = "/runtime/webhooks/durabletask";

/// What the generator drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// A perdure node's HTTP API (`counter` entities).
    Perdure,
    /// A Restate server's ingress with the `Counter` object of `benches/peers/restate-counter`.
    Restate,
}

/// Options of one load run.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// The node's HTTP address (Restate: its ingress, e.g. `http://127.0.0.1:18080`).
    #[arg(long, default_value = "http://127.0.0.1:7071")]
    pub url: String,
    /// What to drive.
    #[arg(long, value_enum, default_value_t = Target::Perdure)]
    pub target: Target,
    /// Number of counters (1 = one hot key).
    #[arg(long, default_value_t = 10_000)]
    pub keys: u32,
    /// Concurrent requests in flight (closed loop) or connection pool size (open loop).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Open loop: requests per second on a fixed schedule. Omit for closed loop.
    #[arg(long)]
    pub rate: Option<u64>,
    /// Signals per request (>1 uses the batch endpoint).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Seconds of measurement.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Seconds of warm-up before measuring.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Counter key prefix (default: a fresh one per run, so runs do not mix).
    #[arg(long)]
    pub prefix: Option<String>,
    /// Write the results as JSON to this file too.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

struct Shared {
    http: reqwest::Client,
    target: Target,
    url: String,
    prefix: String,
    keys: u32,
    batch: usize,
    next_id: AtomicU64,
    acked: AtomicU64,
    errors: AtomicU64,
    measuring: std::sync::atomic::AtomicBool,
    hist: Mutex<Histogram<u64>>,
}

impl Shared {
    /// Sends one request (of `batch` signals); answers how many signals were acknowledged.
    async fn send(&self) -> anyhow::Result<u64> {
        if self.target == Target::Restate {
            let k = rand::thread_rng().gen_range(0..self.keys);
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let resp = self
                .http
                .post(format!("{}/Counter/{}{k}/add", self.url, self.prefix))
                .header("idempotency-key", format!("{}-{id}", self.prefix))
                .json(&1)
                .send()
                .await?;
            if resp.status() != 200 {
                bail!(
                    "status {}: {}",
                    resp.status(),
                    resp.text().await.unwrap_or_default()
                );
            }
            return Ok(1);
        }
        if self.batch <= 1 {
            let k = rand::thread_rng().gen_range(0..self.keys);
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let resp = self
                .http
                .post(format!(
                    "{}{BASE}/entities/counter/{}{k}?op=add",
                    self.url, self.prefix
                ))
                .header("Idempotency-Key", format!("{}-{id}", self.prefix))
                .json(&1)
                .send()
                .await?;
            if resp.status() != 202 {
                bail!(
                    "status {}: {}",
                    resp.status(),
                    resp.text().await.unwrap_or_default()
                );
            }
            return Ok(1);
        }
        let signals: Vec<_> = (0..self.batch)
            .map(|_| {
                let k = rand::thread_rng().gen_range(0..self.keys);
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                json!({"name": "counter", "key": format!("{}{k}", self.prefix), "op": "add", "input": 1,
                       "idempotencyKey": format!("{}-{id}", self.prefix)})
            })
            .collect();
        let resp = self
            .http
            .post(format!("{}{BASE}/entities:batch", self.url))
            .json(&json!({ "signals": signals }))
            .send()
            .await?;
        if resp.status() != 200 {
            bail!(
                "status {}: {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            );
        }
        let body: serde_json::Value = resp.json().await?;
        let ok = body["results"]
            .as_array()
            .map(|r| r.iter().filter(|x| x["accepted"] == true).count())
            .unwrap_or(0);
        Ok(ok as u64)
    }

    async fn one(&self, intended: Instant) {
        match self.send().await {
            Ok(n) => {
                if self.measuring.load(Ordering::Relaxed) {
                    let us = intended.elapsed().as_micros().max(1) as u64;
                    let _ = self.hist.lock().unwrap().record(us);
                }
                self.acked.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                if self.errors.fetch_add(1, Ordering::Relaxed) < 3 {
                    eprintln!("request failed: {e:#}");
                }
            }
        }
    }
}

/// Runs a load and prints (and optionally writes) the results.
pub async fn run(args: LoadArgs) -> anyhow::Result<()> {
    let prefix = args.prefix.clone().unwrap_or_else(|| {
        format!(
            "b{}-",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0)
                % 1_000_000_000
        )
    });
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .timeout(Duration::from_secs(30))
        .build()?;
    if args.target == Target::Restate && args.batch > 1 {
        bail!("--batch applies to perdure only (Restate's ingress takes one call per request)");
    }
    let ready = match args.target {
        Target::Perdure => http.get(format!("{}/readyz", args.url)).send().await,
        Target::Restate => {
            http.get(format!("{}/Counter/{prefix}ready/get", args.url))
                .send()
                .await
        }
    };
    if !matches!(&ready, Ok(r) if r.status().is_success()) {
        bail!(
            "{} is not ready ({:?}); start a node with `perdure serve` (or the peer with `bash benches/peers/restate.sh start`)",
            args.url,
            ready.map(|r| r.status())
        );
    }
    let shared = Arc::new(Shared {
        http,
        target: args.target,
        url: args.url.clone(),
        prefix: prefix.clone(),
        keys: args.keys.max(1),
        batch: args.batch.max(1),
        next_id: AtomicU64::new(0),
        acked: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        measuring: false.into(),
        hist: Mutex::new(Histogram::new_with_bounds(1, 120_000_000, 3)?),
    });
    let mode = match args.rate {
        Some(r) => format!("open loop at {r} requests/s"),
        None => format!("closed loop, {} in flight", args.concurrency),
    };
    eprintln!(
        "load on {:?}: {} counter(s) (prefix {prefix}), {} signal(s)/request, {mode}; warm-up {} s, measure {} s",
        args.target, args.keys, args.batch, args.warmup, args.seconds
    );
    let deadline = Instant::now() + Duration::from_secs_f64(args.warmup + args.seconds);
    let mut workers = Vec::new();
    match args.rate {
        None => {
            for _ in 0..args.concurrency {
                let s = shared.clone();
                workers.push(tokio::spawn(async move {
                    while Instant::now() < deadline {
                        s.one(Instant::now()).await;
                    }
                }));
            }
        }
        Some(rate) => {
            let s = shared.clone();
            let cap = args.concurrency * 16;
            let limit = Arc::new(tokio::sync::Semaphore::new(cap));
            workers.push(tokio::spawn(async move {
                let start = Instant::now();
                let mut i = 0u64;
                loop {
                    let intended = start + Duration::from_secs_f64(i as f64 / rate as f64);
                    if intended >= deadline {
                        // wait for every request still running (each holds a permit)
                        let _ = limit.acquire_many(cap as u32).await;
                        break;
                    }
                    tokio::time::sleep_until(intended.into()).await;
                    let Ok(permit) = limit.clone().acquire_owned().await else {
                        break;
                    };
                    let s = s.clone();
                    tokio::spawn(async move {
                        s.one(intended).await;
                        drop(permit);
                    });
                    i += 1;
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    let acked_at_start = shared.acked.load(Ordering::Relaxed);
    shared.measuring.store(true, Ordering::Relaxed);
    let measure_start = Instant::now();
    let mut last = acked_at_start;
    while Instant::now() < deadline {
        tokio::time::sleep(
            Duration::from_secs(1).min(deadline.saturating_duration_since(Instant::now())),
        )
        .await;
        let now = shared.acked.load(Ordering::Relaxed);
        eprintln!(
            "  {:>5.1} s  {:>9} signals/s  errors {}",
            measure_start.elapsed().as_secs_f64(),
            now - last,
            shared.errors.load(Ordering::Relaxed)
        );
        last = now;
    }
    let measured = shared.acked.load(Ordering::Relaxed) - acked_at_start;
    let secs = measure_start.elapsed().as_secs_f64();
    shared.measuring.store(false, Ordering::Relaxed);
    for w in workers {
        w.await?;
    }
    let total = shared.acked.load(Ordering::Relaxed);
    let applied = applied_sum(&shared)
        .await
        .context("reading the counters back")?;
    let h = shared.hist.lock().unwrap().clone();
    let q = |x: f64| h.value_at_quantile(x) as f64 / 1000.0;
    println!(
        "{:.0} signals/s acknowledged (durable, applied) over {secs:.1} s; request latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms; {} errors",
        measured as f64 / secs, q(0.5), q(0.99), q(0.999), h.max() as f64 / 1000.0, shared.errors.load(Ordering::Relaxed)
    );
    println!(
        "verification: {total} signals acknowledged in all, counters sum to {applied} ({} requests failed: outcome unknown)",
        shared.errors.load(Ordering::Relaxed)
    );
    if let Some(path) = &args.json {
        let v = json!({
            "target": args.target, "keys": args.keys, "batch": args.batch, "concurrency": args.concurrency, "rate": args.rate,
            "seconds": secs, "signals_per_sec": measured as f64 / secs,
            "latency_ms": {"p50": q(0.5), "p99": q(0.99), "p999": q(0.999), "max": h.max() as f64 / 1000.0},
            "errors": shared.errors.load(Ordering::Relaxed), "acknowledged": total, "applied": applied,
        });
        std::fs::write(path, serde_json::to_string_pretty(&v)?)?;
    }
    // A failed request's outcome is unknown (it may have been applied before the error), so
    // the applied sum lies between the acknowledged signals and those plus the unknown ones.
    let unknown = shared.errors.load(Ordering::Relaxed) * shared.batch as u64;
    if applied < total {
        bail!("applied {applied} < acknowledged {total}: an acknowledged signal was lost");
    }
    if applied > total + unknown {
        bail!("applied {applied} > acknowledged {total} + {unknown} unknown: a signal was applied twice");
    }
    Ok(())
}

/// Sums the run's counters: through perdure's list endpoint, or one `get` per Restate counter.
async fn applied_sum(s: &Shared) -> anyhow::Result<u64> {
    if s.target == Target::Restate {
        use futures::StreamExt;
        let values: Vec<anyhow::Result<u64>> = futures::stream::iter(0..s.keys)
            .map(|k| async move {
                let v: serde_json::Value = s
                    .http
                    .get(format!("{}/Counter/{}{k}/get", s.url, s.prefix))
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                v.as_u64().context("a counter's value")
            })
            .buffer_unordered(64)
            .collect()
            .await;
        return values.into_iter().sum();
    }
    let mut sum = 0u64;
    let mut cont: Option<String> = None;
    loop {
        let mut req = s
            .http
            .get(format!("{}{BASE}/entities/counter?top=1000", s.url));
        if let Some(c) = &cont {
            req = req.query(&[("continuation", c)]);
        }
        let body: serde_json::Value = req.send().await?.error_for_status()?.json().await?;
        for e in body["entities"].as_array().context("entities")? {
            if e["key"].as_str().is_some_and(|k| k.starts_with(&s.prefix)) {
                sum += e["state"].as_u64().unwrap_or(0);
            }
        }
        match body["continuation"].as_str() {
            Some(c) if !c.is_empty() => cont = Some(c.to_string()),
            _ => return Ok(sum),
        }
    }
}
