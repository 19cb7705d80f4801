//! duroxide 0.1.32 (file SQLite) running perdure's orchestration scenarios in process:
//! HelloSequence5 (5 `SayHello` activities in sequence) closed loop with `--concurrency` in flight,
//! once per `--slots` setting (orchestration and activity slots alike), one at a time, and a
//! fan-out/fan-in of `--fan-out` activities. The dispatchers poll SQLite every `--poll-ms`
//! (`dispatcher_min_poll_interval`; its default is 100 ms). One instance (one at a time, the
//! fan-out) is watched by polling its status every `--poll-ms` too (duroxide's own
//! `wait_for_orchestration` backs off from 5 to 100 ms, which would be measured instead of the
//! runtime); the throughput's many instances by `wait_for_orchestration` (64 tasks polling every
//! 2 ms lock SQLite up and halve the throughput).
//!
//! Durability: duroxide sets `PRAGMA journal_mode = WAL` and `PRAGMA synchronous = WAL`, a value
//! SQLite does not know and reads as NORMAL: in WAL mode NORMAL does not fsync each commit (only
//! at checkpoints). perdure fsyncs every commit, on a majority.
//!
//! Writes a JSON array of rows (`scenario`, `completed`, `errors`, `seconds`, `instances_per_sec`,
//! `concurrency`, `latency_ms`, `generator_cpu`), the shape of perdure-bench's orchestration rows.

use duroxide::providers::sqlite::SqliteProvider;
use duroxide::runtime::registry::ActivityRegistry;
use duroxide::runtime::{Runtime, RuntimeOptions};
use duroxide::{
    ActivityContext, Client, OrchestrationContext, OrchestrationRegistry, OrchestrationStatus,
};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CITIES: [&str; 5] = ["Tokyo", "Seattle", "London", "Paris", "Cairo"];

struct Args {
    instances: u64,
    concurrency: usize,
    latency_instances: u64,
    poll_ms: u64,
    slots: Vec<usize>,
    fan_out: u64,
    db_dir: std::path::PathBuf,
    json: Option<std::path::PathBuf>,
}

fn args() -> Args {
    let mut a = Args {
        instances: 1000,
        concurrency: 64,
        latency_instances: 200,
        poll_ms: 2,
        slots: vec![2, 8],
        fan_out: 1000,
        db_dir: std::env::temp_dir(),
        json: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--instances" => a.instances = v.parse().expect("--instances"),
            "--concurrency" => a.concurrency = v.parse().expect("--concurrency"),
            "--latency-instances" => a.latency_instances = v.parse().expect("--latency-instances"),
            "--poll-ms" => a.poll_ms = v.parse().expect("--poll-ms"),
            "--slots" => a.slots = v.split(',').map(|s| s.parse().expect("--slots")).collect(),
            "--fan-out" => a.fan_out = v.parse().expect("--fan-out"),
            "--db-dir" => a.db_dir = v.into(),
            "--json" => a.json = Some(v.into()),
            other => panic!("unknown option {other}"),
        }
    }
    a
}

fn expected_hello5() -> String {
    let out: Vec<String> = CITIES.iter().map(|c| format!("Hello {c}!")).collect();
    serde_json::to_string(&out).expect("json")
}

fn registries() -> (ActivityRegistry, OrchestrationRegistry) {
    let activities = ActivityRegistry::builder()
        .register(
            "SayHello",
            |_ctx: ActivityContext, name: String| async move { Ok(format!("Hello {name}!")) },
        )
        .register("GetNumber", |_ctx: ActivityContext, n: String| async move {
            Ok(n)
        })
        .build();
    let orchestrations = OrchestrationRegistry::builder()
        .register(
            "HelloSequence5",
            |ctx: OrchestrationContext, _input: String| async move {
                let mut out = Vec::with_capacity(CITIES.len());
                for city in CITIES {
                    out.push(ctx.schedule_activity("SayHello", city).await?);
                }
                serde_json::to_string(&out).map_err(|e| e.to_string())
            },
        )
        .register(
            "FanOutFanIn",
            |ctx: OrchestrationContext, input: String| async move {
                let n: u64 = input.trim().parse().map_err(|e| format!("input: {e}"))?;
                let tasks: Vec<_> = (0..n)
                    .map(|i| ctx.schedule_activity("GetNumber", i.to_string()))
                    .collect();
                let mut sum = 0u64;
                for r in ctx.join(tasks).await {
                    sum += r?.parse::<u64>().map_err(|e| e.to_string())?;
                }
                Ok(sum.to_string())
            },
        )
        .build();
    (activities, orchestrations)
}

