//! The load generator: drives a perdure cluster (through `perdure-client`, which sends each
//! request straight to its partition's leader and retries signals with their idempotency key) or
//! the Restate peer with counter `add`s, and verifies the applied counters at the end.
//!
//! Closed loop (`concurrency` workers, each sending its next request when the last one is
//! answered: the maximum throughput; never quote its latency) or open loop (`rate` requests per
//! second on a fixed schedule, latency timed from each request's *intended* send time, so a stall
//! shows up in the latency instead of lowering the offered load: no coordinated omission).
//! Latencies go to HdrHistograms, overall and per tick (by intended send time), so a run also
//! yields throughput and p99 over time.
//!
//! Operations: `signal` (one-way, answered once the add is durable and applied; idempotency key
//! on every signal; `batch` > 1 sends that many per request through the batch endpoint) or
//! `call` (request/response, answers the new value). Restate's `add` is answered once it ran and
//! is durable, like a perdure signal, with an `idempotency-key`; both operations are that call.
//!
//! Verification: every counter of the run is read back; the applied sum must lie between the
//! acknowledged adds and those plus the adds whose outcome is unknown (failed requests).

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use perdure_client::BatchSignal;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the generator drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// perdure's HTTP API (`counter` entities), through `perdure-client`.
    Perdure,
    /// A Restate server's ingress with the `Counter` object of `benches/peers/restate-counter`.
    Restate,
}

/// How keys are picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dist {
    /// Every counter equally likely.
    Uniform,
    /// Zipf with exponent 0.99 (YCSB's): counter of rank r has weight 1/r^0.99.
    Zipf,
}

/// What each request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// One-way `add(1)` with an idempotency key, answered once durable and applied.
    Signal,
    /// Request/response `add(1)`, answered with the new value once committed.
    Call,
}

/// Options of one load run (`perdure-bench load`).
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// A node's HTTP address (Restate: its ingress, e.g. `http://127.0.0.1:18080`). The perdure
    /// client learns the other members and the partition leaders from it.
    #[arg(long, default_value = "http://127.0.0.1:7071")]
    pub url: String,
    /// What to drive.
    #[arg(long, value_enum, default_value_t = Target::Perdure)]
    pub target: Target,
    /// Number of counters (1 = one hot key).
    #[arg(long, default_value_t = 10_000)]
    pub keys: u32,
    /// How counters are picked.
    #[arg(long, value_enum, default_value_t = Dist::Uniform)]
    pub dist: Dist,
    /// What each request does.
    #[arg(long, value_enum, default_value_t = Op::Signal)]
    pub op: Op,
    /// Closed loop: requests in flight. Open loop: the most in flight (the schedule waits when
    /// reached; the wait counts in the latency).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Open loop: requests per second on a fixed schedule. Omit for closed loop.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Signals per request (>1 uses the batch endpoint).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Seconds of measurement.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Seconds of warm-up before measuring.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Send everything to `--url` (its node forwards) instead of straight to leaders.
    #[arg(long)]
    pub no_routing: bool,
    /// Counter key prefix (default: a fresh one per run, so runs do not mix).
    #[arg(long)]
    pub prefix: Option<String>,
    /// Write the results as JSON to this file too.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// Write throughput and latency over time as an SVG plot to this file.
    #[arg(long)]
    pub plot: Option<std::path::PathBuf>,
}

/// One run, fully described.
#[derive(Debug, Clone)]
pub struct Plan {
    /// What to drive.
    pub target: Target,
    /// Where (a perdure node, or Restate's ingress).
    pub url: String,
    /// Counters.
    pub keys: u32,
    /// Key distribution.
    pub dist: Dist,
    /// Operation.
    pub op: Op,
    /// Signals per request.
    pub batch: usize,
    /// Closed loop: in flight; open loop: most in flight.
    pub concurrency: usize,
    /// Open loop rate (requests/s), `None` = closed loop.
    pub rate: Option<f64>,
    /// Warm-up.
    pub warmup: Duration,
    /// Measurement.
    pub measure: Duration,
    /// perdure: route to leaders.
    pub routing: bool,
    /// Attempts per request (perdure client's retry policy; 1 = no retries).
    pub attempts: u32,
    /// Key prefix of this run's counters.
    pub prefix: String,
    /// Timeline resolution.
    pub tick: Duration,
    /// Show a progress bar.
    pub progress: bool,
}

