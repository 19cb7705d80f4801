//! Orchestration scenarios, driven through the HTTP API with `perdure-client` (each request
//! straight to the instance's partition leader):
//!
//! - **HelloSequence5 throughput**: a closed loop of `concurrency` workers, each starting a
//!   `HelloSequence5` instance (5 activities in sequence) and long-polling its completion
//!   (`GET .../instances/{id}/wait`), then the next; instances/s over `instances` of them. Only
//!   instances that completed with the expected output count; any other output fails the run.
//! - **One at a time**: start → completion through the long poll, one instance after the other;
//!   p50/p99 of that round trip.
//! - **Fan-out/fan-in**: `FanOutFanIn` with input N (N activities in parallel, output
//!   N(N-1)/2): the time from the start to the long poll's answer.
//!
//! And `perdure-bench fanout`: one node started here (the real binary) running one very wide
//! `FanOutFanIn` (100,000 by default), with the node's resident memory sampled from `/proc`
//! throughout and its peak (`VmHWM`) reported: the proof that a wide fan-out's memory is bounded.

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use perdure_harness::{Node, NodeSpec};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// HelloSequence5's output.
pub fn hello5_output() -> Value {
    json!([
        "Hello Tokyo!",
        "Hello Seattle!",
        "Hello London!",
        "Hello Paris!",
        "Hello Cairo!"
    ])
}

/// FanOutFanIn's output for `n`.
pub fn fan_out_output(n: u64) -> Value {
    json!(n * n.saturating_sub(1) / 2)
}

/// What an orchestration scenario measured.
#[derive(Debug, Clone)]
pub struct OrchOutcome {
    /// Instances that completed with the expected output (in the measured part).
    pub completed: u64,
    /// Requests that failed (an instance whose outcome the generator does not know).
    pub errors: u64,
    /// Seconds of the measured part.
    pub secs: f64,
    /// Completed instances per second.
    pub per_sec: f64,
    /// Start → completion of each instance (µs).
    pub hist: Histogram<u64>,
    /// Instances in flight (closed loop).
    pub concurrency: usize,
    /// CPU seconds the generator used per second of run.
    pub generator_cpu: f64,
}

impl OrchOutcome {
    /// Latency quantile, ms.
    pub fn q(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }

    /// The one-line summary.
    pub fn summary(&self) -> String {
        format!(
            "{} instances completed in {:.2} s: {:.0}/s; start to completion p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} errors",
            self.completed,
            self.secs,
            self.per_sec,
            self.q(0.5),
            self.q(0.99),
            self.hist.max() as f64 / 1000.0,
            self.errors
        )
    }

    /// JSON form.
    pub fn json(&self) -> Value {
        json!({
            "completed": self.completed, "errors": self.errors, "seconds": self.secs,
            "instances_per_sec": self.per_sec, "concurrency": self.concurrency,
            "latency_ms": {"p50": self.q(0.5), "p90": self.q(0.9), "p99": self.q(0.99),
                           "max": self.hist.max() as f64 / 1000.0, "count": self.hist.len()},
            "generator_cpu": self.generator_cpu,
        })
    }
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds")
}

/// A client of `url` for the scenarios: routing to leaders, signals' retry policy.
pub fn client(url: &str) -> anyhow::Result<perdure_client::Client> {
    Ok(perdure_client::Client::builder(url)
        .routing(true)
        .attempts(3)
        .backoff(Duration::from_millis(20), Duration::from_millis(500))
        .timeout(Duration::from_secs(30))
        .build()?)
}

/// Starts `name` with `input` under `id` and long-polls its completion; its output, or the
/// failure as an error.
pub async fn run_one(
    c: &perdure_client::Client,
    name: &str,
    id: &str,
    input: Option<Value>,
    timeout: Duration,
) -> anyhow::Result<Value> {
    c.start_orchestration(name, Some(id), input)
        .await
        .with_context(|| format!("starting {name} {id}"))?;
    let s = c
        .wait_for_orchestration(id, timeout)
        .await
        .with_context(|| format!("waiting for {id}"))?;
    if s.runtime_status != perdure_types::orchestration::RuntimeStatus::Completed {
        bail!(
            "{id} ended {:?}: {}",
            s.runtime_status,
            s.failure_details
                .map(|f| f.error_message)
                .unwrap_or_else(|| s.output.to_string())
        );
    }
    Ok(s.output)
}

