//! Failover with the official Durable Task Python SDK (`durabletask` 1.12.0) against the real
//! binary: a 3-node cluster (6 partitions), two Python worker PROCESSES connected to one node
//! through a small TCP proxy of ours (`sdk/python/failover/proxy.py`: each new connection goes
//! to the first target that accepts, an established one is closed when its target dies; so the
//! SDK worker, which reconnects to the same address with back-off, lands on another node), and
//! a client process connected straight to the one node this test never kills (the client is not
//! what is under test here: the SDK client does not retry a long poll cut by a dead node, and
//! any live node forwards requests to the partitions' current leaders).
//!
//! The workload (`sdk/python/failover/workload.py`): N instances of an orchestration that
//! chains 3 activities, fans out to 5, then calls a function entity `tally` (its own: `add` k
//! then `get`; and the phase's shared one: `add` 1), returning an output computed from its
//! input. Activities append each execution to a file (append + fsync) and sleep 200 ms.
//!
//! Two phases on one cluster, a fresh set of instances each:
//!  A. kill -9 the node leading most partitions while instances are in flight, restart it 5 s
//!     later;
//!  B. kill -9 the node the workers' proxy connections go to: the workers lose their streams
//!     and reconnect through the proxy to another node; their in-flight work is dispatched again
//!     (a session on a dead node stops fetching: the leaders requeue its leases after the session
//!     TTL, 20 s). Restarted 5 s later.
//!
//! Asserted for every instance: COMPLETED with exactly the expected output, each scheduled
//! activity with exactly one result in the history and no failed task, its entity's state equal
//! to its one add, and the shared entity equal to N (exactly once). Activities may run more than
//! once (at least once): the re-executions are counted and printed, not asserted. Timings are
//! printed (time to complete all, the longest pause in activity executions around the kill).
//!
//! Needs the venv made by `bash .ci/sdk-env.sh` (`target/sdk-venv`). Without it the test prints
//! a skip message and passes, unless `PERDURE_TEST_REQUIRE_TOOLS=1` (CI), where it fails.
//! `PERDURE_FAILOVER_LOG=debug,openraft=warn` sets the nodes' log filter;
//! `PERDURE_FAILOVER_KEEP=1` keeps the working directory (node logs, runs file, process logs).

mod common;
#[path = "sdk/runner.rs"]
mod sdk;

use common::cluster::{self, Nodes};
use common::KillOnDrop;
use perdure_harness::{Node, StartOptions};
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PARTITIONS: usize = 6;
/// Instances per phase.
const N: usize = 60;
/// Activities per instance (3 chained + 5 fanned out).
const ACTIVITIES: usize = 8;
/// Kill once this share of a phase's activity executions has started.
const KILL_AT: usize = N * ACTIVITIES / 4;
/// How long a killed node stays down.
const DOWN_FOR: Duration = Duration::from_secs(5);
/// The client's wait for all instances of a phase (seconds, from its first start).
const PHASE_TIMEOUT_S: u64 = 100;

fn venv_python() -> Option<PathBuf> {
    sdk::tool(
        sdk::repo_root().join("target/sdk-venv/bin/python"),
        "the Python SDK venv",
    )
}

fn scripts() -> PathBuf {
    sdk::repo_root().join("crates/cli/tests/sdk/python/failover")
}

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A Python script of `failover/` as a child process, its output to `log`.
fn spawn_py(python: &Path, script: &str, args: &[String], runs: &Path, log: &Path) -> KillOnDrop {
    let out = File::create(log).unwrap();
    let err = out.try_clone().unwrap();
    let child = Command::new(python)
        .arg(scripts().join(script))
        .args(args)
        .current_dir(scripts())
        .env("PERDURE_FAILOVER_RUNS", runs)
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {script}: {e}"));
    KillOnDrop(child)
}

/// Activity executions recorded so far: (time, key) per line.
fn executions(runs: &Path) -> Vec<(f64, String)> {
    std::fs::read_to_string(runs)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let t = f.next()?.parse().ok()?;
            let _pid = f.next()?;
            Some((t, f.next()?.to_string()))
        })
        .collect()
}

fn phase_executions(runs: &Path, phase: &str) -> Vec<(f64, String)> {
    let prefix = format!("fo-{phase}-");
    executions(runs)
        .into_iter()
        .filter(|(_, k)| k.starts_with(&prefix))
        .collect()
}

/// Open proxied connections per target, as the proxy last wrote them.
fn proxy_state(path: &Path) -> HashMap<String, u64> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default()
}

fn tail_file(path: &Path, n: usize) -> String {
    sdk::tail(&std::fs::read_to_string(path).unwrap_or_default(), n)
}

struct Ctx {
    python: PathBuf,
    dir: PathBuf,
    runs: PathBuf,
    proxy_state: PathBuf,
    client_addr: String,
}

impl Ctx {
    /// The logs of the Python processes, for a failure message.
    fn py_logs(&self) -> String {
        let mut s = String::new();
        for name in ["proxy.log", "worker-1.log", "worker-2.log"] {
            s += &format!("--- {name} ---\n{}\n", tail_file(&self.dir.join(name), 40));
        }
        s
    }
}