impl Plan {
    /// A plan from the command line.
    pub fn from_args(a: &LoadArgs) -> Self {
        Plan {
            target: a.target,
            url: a.url.clone(),
            keys: a.keys.max(1),
            dist: a.dist,
            op: a.op,
            batch: a.batch.max(1),
            concurrency: a.concurrency.max(1),
            rate: a.rate,
            warmup: Duration::from_secs_f64(a.warmup),
            measure: Duration::from_secs_f64(a.seconds),
            routing: !a.no_routing,
            attempts: 3,
            prefix: a.prefix.clone().unwrap_or_else(fresh_prefix),
            tick: Duration::from_secs(1),
            progress: true,
        }
    }

    /// One line saying what runs.
    pub fn describe(&self) -> String {
        let mode = match self.rate {
            Some(r) => format!(
                "open loop at {r:.0} req/s (at most {} in flight)",
                self.concurrency
            ),
            None => format!("closed loop, {} in flight", self.concurrency),
        };
        format!(
            "{:?} {:?}: {} counter(s) {:?}, {} per request, {mode}, warm-up {:.0} s, measure {:.0} s",
            self.target,
            self.op,
            self.keys,
            self.dist,
            self.batch,
            self.warmup.as_secs_f64(),
            self.measure.as_secs_f64()
        )
    }
}

/// A counter prefix unique to this moment.
pub fn fresh_prefix() -> String {
    format!(
        "b{}-",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
            % 1_000_000_000
    )
}

/// One timeline tick.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Tick {
    /// Seconds since the run started (warm-up included), at the tick's start.
    pub t: f64,
    /// Adds acknowledged in this tick, per second.
    pub per_sec: f64,
    /// Latency of the requests intended to be sent in this tick, ms (`None`: none completed).
    pub p50_ms: Option<f64>,
    /// p99 of the same, ms.
    pub p99_ms: Option<f64>,
    /// Failed requests (completed in this tick).
    pub errors: u64,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The plan it ran.
    pub plan: Plan,
    /// Adds acknowledged per second in the measurement window.
    pub per_sec: f64,
    /// Requests per second offered (open loop) or completed (closed loop) in the window.
    pub requests_per_sec: f64,
    /// Request latency over the window (µs).
    pub hist: Histogram<u64>,
    /// Requests that failed (outcome unknown), whole run.
    pub errors: u64,
    /// Adds acknowledged, whole run.
    pub acknowledged: u64,
    /// Sum of the run's counters read back.
    pub applied: u64,
    /// Adds whose outcome is unknown (in failed requests).
    pub unknown: u64,
    /// The timeline, warm-up included.
    pub timeline: Vec<Tick>,
    /// CPU seconds the generator used per second of run.
    pub generator_cpu: f64,
    /// When the run's event happened, seconds since the start.
    pub event_at: Option<f64>,
}

impl Outcome {
    /// Latency quantile in ms.
    pub fn q(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }

    /// Applied equals acknowledged (within the unknown ones).
    pub fn verified(&self) -> bool {
        self.applied >= self.acknowledged && self.applied <= self.acknowledged + self.unknown
    }

    /// The one-line summary.
    pub fn summary(&self) -> String {
        format!(
            "{:.0} adds/s ({:.0} req/s); latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms; {} errors; {} acknowledged, {} applied{}",
            self.per_sec,
            self.requests_per_sec,
            self.q(0.5),
            self.q(0.99),
            self.q(0.999),
            self.hist.max() as f64 / 1000.0,
            self.errors,
            self.acknowledged,
            self.applied,
            if self.verified() { " (verified)" } else { " (VERIFICATION FAILED)" }
        )
    }

    /// JSON form.
    pub fn json(&self) -> serde_json::Value {
        let p = &self.plan;
        json!({
            "target": p.target, "op": p.op, "keys": p.keys, "dist": p.dist, "batch": p.batch,
            "concurrency": p.concurrency, "rate": p.rate, "routing": p.routing,
            "seconds": p.measure.as_secs_f64(), "warmup": p.warmup.as_secs_f64(),
            "adds_per_sec": self.per_sec, "requests_per_sec": self.requests_per_sec,
            "latency_ms": {"p50": self.q(0.5), "p90": self.q(0.9), "p99": self.q(0.99),
                           "p999": self.q(0.999), "max": self.hist.max() as f64 / 1000.0,
                           "count": self.hist.len()},
            "errors": self.errors, "acknowledged": self.acknowledged, "applied": self.applied,
            "unknown": self.unknown, "verified": self.verified(),
            "generator_cpu": self.generator_cpu,
            "timeline": self.timeline,
        })
    }
}