/// Closed loop: `concurrency` workers run HelloSequence5 instances `{prefix}{i}`, i from 0,
/// `warmup` of them first (not counted), then `instances` measured.
pub async fn hello5(
    url: &str,
    prefix: &str,
    instances: u64,
    warmup: u64,
    concurrency: usize,
) -> anyhow::Result<OrchOutcome> {
    let c = client(url)?;
    let want = hello5_output();
    let cpu0 = crate::load::self_cpu_seconds();
    let t0 = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let completed = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let wrong = Arc::new(Mutex::new(None::<String>));
    let hist = Arc::new(Mutex::new(new_hist()));
    let measure_from = Arc::new(Mutex::new(None::<Instant>));
    let total = warmup + instances;
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (c, want, prefix) = (c.clone(), want.clone(), prefix.to_string());
        let (next, completed, errors, wrong, hist, measure_from) = (
            next.clone(),
            completed.clone(),
            errors.clone(),
            wrong.clone(),
            hist.clone(),
            measure_from.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut h = new_hist();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                if i == warmup {
                    *measure_from.lock().unwrap() = Some(Instant::now());
                }
                let id = format!("{prefix}{i}");
                let t = Instant::now();
                match run_one(&c, "HelloSequence5", &id, None, Duration::from_secs(60)).await {
                    Ok(out) if out == want => {
                        if i >= warmup {
                            let _ = h.record(t.elapsed().as_micros().max(1) as u64);
                            completed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(out) => {
                        *wrong.lock().unwrap() = Some(format!("{id} answered {out}"));
                        break;
                    }
                    Err(e) => {
                        tracing_like(&format!("{e:#}"));
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            hist.lock().unwrap().add(&h).expect("same bounds");
        }));
    }
    for w in workers {
        w.await?;
    }
    if let Some(w) = wrong.lock().unwrap().take() {
        bail!("HelloSequence5: wrong output: {w}");
    }
    let from = measure_from.lock().unwrap().unwrap_or(t0);
    let secs = from.elapsed().as_secs_f64();
    let completed = completed.load(Ordering::Relaxed);
    let hist = hist.lock().unwrap().clone();
    Ok(OrchOutcome {
        completed,
        errors: errors.load(Ordering::Relaxed),
        secs,
        per_sec: completed as f64 / secs,
        hist,
        concurrency,
        generator_cpu: (crate::load::self_cpu_seconds() - cpu0) / t0.elapsed().as_secs_f64(),
    })
}

/// One HelloSequence5 at a time: start → completion (long poll), `warmup` first, then
/// `instances` measured.
pub async fn one_at_a_time(
    url: &str,
    prefix: &str,
    instances: u64,
    warmup: u64,
) -> anyhow::Result<OrchOutcome> {
    let mut o = hello5(url, prefix, instances, warmup, 1).await?;
    o.concurrency = 1;
    Ok(o)
}

/// `runs` FanOutFanIn(n) one after the other: the time of each from its start to the answer of
/// its long poll (the histogram holds each run), the output checked.
pub async fn fan_out(url: &str, prefix: &str, n: u64, runs: u32) -> anyhow::Result<OrchOutcome> {
    let c = client(url)?;
    let cpu0 = crate::load::self_cpu_seconds();
    let t0 = Instant::now();
    let mut hist = new_hist();
    let mut completed = 0;
    let mut secs = 0.0;
    for r in 0..runs {
        let id = format!("{prefix}{r}");
        let t = Instant::now();
        let out = run_one(
            &c,
            "FanOutFanIn",
            &id,
            Some(json!(n)),
            Duration::from_secs(3600),
        )
        .await?;
        let took = t.elapsed();
        if out != fan_out_output(n) {
            bail!("FanOutFanIn({n}) {id} answered {out}");
        }
        secs += took.as_secs_f64();
        hist.record(took.as_micros().max(1) as u64)?;
        completed += 1;
    }
    Ok(OrchOutcome {
        completed,
        errors: 0,
        secs,
        per_sec: (completed * n) as f64 / secs.max(1e-9),
        hist,
        concurrency: 1,
        generator_cpu: (crate::load::self_cpu_seconds() - cpu0) / t0.elapsed().as_secs_f64(),
    })
}

/// The first few failed requests go to stderr, the rest are only counted.
fn tracing_like(msg: &str) {
    static SHOWN: AtomicU64 = AtomicU64::new(0);
    if SHOWN.fetch_add(1, Ordering::Relaxed) < 5 {
        eprintln!("  (request failed: {msg})");
    }
}

/// Options of `perdure-bench fanout`.
#[derive(Debug, Clone, clap::Args)]
pub struct FanoutArgs {
    /// Activities the instance fans out to.
    #[arg(long, default_value_t = 100_000)]
    pub n: u64,
    /// `orchestrations.max_actions_per_turn` of the node (decisions per command, activities of
    /// one instance running at once). Default: the node's (5,000).
    #[arg(long)]
    pub max_actions_per_turn: Option<u32>,
    /// `orchestrations.max_concurrent_activities` of the node. Default: the node's (1,000).
    #[arg(long)]
    pub max_concurrent_activities: Option<u32>,
    /// Partitions of the node.
    #[arg(long, default_value_t = 16)]
    pub partitions: u32,
    /// The `perdure` binary (default: next to this program).
    #[arg(long)]
    pub bin: Option<PathBuf>,
    /// Where the node keeps its data (default: a temporary directory under `target/bench`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Write the result as JSON to this file too.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// A process's resident memory now and at its peak (`VmRSS`, `VmHWM` of `/proc/PID/status`),
/// bytes.
pub fn rss(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |name: &str| -> Option<u64> {
        s.lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
            .map(|k| k * 1024)
    };
    Some((kb("VmRSS:")?, kb("VmHWM:")?))
}

/// What one wide fan-out measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FanoutResult {
    /// Activities.
    pub n: u64,
    /// `max_actions_per_turn` the node ran with (`None`: its default).
    pub max_actions_per_turn: Option<u32>,
    /// Start → completion, seconds.
    pub seconds: f64,
    /// Activities per second.
    pub activities_per_sec: f64,
    /// The node's resident memory before the start, bytes.
    pub rss_before: u64,
    /// Its peak (`VmHWM`) over the run, bytes.
    pub peak_rss: u64,
    /// Its resident memory at the end, bytes.
    pub rss_after: u64,
    /// Events in the instance's history at the end.
    pub history_events: u64,
    /// Their bytes.
    pub history_bytes: u64,
    /// Node CPU seconds the run took.
    pub node_cpu_seconds: f64,
    /// Raft log entries the node held in memory at the end (`perdure_raft_log_node_bytes`,
    /// weighed as the log weighs them), bytes.
    pub raft_log_bytes: f64,
}

/// Runs FanOutFanIn(`n`) on a running node `url` (process `pid`): time, memory, history.
pub async fn wide_fan_out(
    url: &str,
    pid: u32,
    n: u64,
    max_actions_per_turn: Option<u32>,
) -> anyhow::Result<FanoutResult> {
    let c = client(url)?;
    let stat = format!("/proc/{pid}/stat");
    let (rss_before, _) = rss(pid).context("the node's /proc status")?;
    let cpu0 = crate::load::cpu_seconds(&stat);
    let id = format!("fanout-{n}-{}", crate::load::fresh_prefix());
    let t = Instant::now();
    c.start_orchestration("FanOutFanIn", Some(&id), Some(json!(n)))
        .await?;
    // the long poll in slices, memory sampled in between (VmHWM keeps the peak anyway)
    let status = loop {
        let s = c
            .wait_for_orchestration(&id, Duration::from_secs(5))
            .await?;
        if s.runtime_status.is_terminal() {
            break s;
        }
        if let Some((now, peak)) = rss(pid) {
            eprintln!(
                "  {:>6.1} s: {} history events, RSS {} MiB, peak {} MiB",
                t.elapsed().as_secs_f64(),
                s.history_event_count,
                now >> 20,
                peak >> 20
            );
        }
    };
    let seconds = t.elapsed().as_secs_f64();
    if status.output != fan_out_output(n) {
        bail!(
            "FanOutFanIn({n}) ended {:?} with {} (expected {})",
            status.runtime_status,
            status.output,
            fan_out_output(n)
        );
    }
    let (rss_after, peak_rss) = rss(pid).context("the node's /proc status")?;
    let metrics = reqwest::get(format!("{url}/metrics")).await?.text().await?;
    let raft_log_bytes = metrics
        .lines()
        .find_map(|l| l.strip_prefix("perdure_raft_log_node_bytes "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN);
    Ok(FanoutResult {
        n,
        max_actions_per_turn,
        seconds,
        activities_per_sec: n as f64 / seconds,
        rss_before,
        peak_rss,
        rss_after,
        history_events: status.history_event_count,
        history_bytes: status.history_size_bytes,
        node_cpu_seconds: crate::load::cpu_seconds(&stat) - cpu0,
        raft_log_bytes,
    })
}

/// `perdure-bench fanout`: a fresh node (samples on), one FanOutFanIn(`n`), its time and the
/// node's peak resident memory.
pub async fn fanout_command(args: FanoutArgs) -> anyhow::Result<()> {
    let bin = match &args.bin {
        Some(b) => b.clone(),
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
    let _tmp;
    let dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => {
            let base = crate::suite::workspace_root().join("target/bench");
            std::fs::create_dir_all(&base)?;
            _tmp = tempfile::Builder::new()
                .prefix("fanout-")
                .tempdir_in(&base)?;
            _tmp.path().to_path_buf()
        }
    };
    let spec = NodeSpec::new(1, 90, &dir)?;
    let mut c = spec.config(&[]);
    c.partitions = args.partitions;
    c.samples.enabled = true;
    if let Some(m) = args.max_actions_per_turn {
        c.orchestrations.max_actions_per_turn = m;
    }
    if let Some(m) = args.max_concurrent_activities {
        c.orchestrations.max_concurrent_activities = m;
    }
    spec.write_config(&c)?;
    let mut node = Node::new(spec.clone(), &bin);
    node.start(&Default::default())?;
    let url = spec.url();
    if !perdure_harness::ready(&url, Duration::from_secs(60)).await {
        bail!("{url} not ready within 60 s");
    }
    let pid = node.pid().context("the node's pid")?;
    eprintln!(
        "FanOutFanIn({}) on one node ({} partitions, max_actions_per_turn {}, max_concurrent_activities {})",
        args.n,
        args.partitions,
        c.orchestrations.max_actions_per_turn,
        c.orchestrations.max_concurrent_activities
    );
    let r = wide_fan_out(&url, pid, args.n, args.max_actions_per_turn).await;
    let _ = node.stop(Duration::from_secs(10));
    let r = r?;
    println!(
        "FanOutFanIn({}): {:.1} s ({:.0} activities/s), node peak RSS {} MiB (before {} MiB, after {} MiB), history {} events / {:.1} MiB, Raft log held {:.1} MiB, node CPU {:.1} s",
        r.n,
        r.seconds,
        r.activities_per_sec,
        r.peak_rss >> 20,
        r.rss_before >> 20,
        r.rss_after >> 20,
        r.history_events,
        r.history_bytes as f64 / 1048576.0,
        r.raft_log_bytes / 1048576.0,
        r.node_cpu_seconds
    );
    if let Some(p) = &args.json {
        std::fs::write(p, serde_json::to_string_pretty(&r)?)?;
    }
    Ok(())
}
