//! `perdure-chaos fresh-nodes`: liveness of fresh nodes under plain load (Hardening case 14).
//!
//! Round after round: a fresh single node (empty data directory), `connections` clients sending
//! one-way `add 1` signals to `keys` counters as fast as it answers for `load`, then the node must
//! still answer: `/readyz` within a few seconds, and every counter read back, holding at least the
//! adds it acknowledged (and at most those plus the ones whose answer never came). A node that does
//! not answer is a hang: its threads' stacks (gdb or eu-stack when installed, else each thread's
//! kernel wait channel) go to the report and the run fails. sled 0.34.7 hung about one fresh node
//! in eight this way (spacejam/sled#1412).

use anyhow::{bail, Context};
use perdure_harness::{Node, NodeSpec, StartOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a fresh-nodes run goes.
#[derive(clap::Args, Debug)]
pub struct FreshArgs {
    /// Rounds (one fresh node each); ignored when `--duration` is given.
    #[arg(long, default_value_t = 8)]
    pub rounds: u32,
    /// Keep starting rounds until this much time has passed (`30m` for the soak).
    #[arg(long, value_parser = crate::parse_duration)]
    pub duration: Option<Duration>,
    /// How long each node is loaded.
    #[arg(long, default_value = "8s", value_parser = crate::parse_duration)]
    pub load: Duration,
    /// Concurrent clients (each one request at a time, like `wrk -c`).
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Counters the adds are spread over.
    #[arg(long, default_value_t = 1000)]
    pub keys: u64,
    /// The `perdure` binary (default `target/release/perdure`, else `target/debug/perdure`).
    #[arg(long)]
    pub bin: Option<PathBuf>,
    /// How long a loaded node has to answer `/readyz` and the reads before it counts as hung.
    #[arg(long, default_value = "20s", value_parser = crate::parse_duration)]
    pub answer_within: Duration,
    /// Where node directories and the report go.
    #[arg(long, default_value = "target/chaos/fresh-nodes")]
    pub out: PathBuf,
}

/// What one round measured.
#[derive(Debug, serde::Serialize)]
struct Round {
    round: u32,
    acknowledged: u64,
    unanswered: u64,
    errors: u64,
    adds_per_second: f64,
    applied: u64,
}

/// Runs the rounds; returns the process exit code (0: every node answered and kept its adds).
pub async fn run(args: FreshArgs) -> anyhow::Result<i32> {
    let bin = crate::find_bin(args.bin.clone())?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {:?}", args.out))?;
    let started = Instant::now();
    let mut rounds = Vec::new();
    let mut round = 0u32;
    loop {
        let more = match args.duration {
            Some(d) => started.elapsed() < d,
            None => round < args.rounds,
        };
        if !more {
            break;
        }
        round += 1;
        let dir = args.out.join(format!("round-{round}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        match one_round(&args, &bin, &dir, round).await {
            Ok(r) => {
                println!(
                    "round {round}: {} adds acknowledged ({:.0}/s), {} unanswered, {} errors, \
                     {} applied; the node answered",
                    r.acknowledged, r.adds_per_second, r.unanswered, r.errors, r.applied
                );
                rounds.push(r);
                let _ = std::fs::remove_dir_all(&dir);
            }
            Err(e) => {
                eprintln!("round {round}: FAILED: {e:#}");
                eprintln!("the node's files are kept in {}", dir.display());
                write_report(&args.out, &rounds, Some((round, format!("{e:#}"))))?;
                return Ok(1);
            }
        }
    }
    write_report(&args.out, &rounds, None)?;
    println!(
        "{} fresh nodes loaded for {:?} each: every one answered and kept its acknowledged adds ({:.0} s)",
        rounds.len(),
        args.load,
        started.elapsed().as_secs_f64()
    );
    Ok(0)
}

fn write_report(
    out: &Path,
    rounds: &[Round],
    failure: Option<(u32, String)>,
) -> anyhow::Result<()> {
    let report = serde_json::json!({
        "rounds": rounds,
        "failure": failure.map(|(round, error)| serde_json::json!({"round": round, "error": error})),
    });
    std::fs::write(
        out.join("results.json"),
        serde_json::to_vec_pretty(&report)?,
    )?;
    Ok(())
}

async fn one_round(args: &FreshArgs, bin: &Path, dir: &Path, round: u32) -> anyhow::Result<Round> {
    let spec = NodeSpec::new(1, 10 + (round % 200) as u8, dir)?;
    spec.write_config(&spec.config(&[]))?;
    let mut node = Node::new(spec, bin);
    node.start(&StartOptions::default())?;
    node.wait_ready(Duration::from_secs(30))
        .context("the fresh node did not become ready")?;
    let base = node.spec.url();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections)
        .build()?;
    let acked = Arc::new(AtomicU64::new(0));
    let unanswered = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let per_key: Arc<Vec<AtomicU64>> =
        Arc::new((0..args.keys).map(|_| AtomicU64::new(0)).collect());
    let until = Instant::now() + args.load;
    let mut tasks = Vec::new();
    for c in 0..args.connections {
        let (http, base) = (http.clone(), base.clone());
        let (acked, unanswered, errors, per_key) = (
            acked.clone(),
            unanswered.clone(),
            errors.clone(),
            per_key.clone(),
        );
        let keys = args.keys;
        let within = args.answer_within;
        tasks.push(tokio::spawn(async move {
            let mut i = c as u64;
            while Instant::now() < until {
                let k = i % keys;
                i = i
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407)
                    >> 1;
                let url =
                    format!("{base}/runtime/webhooks/durabletask/entities/counter/k{k}?op=add");
                let r = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body("1")
                    .timeout(within)
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().as_u16() == 202 => {
                        acked.fetch_add(1, Ordering::Relaxed);
                        per_key[k as usize].fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) if e.is_timeout() => {
                        unanswered.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let acknowledged = acked.load(Ordering::Relaxed);
    let lost_answers = unanswered.load(Ordering::Relaxed);
    let hung = |what: String| -> anyhow::Error {
        let stacks = node
            .pid()
            .map(stacks_of)
            .unwrap_or_else(|| "no process".into());
        let _ = std::fs::write(dir.join("stacks.txt"), &stacks);
        anyhow::anyhow!(
            "{what}; the node's stacks are in {}; its log ends:\n{}",
            dir.join("stacks.txt").display(),
            node.log_tail(20)
        )
    };
    if lost_answers > 0 {
        return Err(hung(format!(
            "{lost_answers} adds got no answer within {:?}",
            args.answer_within
        )));
    }
    let ready = perdure_harness::http_status(&node.spec.http_addr(), "/readyz", args.answer_within);
    if ready != Some(200) {
        return Err(hung(format!(
            "after the load /readyz answered {ready:?} (want 200 within {:?})",
            args.answer_within
        )));
    }
    // every counter holds what it acknowledged (no retries: an error may or may not have applied)
    let mut applied = 0u64;
    for k in 0..args.keys {
        let url = format!("{base}/runtime/webhooks/durabletask/entities/counter/k{k}");
        let r = http.get(&url).timeout(args.answer_within).send().await;
        let value = match r {
            Ok(r) if r.status().as_u16() == 200 => {
                // the body is the counter's state: its value
                let v: serde_json::Value = r.json().await?;
                v.as_u64()
                    .with_context(|| format!("counter k{k} holds {v}, not a count"))?
            }
            Ok(r) if r.status().as_u16() == 404 => 0,
            Ok(r) => bail!("reading counter k{k} answered {}", r.status()),
            Err(e) => return Err(hung(format!("reading counter k{k} failed: {e}"))),
        };
        let want = per_key[k as usize].load(Ordering::Relaxed);
        if value < want {
            bail!("counter k{k} holds {value}, but {want} adds to it were acknowledged");
        }
        applied += value;
    }
    let err_count = errors.load(Ordering::Relaxed);
    if applied > acknowledged + err_count {
        bail!("{applied} adds applied, more than {acknowledged} acknowledged + {err_count} failed");
    }
    node.stop(Duration::from_secs(10))?;
    Ok(Round {
        round,
        acknowledged,
        unanswered: lost_answers,
        errors: err_count,
        adds_per_second: acknowledged as f64 / args.load.as_secs_f64(),
        applied,
    })
}

/// Every thread's stack of process `pid`: gdb or eu-stack when installed, else each thread's name,
/// state and kernel wait channel from /proc.
fn stacks_of(pid: u32) -> String {
    let tools: [(&str, Vec<String>); 2] = [
        ("eu-stack", vec!["-p".into(), pid.to_string()]),
        (
            "gdb",
            vec![
                "-batch".into(),
                "-p".into(),
                pid.to_string(),
                "-ex".into(),
                "thread apply all bt".into(),
            ],
        ),
    ];
    for (tool, args) in tools {
        if let Ok(out) = std::process::Command::new(tool).args(&args).output() {
            if out.status.success() && !out.stdout.is_empty() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
        }
    }
    let mut s = String::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let p = t.path();
            let read = |f: &str| std::fs::read_to_string(p.join(f)).unwrap_or_default();
            s.push_str(&format!(
                "{} {} wchan={} {}\n",
                t.file_name().to_string_lossy(),
                read("comm").trim(),
                read("wchan").trim(),
                read("stat").split_whitespace().nth(2).unwrap_or("?")
            ));
        }
    }
    s
}