/// Throughput and latency over time of `runs` (name, outcome) as two plot panels, with vertical
/// `markers`: acknowledged adds per second; p99 (and, for a single run, p50) by intended send
/// time.
pub fn timeline_panels(
    runs: &[(&str, &Outcome)],
    markers: &[(f64, String)],
) -> Vec<crate::plot::Panel> {
    use crate::plot::{Panel, Series};
    let tick_ms = runs
        .first()
        .map(|r| r.1.plan.tick.as_millis())
        .unwrap_or(1000);
    let mut latency = Vec::new();
    for (name, o) in runs {
        let label = |q: &str| {
            if runs.len() == 1 {
                q.to_string()
            } else {
                format!("{name} {q}")
            }
        };
        latency.push(Series {
            name: label("p99"),
            points: o
                .timeline
                .iter()
                .filter_map(|t| Some((t.t, t.p99_ms?)))
                .collect(),
        });
        if runs.len() == 1 {
            latency.push(Series {
                name: label("p50"),
                points: o
                    .timeline
                    .iter()
                    .filter_map(|t| Some((t.t, t.p50_ms?)))
                    .collect(),
            });
        }
    }
    vec![
        Panel {
            title: "acknowledged adds per second".into(),
            x_label: "seconds since the start (warm-up included)".into(),
            y_label: "adds/s".into(),
            series: runs
                .iter()
                .map(|(name, o)| Series {
                    name: name.to_string(),
                    points: o.timeline.iter().map(|t| (t.t, t.per_sec)).collect(),
                })
                .collect(),
            markers: markers.to_vec(),
            ..Panel::default()
        },
        Panel {
            title: format!("latency by intended send time ({tick_ms} ms ticks)"),
            x_label: "seconds since the start (warm-up included)".into(),
            y_label: "ms".into(),
            log_y: true,
            series: latency,
            markers: markers.to_vec(),
            reference: None,
        },
    ]
}

/// Picks counters.
pub(crate) struct Keys {
    n: u32,
    /// Zipf: cumulative weights by rank, normalised to 1.
    cdf: Option<Vec<f64>>,
}

impl Keys {
    pub(crate) fn new(n: u32, dist: Dist) -> Self {
        let cdf = (dist == Dist::Zipf && n > 1).then(|| {
            let mut acc = 0.0;
            let mut c: Vec<f64> = (1..=n)
                .map(|r| {
                    acc += 1.0 / (r as f64).powf(0.99);
                    acc
                })
                .collect();
            for x in &mut c {
                *x /= acc;
            }
            c
        });
        Keys { n, cdf }
    }

    pub(crate) fn pick(&self, rng: &mut impl Rng) -> u32 {
        match &self.cdf {
            None => rng.gen_range(0..self.n),
            Some(c) => {
                let u: f64 = rng.gen();
                (c.partition_point(|&x| x < u) as u32).min(self.n - 1)
            }
        }
    }
}

enum Driver {
    Perdure(perdure_client::Client),
    Restate(reqwest::Client),
}

/// Per-tick accumulators.
struct Ticks {
    hist: Vec<Histogram<u64>>,
    acked: Vec<u64>,
    errors: Vec<u64>,
}

struct Run {
    plan: Plan,
    driver: Driver,
    keys: Keys,
    next_id: AtomicU64,
    acked: AtomicU64,
    errors: AtomicU64,
    unknown: AtomicU64,
    started: Instant,
    n_ticks: usize,
    ticks: Mutex<Ticks>,
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds")
}

impl Run {
    fn tick_of(&self, at: Instant) -> usize {
        let n = self.n_ticks;
        ((at.saturating_duration_since(self.started).as_secs_f64() / self.plan.tick.as_secs_f64())
            as usize)
            .min(n - 1)
    }