/// One phase: start the client, kill node `victim()` (chosen when the kill is due) once
/// [`KILL_AT`] activity executions of the phase have started, restart it [`DOWN_FOR`] later,
/// wait for the client's summary and check it.
fn phase(ctx: &Ctx, nodes: &mut Nodes, name: &str, what: &str, victim: &dyn Fn() -> usize) {
    println!("=== phase {name}: {what}");
    let client_log = ctx.dir.join(format!("client-{name}.log"));
    let client_out = ctx.dir.join(format!("client-{name}.json"));
    let out = File::create(&client_out).unwrap();
    let err = File::create(&client_log).unwrap();
    let mut client = KillOnDrop(
        Command::new(&ctx.python)
            .arg(scripts().join("run_client.py"))
            .args([
                ctx.client_addr.as_str(),
                name,
                &N.to_string(),
                "3",
                &PHASE_TIMEOUT_S.to_string(),
            ])
            .current_dir(scripts())
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap(),
    );
    let t0 = Instant::now();
    let wall0 = now_s();
    let deadline = Duration::from_secs(PHASE_TIMEOUT_S + 30);

    // the kill, once enough work is in flight
    loop {
        let n = phase_executions(&ctx.runs, name).len();
        if n >= KILL_AT {
            break;
        }
        if let Ok(Some(status)) = client.0.try_wait() {
            panic!(
                "phase {name}: the client exited ({status}) before the kill: {}\n{}",
                tail_file(&client_log, 40),
                ctx.py_logs()
            );
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "phase {name}: only {n} activity executions within 60 s\nclient: {}\n{}",
            tail_file(&client_log, 40),
            ctx.py_logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let v = victim();
    let kill_wall = now_s();
    nodes.kill(v);
    println!(
        "phase {name}: killed node {} at +{:.1} s ({} executions started)",
        v + 1,
        kill_wall - wall0,
        phase_executions(&ctx.runs, name).len()
    );
    std::thread::sleep(DOWN_FOR);
    nodes.restart(v);
    println!(
        "phase {name}: restarted node {} at +{:.1} s",
        v + 1,
        now_s() - wall0
    );

    // the client's verdict
    let status = loop {
        if let Some(s) = client.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < deadline,
            "phase {name}: the client did not finish within {deadline:?}\nclient: {}\n{}",
            tail_file(&client_log, 40),
            ctx.py_logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = std::fs::read_to_string(&client_out).unwrap_or_default();
    let summary: serde_json::Value = text
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "phase {name}: the client ({status}) printed no summary: {text}\n{}\n{}",
                tail_file(&client_log, 60),
                ctx.py_logs()
            )
        });

    // activity executions: at least once each, re-executions counted
    let runs = phase_executions(&ctx.runs, name);
    let mut per_key: HashMap<&str, usize> = HashMap::new();
    for (_, k) in &runs {
        *per_key.entry(k.as_str()).or_default() += 1;
    }
    let reexecuted: Vec<_> = per_key.iter().filter(|(_, n)| **n > 1).collect();
    let reexecutions: usize = per_key.values().map(|n| n - 1).sum();
    // the longest pause in activity executions from the kill on (none started meanwhile)
    let mut times: Vec<f64> = runs.iter().map(|(t, _)| *t).collect();
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mut stall = 0f64;
    let mut prev = kill_wall;
    for t in times.iter().filter(|t| **t >= kill_wall) {
        stall = stall.max(t - prev);
        prev = *t;
    }
    let start_wall = summary["start_wall"].as_f64().unwrap_or(wall0);
    // the same for instance completions (offsets from the client's first start)
    let kill_at = kill_wall - start_wall;
    let mut done_stall = 0f64;
    let mut prev = kill_at;
    for t in summary["done_s"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_f64())
        .filter(|t| *t >= kill_at)
    {
        done_stall = done_stall.max(t - prev);
        prev = t;
    }
    println!(
        "phase {name}: {} of {N} completed; all done {:.1} s after the first start (kill at \
         +{:.1} s); activity executions {} for {} activities: {} re-executions ({} activities \
         ran more than once); longest pause after the kill: in activity starts {:.1} s, in \
         instance completions {:.1} s; client retries {}; shared entity {}; history event \
         kinds {}",
        summary["completed"],
        summary["all_done_s"].as_f64().unwrap_or(f64::NAN),
        kill_at,
        runs.len(),
        per_key.len(),
        reexecutions,
        reexecuted.len(),
        stall,
        done_stall,
        summary["client_retries"],
        summary["shared_entity"],
        summary["event_kinds"]
    );
    let failures = summary["failures"].as_array().cloned().unwrap_or_default();
    assert!(
        failures.is_empty() && status.success(),
        "phase {name}: client {status}, {} failures:\n{}\nclient: {}\n{}",
        failures.len(),
        failures
            .iter()
            .take(40)
            .map(|f| f.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
        tail_file(&client_log, 40),
        ctx.py_logs()
    );
    assert_eq!(
        summary["completed"].as_u64(),
        Some(N as u64),
        "phase {name}"
    );
    assert_eq!(
        summary["shared_entity"].as_u64(),
        Some(N as u64),
        "phase {name}"
    );
    assert_eq!(
        per_key.len(),
        N * ACTIVITIES,
        "phase {name}: activities that ran at least once"
    );
}

#[test]
fn python_workers_survive_node_kills() {
    let Some(python) = venv_python() else {
        return;
    };
    let started = Instant::now();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = if std::env::var("PERDURE_FAILOVER_KEEP").is_ok_and(|v| v == "1") {
        tmp.keep()
    } else {
        tmp.path().to_path_buf()
    };
    println!("working directory {}", dir.display());

    // the cluster
    let specs: Vec<_> = cluster::three_members(&dir)
        .into_iter()
        .map(|m| m.with_grpc_port().unwrap())
        .collect();
    for m in &specs {
        let c = cluster::test_config(
            m,
            &specs,
            "sdk-failover",
            "sdk-failover-secret-0123456789abcdef",
            PARTITIONS,
        );
        m.write_config(&c).unwrap();
    }
    let options = StartOptions {
        log: std::env::var("PERDURE_FAILOVER_LOG").ok(),
        ..Default::default()
    };
    let mut nodes = Nodes(
        specs
            .iter()
            .map(|m| {
                let mut n = Node::new(m.clone(), cluster::test_bin());
                n.start(&options).unwrap();
                n
            })
            .collect(),
    );
    for n in nodes.0.iter_mut() {
        n.wait_ready(Duration::from_secs(60)).unwrap();
    }
    let http = cluster::http_client();
    rt.block_on(cluster::wait_balanced(
        &http,
        &specs[0].url(),
        PARTITIONS,
        &[1, 2, 3],
    ));
    let t = Instant::now();
    while !specs.iter().all(|m| sdk::accepts(&m.grpc_addr())) {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "gRPC listeners not up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // phase A's victim: the node leading most partitions (lowest id on a tie); the workers'
    // proxy tries first another node W (phase B's victim), then the leader; the client is on
    // the third node C, never killed
    let leaders = rt
        .block_on(cluster::leaders(&http, &specs[0].url()))
        .expect("GET /cluster");
    let most = (1..=3u64)
        .max_by_key(|id| {
            (
                leaders.get(id).copied().unwrap_or(0),
                std::cmp::Reverse(*id),
            )
        })
        .unwrap() as usize
        - 1;
    let others: Vec<usize> = (0..3).filter(|i| *i != most).collect();
    let (w, c) = (others[0], others[1]);
    println!(
        "leaders per node {leaders:?}: phase A kills node {}; workers' proxy targets nodes {}, \
         {}, {}; the client is on node {}",
        most + 1,
        w + 1,
        most + 1,
        c + 1,
        c + 1
    );
    let runs = dir.join("runs.txt");
    let ctx = Ctx {
        python: python.clone(),
        dir: dir.clone(),
        runs: runs.clone(),
        proxy_state: dir.join("proxy.json"),
        client_addr: specs[c].grpc_addr(),
    };

    // the proxy and the workers
    let proxy_port = common::free_port();
    let _proxy = spawn_py(
        &python,
        "proxy.py",
        &[
            proxy_port.to_string(),
            specs[w].grpc_addr(),
            specs[most].grpc_addr(),
            specs[c].grpc_addr(),
            "--state".into(),
            ctx.proxy_state.display().to_string(),
        ],
        &runs,
        &dir.join("proxy.log"),
    );
    let proxy_addr = format!("127.0.0.1:{proxy_port}");
    let t = Instant::now();
    while !sdk::accepts(&proxy_addr) {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "the proxy never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let _workers: Vec<KillOnDrop> = (1..=2)
        .map(|i| {
            spawn_py(
                &python,
                "run_worker.py",
                std::slice::from_ref(&proxy_addr),
                &runs,
                &dir.join(format!("worker-{i}.log")),
            )
        })
        .collect();
    let t = Instant::now();
    while proxy_state(&ctx.proxy_state).values().sum::<u64>() < 2 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the workers never connected\n{}",
            ctx.py_logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(1));
    println!("cluster and workers up after {:.1?}", started.elapsed());

    phase(
        &ctx,
        &mut nodes,
        "a",
        "kill -9 the node leading most partitions",
        &|| most,
    );

    // phase B: the node the workers' connections go to now
    let addrs: Vec<String> = specs.iter().map(|m| m.grpc_addr()).collect();
    let state_path = ctx.proxy_state.clone();
    let target = move || {
        let state = proxy_state(&state_path);
        let (addr, n) = state.iter().max_by_key(|(_, n)| **n).expect("proxy state");
        assert!(*n > 0, "no worker connection open: {state:?}");
        let i = addrs.iter().position(|a| a == addr).unwrap();
        assert_ne!(i, c, "the workers are on the client's node");
        println!("phase b: the workers' connections {state:?}");
        i
    };
    phase(
        &ctx,
        &mut nodes,
        "b",
        "kill -9 the node the workers are connected to (through the proxy)",
        &target,
    );
    println!("total {:.1?}", started.elapsed());
}
