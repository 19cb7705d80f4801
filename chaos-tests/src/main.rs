//! `perdure-chaos`: runs a Jepsen-style fault test against a real perdure cluster and writes a
//! report folder. See `chaos-tests/README.md`.

mod fresh;
mod ingest;
mod nemesis;
mod orch_http;
mod orchestration;
mod powerloss;
mod workload;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use nemesis::{Cluster, FaultRecord, PIDS};
use perdure_chaos::checker::{self, CheckResult};
use perdure_chaos::cluster::{self, NodeProc};
use perdure_chaos::history::{self, Event, EventType};
use perdure_chaos::net::{self, Net};
use perdure_chaos::schedule::{self, Nemesis};
use perdure_chaos::svg;
use perdure_harness::NodeSpec;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use workload::{Recorder, FINAL_PROCESS};

#[derive(Parser, Debug)]
#[command(
    name = "perdure-chaos",
    about = "Jepsen-style fault testing of a real perdure cluster"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Start a cluster, run workloads under faults, heal, check, write a report.
    Run(RunArgs),
    /// Fresh single nodes under plain load, round after round: each must still answer and keep
    /// every acknowledged add (a hang dumps the node's stacks). `--duration 30m` is the soak.
    FreshNodes(fresh::FreshArgs),
    /// Run the checkers again on a recorded history (`history.jsonl` of a report).
    Check {
        /// The history file.
        history: PathBuf,
        /// Search steps per key for the linearizability checker.
        #[arg(long, default_value_t = checker::linearizable::DEFAULT_STEP_BUDGET)]
        lin_steps: u64,
        /// Clock-skewed node pids (the report's `skewed_pids`), left out of the probe's overlap
        /// check.
        #[arg(long, value_delimiter = ',')]
        skewed_pids: Vec<u64>,
        /// When the last clock-skewed node stopped, µs into the run (the report's
        /// `skew_until_us`): orchestrations started before it are left out of the turn-order
        /// check.
        #[arg(long)]
        skew_until_us: Option<u64>,
    },
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// How long the workload runs under faults (`90s`, `2m`, `500ms`).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Nodes in the cluster.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Workloads: register, counter, list, probe, orchestration, ingest.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "register,counter,list,probe"
    )]
    workloads: Vec<String>,
    /// Nemeses: kill, restart, pause, partition, loss, skew, membership, powerloss (empty: none).
    #[arg(long, value_delimiter = ',', default_value = "kill,pause,partition")]
    nemeses: Vec<String>,
    /// The seed (fault schedule, targets, workload choices). Random when not given.
    #[arg(long)]
    seed: Option<u64>,
    /// Report folder (default target/chaos/<seed>-<time>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The `perdure` binary (default: target/release/perdure, else target/debug/perdure).
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Concurrent client workers.
    #[arg(long, default_value_t = 8)]
    concurrency: u64,
    /// Partitions per node.
    #[arg(long, default_value_t = 8)]
    partitions: u32,
    /// Nodes listen on 127.0.0.(BASE + id).
    #[arg(long, default_value_t = 10)]
    ip_base: u8,
    /// Deadline for the cluster to serve again after the final heal.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    recovery_timeout: Duration,
    /// Search steps per key for the linearizability checker before it gives up (a failure).
    #[arg(long, default_value_t = checker::linearizable::DEFAULT_STEP_BUDGET)]
    lin_steps: u64,
    /// Run a deliberately broken build: `stale-read` or `duplicate-activity` (see
    /// crates/runtime/src/chaos_bug.rs).
    #[arg(long)]
    bug: Option<String>,
    /// Succeed only if the checkers find an anomaly (for runs with --bug).
    #[arg(long)]
    expect_anomaly: bool,
    /// Keep the nodes' data directories in the report folder.
    #[arg(long)]
    keep_data: bool,
    /// Build a snapshot every this many log entries (default: the node's own, or 500 in runs
    /// with powerloss, so that power cuts meet snapshots and purged logs).
    #[arg(long)]
    snapshot_every: Option<u64>,
    /// Put the data directories on powerfs mounts even without the powerloss nemesis (to
    /// measure what the mount costs).
    #[arg(long)]
    powerfs: bool,
    /// Records a second the `ingest` workload's producer writes to its stream.
    #[arg(long, default_value_t = 1000)]
    ingest_rate: u64,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: u64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    Ok(match unit {
        "ms" => Duration::from_millis(n),
        "s" | "" => Duration::from_secs(n),
        "m" | "min" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("bad duration unit in {s:?} (ms, s, m, h)")),
    })
}