    /// Sends one request; answers how many adds it got acknowledged.
    async fn send(&self, rng: &mut rand::rngs::StdRng) -> anyhow::Result<u64> {
        let p = &self.plan;
        match &self.driver {
            Driver::Restate(http) => {
                let k = self.keys.pick(rng);
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                let resp = http
                    .post(format!("{}/Counter/{}{k}/add", p.url, p.prefix))
                    .header("idempotency-key", format!("{}-{id}", p.prefix))
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
                Ok(1)
            }
            Driver::Perdure(client) if p.batch > 1 => {
                let signals = (0..p.batch)
                    .map(|_| {
                        let k = self.keys.pick(rng);
                        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                        BatchSignal::new(
                            "counter",
                            &format!("{}{k}", p.prefix),
                            "add",
                            Some(json!(1)),
                        )
                        .with_idempotency_key(format!("{}-{id}", p.prefix))
                    })
                    .collect();
                let results = client.signal_batch(signals).await?;
                let ok = results.iter().filter(|r| r.is_ok()).count() as u64;
                self.unknown
                    .fetch_add(results.len() as u64 - ok, Ordering::Relaxed);
                Ok(ok)
            }
            Driver::Perdure(client) => {
                let key = format!("{}{}", p.prefix, self.keys.pick(rng));
                match p.op {
                    Op::Signal => {
                        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                        client
                            .signal_with_key(
                                "counter",
                                &key,
                                "add",
                                Some(json!(1)),
                                &format!("{}-{id}", p.prefix),
                            )
                            .await?;
                    }
                    Op::Call => {
                        client.call("counter", &key, "add", Some(json!(1))).await?;
                    }
                }
                Ok(1)
            }
        }
    }

    async fn one(&self, intended: Instant, rng: &mut rand::rngs::StdRng) {
        let result = self.send(rng).await;
        let done = Instant::now();
        let (ti, td) = (self.tick_of(intended), self.tick_of(done));
        let mut t = self.ticks.lock().unwrap();
        match result {
            Ok(n) => {
                let us = done.duration_since(intended).as_micros().max(1) as u64;
                let _ = t.hist[ti].record(us);
                t.acked[td] += n;
                self.acked.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                t.errors[td] += 1;
                self.unknown
                    .fetch_add(self.plan.batch as u64, Ordering::Relaxed);
                if self.errors.fetch_add(1, Ordering::Relaxed) < 3 {
                    eprintln!("request failed: {e:#}");
                }
            }
        }
    }
}

/// CPU seconds this process has used (user + system), from `/proc/self/stat`.
pub fn self_cpu_seconds() -> f64 {
    cpu_seconds("/proc/self/stat")
}