/// A fresh file database and a runtime over it with `slots` orchestration and activity slots.
async fn start(a: &Args, name: &str, slots: usize) -> (Arc<Runtime>, Client) {
    let path = a.db_dir.join(format!("{name}.db"));
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
    }
    std::fs::File::create(&path).expect("database file");
    let store = Arc::new(
        SqliteProvider::new(&format!("sqlite:{}", path.display()), None)
            .await
            .expect("sqlite provider"),
    );
    let (activities, orchestrations) = registries();
    let options = RuntimeOptions {
        dispatcher_min_poll_interval: Duration::from_millis(a.poll_ms),
        orchestration_concurrency: slots,
        worker_concurrency: slots,
        ..Default::default()
    };
    let rt = Runtime::start_with_options(store.clone(), activities, orchestrations, options).await;
    (rt, Client::new(store))
}

/// Starts `name` under `id` and waits until it ends: polling its status every `poll`, or with
/// duroxide's own `wait_for_orchestration` (which polls from 5 ms backing off to 100 ms) when
/// `poll` is `None`; its output.
async fn run_one(
    c: &Client,
    name: &str,
    id: &str,
    input: &str,
    poll: Option<Duration>,
) -> Result<String, String> {
    c.start_orchestration(id, name, input)
        .await
        .map_err(|e| format!("start {id}: {e:?}"))?;
    let Some(poll) = poll else {
        return match c.wait_for_orchestration(id, Duration::from_secs(600)).await {
            Ok(OrchestrationStatus::Completed { output, .. }) => Ok(output),
            Ok(OrchestrationStatus::Failed { details, .. }) => {
                Err(format!("{id} failed: {}", details.display_message()))
            }
            other => Err(format!("{id}: {other:?}")),
        };
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        match c.get_orchestration_status(id).await {
            Ok(OrchestrationStatus::Completed { output, .. }) => return Ok(output),
            Ok(OrchestrationStatus::Failed { details, .. }) => {
                return Err(format!("{id} failed: {}", details.display_message()))
            }
            Ok(_) => {}
            Err(e) => return Err(format!("status {id}: {e:?}")),
        }
        if Instant::now() > deadline {
            return Err(format!("{id}: not done after 600 s"));
        }
        tokio::time::sleep(poll).await;
    }
}

fn cpu_seconds() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / 100.0
}