/// Kills every node process and removes this run's iptables chains: for Ctrl-C and panics.
fn emergency_cleanup() {
    let pids: Vec<u32> = PIDS
        .lock()
        .map(|p| p.iter().copied().collect())
        .unwrap_or_default();
    for pid in pids {
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &pid.to_string()])
            .status();
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    net::remove_chains(std::process::id());
    net::remove_cgroups(std::process::id());
    perdure_chaos::powerfs::unmount_all_lazy();
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CHAOS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::FreshNodes(args) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            match rt.block_on(fresh::run(args))? {
                0 => Ok(()),
                c => std::process::exit(c),
            }
        }
        Cmd::Check {
            history,
            lin_steps,
            skewed_pids,
            skew_until_us,
        } => {
            let events = history::read_jsonl(&history)?;
            let results = run_checkers(
                &events,
                &all_workloads(),
                &skewed_pids.into_iter().collect(),
                skew_until_us,
                lin_steps,
            );
            println!("{}", serde_json::to_string_pretty(&results)?);
            if results.iter().all(CheckResult::passed) {
                Ok(())
            } else {
                bail!("anomalies found")
            }
        }
        Cmd::Run(args) => {
            let default_hook = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                emergency_cleanup();
                default_hook(info);
            }));
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(4)
                .enable_all()
                .build()?;
            let code = rt.block_on(async {
                tokio::select! {
                    r = run(args) => r,
                    _ = tokio::signal::ctrl_c() => {
                        eprintln!("interrupted: killing the nodes, removing the iptables rules");
                        emergency_cleanup();
                        Ok(130)
                    }
                }
            });
            emergency_cleanup();
            match code {
                Ok(0) => Ok(()),
                Ok(c) => std::process::exit(c),
                Err(e) => Err(e),
            }
        }
    }
}

fn all_workloads() -> Vec<String> {
    workload::WORKLOADS.iter().map(|s| s.to_string()).collect()
}

fn run_checkers(
    events: &[Event],
    workloads: &[String],
    untrusted: &HashSet<u64>,
    skew_until_us: Option<u64>,
    lin_steps: u64,
) -> Vec<CheckResult> {
    let mut out = Vec::new();
    for w in workloads {
        out.push(match w.as_str() {
            "register" => checker::linearizable::check(events, lin_steps),
            "counter" => checker::counter::check(events),
            "list" => checker::list::check(events),
            "probe" => checker::probe::check(events, untrusted),
            "orchestration" => checker::orchestration::check(events, skew_until_us),
            "ingest" => checker::ingest::check(events),
            _ => continue,
        });
    }
    out
}

/// How long the final phase waits for orchestration instances to finish.
const ORCH_FINAL_BUDGET: Duration = Duration::from_secs(60);

/// When the last node with a skewed clock had stopped (µs into the run), `None` when none ran:
/// the skew nemesis's heal (or the final heal, `heal_ms`) restarts it with the real clock.
fn skew_until_us(records: &[FaultRecord], skewed: &HashSet<u64>, heal_ms: u64) -> Option<u64> {
    if skewed.is_empty() {
        return None;
    }
    let last = records
        .iter()
        .filter(|r| r.fault.nemesis == Nemesis::Skew)
        .map(|r| match (r.healed_ms, &r.heal_error) {
            (Some(h), None) => h,
            _ => heal_ms,
        })
        .max()
        .unwrap_or(heal_ms);
    Some(last * 1000)
}