/// CPU seconds (user + system) of the process whose `stat` file is `path`; 0 if unreadable.
pub fn cpu_seconds(path: &str) -> f64 {
    let Ok(s) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    // fields after the parenthesised command name; utime and stime are the 14th and 15th
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Checks that the target answers.
async fn ready(plan: &Plan, http: &reqwest::Client) -> anyhow::Result<()> {
    let r = match plan.target {
        Target::Perdure => http.get(format!("{}/readyz", plan.url)).send().await,
        Target::Restate => {
            http.get(format!("{}/Counter/{}ready/get", plan.url, plan.prefix))
                .send()
                .await
        }
    };
    if !matches!(&r, Ok(r) if r.status().is_success()) {
        bail!(
            "{} is not ready ({:?}); start a node with `perdure serve` (or the peer with `bash benches/peers/restate.sh start`)",
            plan.url,
            r.map(|r| r.status())
        );
    }
    Ok(())
}

/// Something to do during a run (e.g. kill a node): after this long from the run's start.
pub type Event = (Duration, Box<dyn FnOnce() + Send>);

/// Runs `plan`: warm-up, measurement, then reads the counters back.
pub async fn execute(plan: Plan) -> anyhow::Result<Outcome> {
    execute_with(plan, None).await
}

/// Like [`execute`], doing `event` during the run; the outcome says when it happened.
pub async fn execute_with(plan: Plan, event: Option<Event>) -> anyhow::Result<Outcome> {
    if plan.target == Target::Restate && plan.batch > 1 {
        bail!("batch applies to perdure only (Restate's ingress takes one call per request)");
    }
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(plan.concurrency)
        .timeout(Duration::from_secs(30))
        .build()?;
    ready(&plan, &http).await?;
    let driver = match plan.target {
        Target::Restate => Driver::Restate(http),
        Target::Perdure => Driver::Perdure(
            perdure_client::Client::builder(&plan.url)
                .routing(plan.routing)
                .attempts(plan.attempts)
                .backoff(Duration::from_millis(20), Duration::from_millis(500))
                .timeout(Duration::from_secs(30))
                .build()?,
        ),
    };
    let total = plan.warmup + plan.measure;
    let n_ticks = (total.as_secs_f64() / plan.tick.as_secs_f64()).ceil() as usize + 1;
    let cpu0 = self_cpu_seconds();
    let run = Arc::new(Run {
        keys: Keys::new(plan.keys, plan.dist),
        driver,
        next_id: AtomicU64::new(0),
        acked: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        unknown: AtomicU64::new(0),
        started: Instant::now(),
        n_ticks,
        ticks: Mutex::new(Ticks {
            hist: (0..n_ticks).map(|_| new_hist()).collect(),
            acked: vec![0; n_ticks],
            errors: vec![0; n_ticks],
        }),
        plan: plan.clone(),
    });
    let start = run.started;
    let deadline = start + total;
    let measure_from = start + plan.warmup;
    let bar = progress_bar(&plan, total);
    let event = event.map(|(after, f)| {
        tokio::spawn(async move {
            tokio::time::sleep_until((start + after).into()).await;
            f();
            start.elapsed().as_secs_f64()
        })
    });
    let mut workers = Vec::new();
    match plan.rate {
        None => {
            for w in 0..plan.concurrency {
                let run = run.clone();
                workers.push(tokio::spawn(async move {
                    let mut rng = rand::rngs::StdRng::seed_from_u64(w as u64 + 1);
                    while Instant::now() < deadline {
                        run.one(Instant::now(), &mut rng).await;
                    }
                }));
            }
        }
        Some(rate) => {
            // The schedule runs on a thread of its own: std's sleep is precise to tens of
            // microseconds, while tokio's timer rounds up to the next millisecond, which would
            // count up to 1 ms of the generator's own lateness in every latency.
            let run = run.clone();
            let cap = plan.concurrency;
            let handle = tokio::runtime::Handle::current();
            workers.push(tokio::task::spawn_blocking(move || {
                let limit = Arc::new(tokio::sync::Semaphore::new(cap));
                let mut i = 0u64;
                loop {
                    let intended = start + Duration::from_secs_f64(i as f64 / rate);
                    if intended >= deadline {
                        // wait for every request still running (each holds a permit)
                        let _ = handle.block_on(limit.acquire_many(cap as u32));
                        break;
                    }
                    let now = Instant::now();
                    if intended > now {
                        std::thread::sleep(intended - now);
                    }
                    let permit = match limit.clone().try_acquire_owned() {
                        Ok(p) => p,
                        Err(_) => match handle.block_on(limit.clone().acquire_owned()) {
                            Ok(p) => p,
                            Err(_) => break,
                        },
                    };
                    let run = run.clone();
                    handle.spawn(async move {
                        let mut rng = rand::rngs::StdRng::seed_from_u64(i + 1);
                        run.one(intended, &mut rng).await;
                        drop(permit);
                    });
                    i += 1;
                }
            }));
        }
    }
    // progress
    let done = Arc::new(AtomicBool::new(false));
    let ticker = {
        let (run, done, bar) = (run.clone(), done.clone(), bar.clone());
        tokio::spawn(async move {
            let mut last = (Instant::now(), 0u64);
            while !done.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let now = (Instant::now(), run.acked.load(Ordering::Relaxed));
                let rate = (now.1 - last.1) as f64 / now.0.duration_since(last.0).as_secs_f64();
                last = now;
                bar.set_position(start.elapsed().as_millis().min(total.as_millis()) as u64);
                bar.set_message(format!(
                    "{}{rate:>9.0} adds/s, {} errors",
                    if Instant::now() < measure_from {
                        "warm-up "
                    } else {
                        ""
                    },
                    run.errors.load(Ordering::Relaxed)
                ));
            }
        })
    };
    for w in workers {
        w.await?;
    }
    done.store(true, Ordering::Relaxed);
    let _ = ticker.await;
    bar.finish_and_clear();
    let event_at = match event {
        Some(e) => Some(e.await?),
        None => None,
    };
    let elapsed = start.elapsed().as_secs_f64();
    let generator_cpu = (self_cpu_seconds() - cpu0) / elapsed;

    let applied = applied_sum(&run)
        .await
        .context("reading the counters back")?;
    let t = run.ticks.lock().unwrap();
    let tick_s = plan.tick.as_secs_f64();
    let first = (plan.warmup.as_secs_f64() / tick_s).round() as usize;
    let last = ((total.as_secs_f64() / tick_s).round() as usize).min(n_ticks);
    let mut hist = new_hist();
    let mut acked_in = 0;
    for i in first..last {
        hist.add(&t.hist[i])?;
        acked_in += t.acked[i];
    }
    let secs = (last - first) as f64 * tick_s;
    let timeline = (0..last)
        .map(|i| {
            let h = &t.hist[i];
            let q = |x| (!h.is_empty()).then(|| h.value_at_quantile(x) as f64 / 1000.0);
            Tick {
                t: i as f64 * tick_s,
                per_sec: t.acked[i] as f64 / tick_s,
                p50_ms: q(0.5),
                p99_ms: q(0.99),
                errors: t.errors[i],
            }
        })
        .collect();
    let requests_per_sec = match plan.rate {
        Some(r) => r,
        None => hist.len() as f64 / secs,
    };
    Ok(Outcome {
        per_sec: acked_in as f64 / secs,
        requests_per_sec,
        hist,
        errors: run.errors.load(Ordering::Relaxed),
        acknowledged: run.acked.load(Ordering::Relaxed),
        applied,
        unknown: run.unknown.load(Ordering::Relaxed),
        timeline,
        generator_cpu,
        event_at,
        plan,
    })
}