fn row(
    scenario: String,
    completed: u64,
    errors: u64,
    secs: f64,
    h: &Histogram<u64>,
    concurrency: usize,
    cpu: f64,
    extra: Value,
) -> Value {
    let q = |x| h.value_at_quantile(x) as f64 / 1000.0;
    json!({
        "scenario": scenario, "completed": completed, "errors": errors, "seconds": secs,
        "instances_per_sec": completed as f64 / secs, "concurrency": concurrency,
        "latency_ms": {"p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "max": h.max() as f64 / 1000.0, "count": h.len()},
        "generator_cpu": cpu, "instances_run": completed, "detail": extra,
    })
}

/// Closed loop: `concurrency` workers, `warmup` then `n` HelloSequence5 instances.
async fn hello5(
    c: &Client,
    prefix: &str,
    n: u64,
    warmup: u64,
    concurrency: usize,
    poll: Option<Duration>,
) -> (u64, u64, f64, Histogram<u64>) {
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let hist = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("h"),
    ));
    let from = Arc::new(Mutex::new(None::<Instant>));
    let want = expected_hello5();
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (c, next, done, errors, hist, from, want, prefix) = (
            c.clone(),
            next.clone(),
            done.clone(),
            errors.clone(),
            hist.clone(),
            from.clone(),
            want.clone(),
            prefix.to_string(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= warmup + n {
                    break;
                }
                if i == warmup {
                    *from.lock().unwrap() = Some(Instant::now());
                }
                let t = Instant::now();
                match run_one(&c, "HelloSequence5", &format!("{prefix}{i}"), "", poll).await {
                    Ok(out) if out == want => {
                        if i >= warmup {
                            let _ = hist
                                .lock()
                                .unwrap()
                                .record(t.elapsed().as_micros().max(1) as u64);
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(out) => panic!("HelloSequence5 answered {out}, expected {want}"),
                    Err(e) => {
                        eprintln!("  {e}");
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for w in workers {
        w.await.expect("worker");
    }
    let secs = from
        .lock()
        .unwrap()
        .map_or(0.0, |f| f.elapsed().as_secs_f64());
    let h = hist.lock().unwrap().clone();
    (
        done.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
        secs,
        h,
    )
}

#[tokio::main]
async fn main() {
    let a = args();
    std::fs::create_dir_all(&a.db_dir).expect("db dir");
    let poll = Duration::from_millis(a.poll_ms);
    let mut rows = Vec::new();
    for &slots in &a.slots {
        let (rt, c) = start(&a, &format!("h5-{slots}"), slots).await;
        let cpu0 = cpu_seconds();
        let t0 = Instant::now();
        let warm = (a.instances / 20).max(1);
        // many waiters: duroxide's own wait (polling every 2 ms from 64 tasks locks SQLite up)
        let (done, errors, secs, h) =
            hello5(&c, "h5-", a.instances, warm, a.concurrency, None).await;
        let cpu = (cpu_seconds() - cpu0) / t0.elapsed().as_secs_f64();
        let r = row(
            format!("HelloSequence5, {} instances, {} in flight ({slots}+{slots} slots, dispatcher poll {} ms)", a.instances, a.concurrency, a.poll_ms),
            done, errors, secs, &h, a.concurrency, cpu, json!({"slots": slots, "process_cores": cpu}),
        );
        eprintln!("duroxide {slots}+{slots} slots: {done} HelloSequence5 in {secs:.1} s = {:.1}/s, p50 {:.1} ms, p99 {:.1} ms, {errors} errors, {cpu:.2} cores", done as f64 / secs, h.value_at_quantile(0.5) as f64 / 1000.0, h.value_at_quantile(0.99) as f64 / 1000.0);
        rows.push(r);
        rt.shutdown(Some(1000)).await;
    }
    // one at a time, duroxide's default slots (2 + 2)
    {
        let (rt, c) = start(&a, "one", 2).await;
        let cpu0 = cpu_seconds();
        let t0 = Instant::now();
        let warm = (a.latency_instances / 10).max(1);
        let (done, errors, secs, h) =
            hello5(&c, "one-", a.latency_instances, warm, 1, Some(poll)).await;
        let cpu = (cpu_seconds() - cpu0) / t0.elapsed().as_secs_f64();
        eprintln!(
            "duroxide one at a time: p50 {:.1} ms, p99 {:.1} ms over {done}",
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0
        );
        rows.push(row(
            format!(
                "HelloSequence5 one at a time (start to completion, poll {} ms)",
                a.poll_ms
            ),
            done,
            errors,
            secs,
            &h,
            1,
            cpu,
            json!({"slots": 2, "process_cores": cpu}),
        ));
        rt.shutdown(Some(1000)).await;
    }
    if a.fan_out > 0 {
        let slots = *a.slots.last().unwrap_or(&2);
        let (rt, c) = start(&a, "fan", slots).await;
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("h");
        let mut secs = 0.0;
        let mut done = 0;
        let want = (a.fan_out * a.fan_out.saturating_sub(1) / 2).to_string();
        for r in 0..3 {
            let t = Instant::now();
            match run_one(
                &c,
                "FanOutFanIn",
                &format!("fan-{r}"),
                &a.fan_out.to_string(),
                Some(poll),
            )
            .await
            {
                Ok(out) if out == want => {
                    let took = t.elapsed();
                    secs += took.as_secs_f64();
                    let _ = h.record(took.as_micros().max(1) as u64);
                    done += 1;
                    eprintln!(
                        "duroxide fan-out of {}: {:.2} s",
                        a.fan_out,
                        took.as_secs_f64()
                    );
                }
                other => panic!("FanOutFanIn answered {other:?}, expected {want}"),
            }
        }
        let mut r = row(
            format!(
                "fan-out/fan-in of {} activities (time to complete, 3 runs; {slots}+{slots} slots)",
                a.fan_out
            ),
            done,
            0,
            secs,
            &h,
            1,
            0.0,
            json!({"slots": slots}),
        );
        r["instances_per_sec"] = json!((done * a.fan_out) as f64 / secs);
        rows.push(r);
        rt.shutdown(Some(1000)).await;
    }
    let text = serde_json::to_string_pretty(&rows).expect("json");
    match &a.json {
        Some(p) => std::fs::write(p, text).expect("write --json"),
        None => println!("{text}"),
    }
}