fn find_bin(arg: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(b) = arg {
        if !b.exists() {
            bail!("--bin {}: no such file", b.display());
        }
        return Ok(b);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for p in ["target/release/perdure", "target/debug/perdure"] {
        let b = root.join(p);
        if b.exists() {
            return Ok(b);
        }
    }
    bail!("no perdure binary: build it (cargo build --release -p perdure-cli) or pass --bin")
}

#[derive(Debug, Serialize)]
struct Summary {
    scheduled: usize,
    applied: usize,
    failed: usize,
}

async fn run(args: RunArgs) -> anyhow::Result<i32> {
    let seed = args.seed.unwrap_or_else(rand::random);
    let duration_ms = args.duration.as_millis() as u64;
    for w in &args.workloads {
        if !workload::WORKLOADS.contains(&w.as_str()) {
            bail!("unknown workload {w:?} (known: {:?})", workload::WORKLOADS);
        }
    }
    let nemeses: Vec<Nemesis> = args
        .nemeses
        .iter()
        .filter(|s| !s.is_empty() && *s != "none")
        .map(|s| s.parse())
        .collect::<Result<_, _>>()?;
    if args.nodes < 1 || args.nodes > 9 {
        bail!("--nodes must be 1..=9");
    }
    let bin = find_bin(args.bin.clone())?;
    let bug = match args.bug.as_deref() {
        None => None,
        Some("stale-read") => Some("stale-read:i-know-this-breaks-linearizability".to_string()),
        Some("duplicate-activity") => {
            Some("duplicate-activity:i-know-this-breaks-exactly-once".to_string())
        }
        Some(b) => bail!("unknown --bug {b:?} (known: stale-read, duplicate-activity)"),
    };
    let out = args.out.clone().unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        PathBuf::from(format!("target/chaos/{seed}-{t}"))
    });
    let node_dir = out.join("nodes");
    if node_dir.exists() {
        std::fs::remove_dir_all(&node_dir)
            .with_context(|| format!("clearing {}", node_dir.display()))?;
    }
    std::fs::create_dir_all(&node_dir)
        .with_context(|| format!("creating {}", node_dir.display()))?;
    let node_dir = std::fs::canonicalize(&node_dir)?;
    let plan = schedule::schedule(seed, &nemeses, args.nodes, duration_ms);
    println!(
        "perdure-chaos: seed {seed}, {} nodes, {:?}, workloads {:?}, nemeses {:?}, {} faults scheduled, binary {}{}; report in {}",
        args.nodes,
        args.duration,
        args.workloads,
        nemeses.iter().map(|n| n.name()).collect::<Vec<_>>(),
        plan.len(),
        bin.display(),
        args.bug.as_ref().map(|b| format!(" WITH THE INJECTED BUG {b}")).unwrap_or_default(),
        out.display()
    );

    // the network (only needed for partition / loss faults, but cheap)
    let (net, net_error) = match Net::setup() {
        Ok(n) => (Some(n), None),
        Err(e) => {
            tracing::warn!("network faults unavailable: {e}");
            (None, Some(e.to_string()))
        }
    };
    let specs: Vec<NodeSpec> = (1..=args.nodes as u64)
        .map(|id| NodeSpec::new(id, args.ip_base, &node_dir))
        .collect::<Result<_, _>>()?;
    let snapshot_every = args
        .snapshot_every
        .or(nemeses.contains(&Nemesis::Powerloss).then_some(500));
    let power = if nemeses.contains(&Nemesis::Powerloss) || args.powerfs {
        let m = powerloss::mount_all(&specs)?;
        println!(
            "data directories on powerfs mounts (unsynced writes are lost at a power cut): {}",
            node_dir.join("n*-data").display()
        );
        m
    } else {
        Default::default()
    };
    let cluster = Arc::new(Mutex::new(Cluster {
        nodes: specs
            .iter()
            .map(|s| NodeProc::new(s.clone(), &bin))
            .collect(),
        net,
        net_error,
        bin: bin.clone(),
        partitions: args.partitions,
        bug: bug.clone(),
        dir: node_dir.clone(),
        ip_base: args.ip_base,
        initial: args.nodes,
        cgroups: Default::default(),
        next_id: args.nodes as u64 + 1,
        snapshot_every,
        power,
        consumers: Default::default(),
    }));
    {
        let mut c = cluster.lock().unwrap_or_else(|p| p.into_inner());
        for s in &specs {
            if args.nodes > 1 {
                cluster::write_config(s, &specs, args.nodes, args.partitions, snapshot_every)?;
            } else {
                cluster::write_config(s, &[], 1, args.partitions, snapshot_every)?;
            }
            c.register(s.id, s.peer_port).map_err(anyhow::Error::msg)?;
        }
        for i in 0..specs.len() {
            c.start(i, None).map_err(anyhow::Error::msg)?;
        }
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let urls: Vec<String> = specs.iter().map(NodeSpec::url).collect();
    let formed = Instant::now();
    for s in &specs {
        if !perdure_harness::ready(&s.url(), Duration::from_secs(60)).await {
            bail!(
                "node {} ({}) not ready within 60 s: {}",
                s.id,
                s.url(),
                nemesis::tail(&s.log, 3)
            );
        }
    }
    println!(
        "cluster ready in {:?}: {}",
        formed.elapsed(),
        urls.join(" ")
    );

    // workers
    let rec = Arc::new(Recorder::new());
    let stop = Arc::new(AtomicBool::new(false));
    let orch_http = orch_http::OrchHttp::new()?;
    let shared_urls = Arc::new(urls.clone());
    let mut workers = Vec::new();
    // the ingest workload has no client workers (a producer and subscriptions instead)
    let worker_workloads: Vec<String> = args
        .workloads
        .iter()
        .filter(|w| *w != "ingest")
        .cloned()
        .collect();
    let concurrency = if worker_workloads.is_empty() {
        0
    } else {
        args.concurrency
    };
    for w in 0..concurrency {
        let first = (w as usize) % urls.len();
        let c = workload::client(&urls[first], w % 2 == 0)?;
        let orch = orchestration::Starter {
            http: orch_http.clone(),
            urls: shared_urls.clone(),
            first,
        };
        workers.push(tokio::spawn(workload::worker(
            w,
            seed,
            worker_workloads.clone(),
            c,
            orch,
            rec.clone(),
            stop.clone(),
        )));
    }

    // the ingest workload: broker, stream, subscriptions, producer (on the harness's side)
    let ingest_run = if args.workloads.iter().any(|w| w == "ingest") {
        let peer_ports: Vec<u16> = specs.iter().map(|s| s.peer_port).collect();
        let consumers = cluster
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .consumers
            .clone();
        Some(
            ingest::start(
                &out.join("broker"),
                &peer_ports,
                shared_urls.clone(),
                http.clone(),
                rec.clone(),
                seed,
                args.ingest_rate,
                stop.clone(),
                consumers,
            )
            .await?,
        )
    } else {
        None
    };
    let ingest_progress = ingest_run.as_ref().map(|r| r.progress.clone());

    // nemesis
    let records: Arc<Mutex<Vec<FaultRecord>>> = Arc::default();
    let current: Arc<Mutex<String>> = Arc::new(Mutex::new("none".into()));
    let nem = {
        let (cluster, rec, records, current, http) = (
            cluster.clone(),
            rec.clone(),
            records.clone(),
            current.clone(),
            http.clone(),
        );
        tokio::spawn(async move {
            let mut last_heal_ms = 0u64;
            for f in plan {
                // on schedule, but at least 2 s after the previous heal (a membership heal can
                // overrun its window; the next fault must still find a healed, quiet cluster)
                let due = f.at_ms.max(last_heal_ms + 2_000);
                let wait = due.saturating_sub(rec.now_ms());
                tokio::time::sleep(Duration::from_millis(wait)).await;
                let applied_ms = rec.now_ms();
                let r = nemesis::apply(&f, &cluster, &http).await;
                let mut record = FaultRecord {
                    fault: f.clone(),
                    applied_ms,
                    healed_ms: None,
                    applied: r.is_ok(),
                    targets: Vec::new(),
                    detail: String::new(),
                    error: None,
                    heal_error: None,
                    effect: None,
                };
                let heal = match r {
                    Ok((targets, detail, heal)) => {
                        println!(
                            "[{:>5.1}s] fault {}/{}: {detail}",
                            applied_ms as f64 / 1000.0,
                            f.nemesis,
                            f.variant
                        );
                        *current.lock().unwrap_or_else(|p| p.into_inner()) =
                            format!("{}/{} {targets:?}", f.nemesis, f.variant);
                        record.targets = targets;
                        record.detail = detail;
                        heal
                    }
                    Err(e) => {
                        println!(
                            "[{:>5.1}s] fault {}/{} FAILED TO APPLY: {e}",
                            applied_ms as f64 / 1000.0,
                            f.nemesis,
                            f.variant
                        );
                        record.error = Some(e);
                        if f.nemesis == Nemesis::Membership {
                            // a half-added node must not stay
                            let ids: Vec<u64> = {
                                let c = cluster.lock().unwrap_or_else(|p| p.into_inner());
                                c.nodes[c.initial..].iter().map(|n| n.spec.id).collect()
                            };
                            for id in ids {
                                let _ = nemesis::remove_added(&cluster, &http, id).await;
                            }
                        }
                        records
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(record);
                        continue;
                    }
                };
                tokio::time::sleep(Duration::from_millis(f.duration_ms)).await;
                let h = nemesis::heal(heal, &cluster, &http).await;
                let healed = rec.now_ms();
                last_heal_ms = healed;
                record.healed_ms = Some(healed);
                println!(
                    "[{:>5.1}s] heal {}/{}: {}",
                    healed as f64 / 1000.0,
                    f.nemesis,
                    f.variant,
                    match &h {
                        Ok(e) => e.clone(),
                        Err(e) => format!("FAILED: {e}"),
                    }
                );
                match h {
                    Ok(e) => record.effect = Some(e),
                    Err(e) => record.heal_error = Some(e),
                }
                *current.lock().unwrap_or_else(|p| p.into_inner()) = "none".into();
                records
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(record);
            }
        })
    };

    // progress, one line a second, until the duration is over
    let started = Instant::now();
    // past the duration only while a fault is still being applied or healed (bounded)
    while started.elapsed() < args.duration
        || (!nem.is_finished() && started.elapsed() < args.duration + Duration::from_secs(90))
    {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (ok, fail, info, inv) = rec.counts();
        println!(
            "[{:>5.1}s] ops {inv} (ok {ok}, info {info}, fail {fail}) fault: {}{}",
            rec.now_ms() as f64 / 1000.0,
            current.lock().unwrap_or_else(|p| p.into_inner()),
            ingest_progress
                .as_ref()
                .map(|p| format!("; {}", p.lock().unwrap_or_else(|p| p.into_inner())))
                .unwrap_or_default()
        );
    }
    stop.store(true, Ordering::Relaxed);
    nem.abort(); // only if it overran by 90 s; a fault still in force is healed below
    let _ = nem.await;
    for w in workers {
        let _ = tokio::time::timeout(Duration::from_secs(30), w).await;
    }
    let workload_end_ms = rec.now_ms();

    // final heal
    println!("[{:>5.1}s] final heal", rec.now_ms() as f64 / 1000.0);
    let mut heal_problems = Vec::new();
    let extra_ids: Vec<u64> = {
        let c = cluster.lock().unwrap_or_else(|p| p.into_inner());
        c.nodes[c.initial..].iter().map(|n| n.spec.id).collect()
    };
    for id in extra_ids {
        if let Err(e) = nemesis::remove_added(&cluster, &http, id).await {
            heal_problems.push(format!("removing added node {id}: {e}"));
        }
    }
    {
        let mut c = cluster.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = &c.net {
            if let Err(e) = n.heal() {
                heal_problems.push(e.to_string());
            }
        }
        for i in 0..c.initial {
            if c.nodes[i].is_paused() {
                if let Err(e) = c.nodes[i].resume() {
                    heal_problems.push(e.to_string());
                }
            }
            let skewed = c.nodes[i].skew.is_some();
            if skewed {
                let _ = c.kill(i);
            }
            if !c.nodes[i].running() {
                if let Err(e) = c.start(i, None) {
                    heal_problems.push(e);
                }
            }
        }
    }
    // a record for a fault cut short by the end of the run
    let heal_ms = rec.now_ms();
    let recovery_start = Instant::now();
    let mut recovered = true;
    for u in &urls {
        let left = args
            .recovery_timeout
            .saturating_sub(recovery_start.elapsed());
        if !perdure_harness::ready(u, left).await {
            recovered = false;
            heal_problems.push(format!(
                "{u} not ready within {:?} of the final heal",
                args.recovery_timeout
            ));
        }
    }
    let recovery_ms = recovery_start.elapsed().as_millis() as u64;
    println!(
        "[{:>5.1}s] recovery: {} in {recovery_ms} ms",
        rec.now_ms() as f64 / 1000.0,
        if recovered {
            "every node ready"
        } else {
            "NOT RECOVERED"
        }
    );

    // final writes and reads on every key
    let final_client = workload::client(&urls[0], true)?;
    let mut final_failures = Vec::new();
    let deadline = Instant::now() + args.recovery_timeout;
    let mut instances = Vec::new();
    for (wl, key) in rec.keys() {
        if wl == "orchestration" {
            instances.push(key);
            continue;
        }
        if wl == checker::ingest::WORKLOAD {
            continue; // read by its own final phase below
        }
        let mut steps: Vec<(&str, Value)> = Vec::new();
        if wl == "register" {
            steps.push(("write", json!(FINAL_PROCESS * 1_000_000)));
            steps.push(("read", json!({"via": "state"})));
        } else {
            steps.push(("final-read", Value::Null));
        }
        for (f, input) in steps {
            let mut done = false;
            while Instant::now() < deadline {
                if workload::run_op(
                    &rec,
                    &final_client,
                    FINAL_PROCESS,
                    seed,
                    &wl,
                    &key,
                    f,
                    input.clone(),
                )
                .await
                .is_some()
                {
                    done = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            if !done {
                final_failures.push(format!("final {f} of {wl} {key} did not succeed"));
            }
        }
    }

    if !instances.is_empty() {
        // every instance ever invoked, each waited for until it finished (bounded)
        println!(
            "[{:>5.1}s] reading {} orchestration instances (waiting up to {ORCH_FINAL_BUDGET:?} for them to finish)",
            rec.now_ms() as f64 / 1000.0,
            instances.len()
        );
        final_failures.extend(
            orchestration::final_reads(
                rec.clone(),
                orch_http.clone(),
                shared_urls.clone(),
                instances,
                ORCH_FINAL_BUDGET,
            )
            .await,
        );
        println!(
            "[{:>5.1}s] orchestration instances read",
            rec.now_ms() as f64 / 1000.0
        );
    }

    let mut ingest_summary = None;
    if let Some(run) = ingest_run {
        let (summary, problems) = run.finish(&rec, &final_client).await;
        final_failures.extend(problems);
        ingest_summary = Some(summary);
    }

    // node logs: panics
    let mut panics = Vec::new();
    let skewed: HashSet<u64>;
    {
        let c = cluster.lock().unwrap_or_else(|p| p.into_inner());
        skewed = c
            .nodes
            .iter()
            .flat_map(|n| n.skewed_pids.iter().map(|p| u64::from(*p)))
            .collect();
        for n in &c.nodes {
            let text = std::fs::read_to_string(&n.spec.log).unwrap_or_default();
            for l in text.lines().filter(|l| l.contains("panicked at")) {
                panics.push(format!("node {}: {l}", n.spec.id));
            }
        }
    }

    // stop the cluster
    {
        let mut c = cluster.lock().unwrap_or_else(|p| p.into_inner());
        for n in c.nodes.iter_mut() {
            if let Some(pid) = n.pid() {
                PIDS.lock().unwrap_or_else(|p| p.into_inner()).remove(&pid);
            }
            let _ = n.stop(Duration::from_secs(5));
        }
        if let Some(n) = &c.net {
            n.teardown();
        }
        heal_problems.extend(powerloss::unmount_all(&mut c));
    }
    let events = rec.events();
    println!("checking {} events...", events.len());
    let t = Instant::now();
    let records = records.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let skew_until_us = skew_until_us(&records, &skewed, heal_ms);
    let results = run_checkers(
        &events,
        &args.workloads,
        &skewed,
        skew_until_us,
        args.lin_steps,
    );
    println!("checked in {:?}", t.elapsed());

    // report
    let mut summary: BTreeMap<String, Summary> = BTreeMap::new();
    for n in &nemeses {
        summary.insert(
            n.name().into(),
            Summary {
                scheduled: 0,
                applied: 0,
                failed: 0,
            },
        );
    }
    for r in &records {
        let s = summary
            .entry(r.fault.nemesis.name().into())
            .or_insert(Summary {
                scheduled: 0,
                applied: 0,
                failed: 0,
            });
        s.scheduled += 1;
        if r.applied {
            s.applied += 1;
        } else {
            s.failed += 1;
        }
    }
    let never_applied: Vec<String> = summary
        .iter()
        .filter(|(_, s)| s.applied == 0)
        .map(|(n, _)| n.clone())
        .collect();
    let windows: Vec<svg::Window> = records
        .iter()
        .map(|r| svg::Window {
            from_ms: r.applied_ms,
            to_ms: r.healed_ms.unwrap_or(r.applied_ms + r.fault.duration_ms),
            label: format!("{}/{}", r.fault.nemesis, r.fault.variant),
            applied: r.applied,
        })
        .collect();
    let in_fault = |t_us: u64| {
        windows
            .iter()
            .any(|w| w.applied && t_us / 1000 >= w.from_ms && t_us / 1000 <= w.to_ms)
    };
    let (mut fo, mut ft, mut qo, mut qt) = (0u64, 0u64, 0u64, 0u64);
    for e in events
        .iter()
        .filter(|e| e.kind != EventType::Invoke && e.process < FINAL_PROCESS)
    {
        let ok = (e.kind == EventType::Ok) as u64;
        if in_fault(e.time_us) {
            fo += ok;
            ft += 1;
        } else {
            qo += ok;
            qt += 1;
        }
    }
    let count = |k: EventType| events.iter().filter(|e| e.kind == k).count();
    let checks_ok = results.iter().all(CheckResult::passed);
    let failed_heals: Vec<String> = records
        .iter()
        .filter_map(|r| {
            r.heal_error
                .as_ref()
                .map(|e| format!("{}/{}: {e}", r.fault.nemesis, r.fault.variant))
        })
        .collect();
    let harness_ok = failed_heals.is_empty()
        && recovered
        && final_failures.is_empty()
        && panics.is_empty()
        && never_applied.is_empty()
        && heal_problems.is_empty();
    let valid = checks_ok && harness_ok;
    let plugs_pulled: usize = records
        .iter()
        .filter(|r| r.applied && r.fault.nemesis == Nemesis::Powerloss)
        .map(|r| r.targets.len())
        .sum();
    let report = json!({
        "seed": seed,
        "duration_ms": duration_ms,
        "nodes": args.nodes,
        "concurrency": args.concurrency,
        "workloads": args.workloads,
        "nemeses": nemeses.iter().map(|n| n.name()).collect::<Vec<_>>(),
        "binary": bin.display().to_string(),
        "bug": args.bug,
        "replay": format!(
            "cargo run -p perdure-chaos --release -- run --duration {}s --nodes {} --workloads {} --nemeses {} --seed {seed}{}",
            duration_ms / 1000, args.nodes, args.workloads.join(","),
            nemeses.iter().map(|n| n.name()).collect::<Vec<_>>().join(","),
            args.bug.as_ref().map(|b| format!(" --bug {b}")).unwrap_or_default()
        ),
        "valid": valid,
        "checkers": results,
        "faults": records,
        "fault_summary": summary,
        "nemeses_never_applied": never_applied,
        "recovery": {"recovered": recovered, "ms": recovery_ms, "healed_at_ms": heal_ms, "workload_end_ms": workload_end_ms, "problems": heal_problems},
        "final_failures": final_failures,
        "failed_heals": failed_heals,
        "panics": panics,
        "ops": {
            "invoked": count(EventType::Invoke),
            "ok": count(EventType::Ok),
            "fail": count(EventType::Fail),
            "info": count(EventType::Info),
        },
        "availability": {
            "during_faults": if ft > 0 { fo as f64 / ft as f64 } else { 1.0 },
            "outside_faults": if qt > 0 { qo as f64 / qt as f64 } else { 1.0 },
        },
        "skewed_pids": skewed,
        "skew_until_us": skew_until_us,
        "ingest": ingest_summary,
        "powerfs": {"mounted": nemeses.contains(&Nemesis::Powerloss) || args.powerfs, "plugs_pulled": plugs_pulled},
    });
    std::fs::create_dir_all(&out)?;
    history::write_jsonl(&out.join("history.jsonl"), &events)?;
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let title = format!(
        "perdure-chaos seed {seed}: {} nodes, {:?}, {} {}",
        args.nodes,
        args.duration,
        nemeses
            .iter()
            .map(|n| n.name())
            .collect::<Vec<_>>()
            .join(","),
        if valid { "VALID" } else { "INVALID" }
    );
    std::fs::write(
        out.join("plot.svg"),
        svg::plot(&title, &events, &windows, rec.now_ms()),
    )?;
    if !args.keep_data {
        let c = cluster.lock().unwrap_or_else(|p| p.into_inner());
        for n in &c.nodes {
            let _ = std::fs::remove_dir_all(&n.spec.data_dir);
            let _ = std::fs::remove_dir_all(powerloss::backing(&n.spec));
        }
        // the ingest workload's JetStream files (its log stays)
        let _ = std::fs::remove_dir_all(out.join("broker").join("jetstream"));
    }

    // summary
    println!("\n== faults");
    for (n, s) in &summary {
        println!(
            "  {n}: scheduled {}, applied {}, failed to apply {}",
            s.scheduled, s.applied, s.failed
        );
    }
    if plugs_pulled > 0 {
        println!("  powerloss: {plugs_pulled} plugs pulled (unsynced writes dropped, node restarted on what survived)");
    }
    for r in records.iter().filter(|r| !r.applied) {
        println!(
            "  not applied: {}/{}: {}",
            r.fault.nemesis,
            r.fault.variant,
            r.error.clone().unwrap_or_default()
        );
    }
    println!("== checkers");
    for r in &results {
        println!(
            "  {}: {:?} ({} keys, {} ops, {} anomalies)",
            r.checker, r.valid, r.keys, r.ops, r.anomaly_count
        );
        for n in &r.notes {
            println!("    {n}");
        }
        for a in r.anomalies.iter().take(5) {
            println!("    {a}");
        }
    }
    if let Some(i) = &ingest_summary {
        println!(
            "== ingest: {} records produced ({}/s asked), {} after the final heal, {} entities read",
            i.produced,
            i.rate,
            if i.drained {
                format!("both subscriptions caught up in {} ms", i.drain_ms)
            } else {
                format!("NOT caught up within {} ms", i.drain_ms)
            },
            i.entities_read
        );
        for (name, s) in i.subscriptions.as_object().into_iter().flatten() {
            println!(
                "  {name}: applied {} dead-lettered {} lag {} positions {:?}",
                s["applied"],
                s["dead_lettered"],
                s["lag"],
                s["partitions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| p["position"].as_u64().unwrap_or(0))
                    .collect::<Vec<_>>()
            );
        }
    }
    println!(
        "== ops: {} invoked, {} ok, {} info, {} fail; availability during faults {:.1}%, outside {:.1}%",
        count(EventType::Invoke),
        count(EventType::Ok),
        count(EventType::Info),
        count(EventType::Fail),
        if ft > 0 { 100.0 * fo as f64 / ft as f64 } else { 100.0 },
        if qt > 0 { 100.0 * qo as f64 / qt as f64 } else { 100.0 },
    );
    for p in report["recovery"]["problems"]
        .as_array()
        .into_iter()
        .flatten()
    {
        println!("  heal problem: {p}");
    }
    for p in final_failures
        .iter()
        .chain(panics.iter())
        .chain(failed_heals.iter())
    {
        println!("  problem: {p}");
    }
    if !never_applied.is_empty() {
        println!("  requested nemeses that never applied: {never_applied:?}");
    }
    println!(
        "== {}: report in {}",
        if valid { "VALID" } else { "INVALID" },
        out.display()
    );
    if args.expect_anomaly {
        if checks_ok {
            println!("expected an anomaly (--expect-anomaly) and found none");
            return Ok(1);
        }
        println!("anomaly found, as expected (--expect-anomaly)");
        return Ok(0);
    }
    Ok(if valid { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::{parse_duration, skew_until_us};
    use crate::nemesis::FaultRecord;
    use perdure_chaos::schedule::{Fault, Nemesis};
    use std::collections::HashSet;
    use std::time::Duration;

    fn record(nemesis: Nemesis, healed_ms: Option<u64>, heal_error: Option<&str>) -> FaultRecord {
        FaultRecord {
            fault: Fault {
                at_ms: 0,
                duration_ms: 1,
                nemesis,
                variant: String::new(),
                pick: 0,
            },
            applied_ms: 0,
            healed_ms,
            applied: true,
            targets: vec![2],
            detail: String::new(),
            error: None,
            heal_error: heal_error.map(String::from),
            effect: None,
        }
    }

    #[test]
    fn clocks_are_trusted_after_the_last_skewed_node_stopped() {
        let skewed = HashSet::from([42]);
        let records = [
            record(Nemesis::Skew, Some(10_000), None),
            record(Nemesis::Kill, Some(50_000), None),
            record(Nemesis::Skew, Some(30_000), None),
        ];
        assert_eq!(skew_until_us(&records, &HashSet::new(), 90_000), None);
        assert_eq!(skew_until_us(&records, &skewed, 90_000), Some(30_000_000));
        // a skew whose heal failed lasted until the final heal
        let failed = [record(Nemesis::Skew, Some(10_000), Some("no"))];
        assert_eq!(skew_until_us(&failed, &skewed, 90_000), Some(90_000_000));
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }
}