fn progress_bar(plan: &Plan, total: Duration) -> indicatif::ProgressBar {
    if !plan.progress {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total.as_millis() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("  [{bar:30}] {elapsed:>3} {msg}")
            .expect("progress template")
            .progress_chars("=> "),
    );
    bar
}

/// Sums the run's counters: perdure's list endpoint, or one `get` per Restate counter.
async fn applied_sum(run: &Run) -> anyhow::Result<u64> {
    let p = &run.plan;
    match &run.driver {
        Driver::Restate(http) => {
            use futures::StreamExt;
            let values: Vec<anyhow::Result<u64>> = futures::stream::iter(0..p.keys)
                .map(|k| async move {
                    let v: serde_json::Value = http
                        .get(format!("{}/Counter/{}{k}/get", p.url, p.prefix))
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
            values.into_iter().sum()
        }
        Driver::Perdure(client) => {
            let mut sum = 0u64;
            let mut cont: Option<String> = None;
            loop {
                let page = client.list("counter", cont.as_deref(), Some(1000)).await?;
                for e in &page.entities {
                    if e.key.starts_with(&p.prefix) {
                        sum += e.state.as_u64().unwrap_or(0);
                    }
                }
                match page.continuation {
                    Some(c) if !c.is_empty() => cont = Some(c),
                    _ => return Ok(sum),
                }
            }
        }
    }
}

/// `perdure-bench load`: runs one plan, prints (and optionally writes) the results; fails when
/// the counters do not match what was acknowledged.
pub async fn run(args: LoadArgs) -> anyhow::Result<()> {
    let plan = Plan::from_args(&args);
    eprintln!("load: {} (prefix {})", plan.describe(), plan.prefix);
    let o = execute(plan).await?;
    for t in &o.timeline {
        eprintln!(
            "  {:>5.1} s  {:>9.0} adds/s  p99 {:>8} ms  errors {}",
            t.t,
            t.per_sec,
            t.p99_ms
                .map(|x| format!("{x:.2}"))
                .unwrap_or_else(|| "-".into()),
            t.errors
        );
    }
    println!("{}", o.summary());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&o.json())?)
            .with_context(|| path.display().to_string())?;
    }
    if let Some(path) = &args.plot {
        let svg = crate::plot::svg(&o.plan.describe(), &timeline_panels(&[("run", &o)], &[]));
        std::fs::write(path, svg).with_context(|| path.display().to_string())?;
    }
    if !o.verified() {
        bail!(
            "applied {} but acknowledged {} (+{} unknown): an acknowledged add was lost or one applied twice",
            o.applied,
            o.acknowledged,
            o.unknown
        );
    }
    Ok(())
}
