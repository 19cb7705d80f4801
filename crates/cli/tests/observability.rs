//! Observability against a real 3-node cluster of the `perdure` binary on 127.0.0.1-3:
//!
//! - `promtool check metrics` accepts every node's `/metrics`;
//! - a real Prometheus scrapes the three nodes under load: every node is `up`, our series carry
//!   the load, and every PromQL expression of the Grafana dashboard (`deploy/grafana/perdure.json`)
//!   evaluates without error; the orchestration panels' queries all have series (they exist from
//!   start), and carry sample orchestrations when the node's HTTP API can start them; the stream
//!   ingestion panels' queries evaluate (empty: no subscription runs here);
//! - the web dashboard at `/` renders in a real headless Chromium: members, partitions, the
//!   orchestration counters and an entity's state are in the DOM; a screenshot is kept under
//!   `target/artifacts/`.
//!
//! The external tools come from Debian's `prometheus` and `chromium` packages (`.ci/run` installs
//! them). Without them a test prints why and passes, unless `PERDURE_TEST_REQUIRE_TOOLS=1` (set by CI),
//! where it fails.

mod common;

use common::cluster::{
    free_port, ready, test_config, three_members, wait_balanced, NodeSpec, Nodes, BASE,
};
use common::KillOnDrop;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PARTITIONS: usize = 8;

/// The path of `tool` on `PATH`; `None` (after printing why) when it is missing and tools are
/// not required; a panic when `PERDURE_TEST_REQUIRE_TOOLS=1`.
fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let required = std::env::var("PERDURE_TEST_REQUIRE_TOOLS").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "`{name}` is not installed and PERDURE_TEST_REQUIRE_TOOLS=1 (apt-get install prometheus chromium)"
        );
        eprintln!("SKIPPED: `{name}` is not installed (apt-get install prometheus chromium)");
    }
    found
}

/// A running 3-node cluster.
struct Cluster {
    /// `http://127.0.0.N:PORT` of each node.
    urls: Vec<String>,
    /// `127.0.0.N:PORT` of each node.
    addrs: Vec<String>,
    _nodes: Nodes,
    dir: tempfile::TempDir,
}

/// Starts three `perdure serve` processes on 127.0.0.1-3 (the sample orchestrations on) and waits
/// until each is ready.
async fn cluster(http: &reqwest::Client) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let members = three_members(dir.path());
    let secret = "an-observability-test-secret";
    for m in &members {
        let mut config = test_config(m, &members, "obs", secret, PARTITIONS);
        config.samples.enabled = true;
        m.write_config(&config).unwrap();
    }
    let nodes = Nodes::start(&members);
    let urls: Vec<String> = members.iter().map(NodeSpec::url).collect();
    for u in &urls {
        assert!(
            ready(u, Duration::from_secs(60)).await,
            "{u} not ready within 60 s"
        );
    }
    // leader balancing done, so it does not move leaders during the test
    wait_balanced(http, &urls[0], PARTITIONS, &[1, 2, 3]).await;
    Cluster {
        addrs: members.iter().map(NodeSpec::http_addr).collect(),
        urls,
        _nodes: nodes,
        dir,
    }
}

/// Signals counters through every node until `stop` is set (at most 1 000 000 requests).
fn load(
    http: &reqwest::Client,
    urls: &[String],
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..8)
        .map(|w| {
            let (http, urls, stop, acked) =
                (http.clone(), urls.to_vec(), stop.clone(), acked.clone());
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) && i < 125_000 {
                    let url = &urls[(w + i as usize) % urls.len()];
                    let r = http
                        .post(format!(
                            "{url}{BASE}/entities/counter/load-{}?op=add",
                            i % 64
                        ))
                        .body("1")
                        .send()
                        .await;
                    if matches!(r, Ok(r) if r.status() == 202) {
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                }
            })
        })
        .collect()
}

/// Starts `n` `HelloSequence` samples through the nodes' HTTP API (Durable Functions' route,
/// `POST .../orchestrators/{name}`); `false` (after printing why) when the API does not serve it.
async fn start_orchestrations(http: &reqwest::Client, urls: &[String], n: usize) -> bool {
    for i in 0..n {
        let url = &urls[i % urls.len()];
        let r = http
            .post(format!("{url}{BASE}/orchestrators/HelloSequence"))
            .header("content-type", "application/json")
            .body("null")
            .send()
            .await
            .unwrap();
        let status = r.status();
        if status != 202 {
            assert!(
                i == 0,
                "start {i} of HelloSequence answered {status}: {}",
                r.text().await.unwrap_or_default()
            );
            eprintln!(
                "the HTTP API does not start orchestrations ({status}): the orchestration panels are checked on empty counters"
            );
            return false;
        }
    }
    true
}

/// Runs a Prometheus HTTP API query; panics on a query error (with the expression).
async fn query(http: &reqwest::Client, prom: &str, expr: &str) -> Vec<Value> {
    let r = http
        .get(format!("{prom}/api/v1/query"))
        .query(&[("query", expr)])
        .send()
        .await
        .unwrap_or_else(|e| panic!("query {expr}: {e}"));
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert!(
        status.is_success() && body["status"] == "success",
        "query failed: {expr}\n{status} {body}"
    );
    body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Polls `expr` until `ok` accepts its result (at most `within`).
async fn eventually(
    http: &reqwest::Client,
    prom: &str,
    expr: &str,
    within: Duration,
    ok: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let t = Instant::now();
    loop {
        let r = query(http, prom, expr).await;
        if ok(&r) {
            return r;
        }
        assert!(
            t.elapsed() < within,
            "{expr} never satisfied the test: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn value(sample: &Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Every `expr` of the dashboard's panels (those in rows, collapsed or not, included).
fn dashboard_queries() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/grafana/perdure.json");
    let d: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut out = Vec::new();
    let mut panels: Vec<&Value> = d["panels"].as_array().expect("panels").iter().collect();
    while let Some(p) = panels.pop() {
        if p["type"] == "row" {
            // a collapsed row holds its panels
            panels.extend(p["panels"].as_array().into_iter().flatten());
            continue;
        }
        for t in p["targets"].as_array().expect("targets") {
            out.push(t["expr"].as_str().expect("expr").to_string());
        }
    }
    assert!(out.len() >= 10, "the dashboard has {} queries", out.len());
    out
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_cluster_and_every_dashboard_query_evaluates() {
    let (Some(promtool), Some(prometheus)) = (tool("promtool"), tool("prometheus")) else {
        return;
    };
    let http = client();
    let c = cluster(&http).await;
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let workers = load(&http, &c.urls, stop.clone(), acked.clone());
    let orchestrations = start_orchestrations(&http, &c.urls, 30).await;

    // 1. our exposition passes promtool's checks, on every node
    for u in &c.urls {
        let text = http
            .get(format!("{u}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for name in [
            "perdure_entity_operations_total",
            "perdure_entity_operation_duration_seconds_bucket",
            "perdure_http_requests_total",
            "perdure_partition_role",
            "perdure_partition_apply_lag_entries",
            "perdure_raft_leader_changes_total",
            "perdure_wal_fsync_duration_seconds_bucket",
            "perdure_wal_written_bytes_total",
            "perdure_snapshot_build_duration_seconds_count",
            "perdure_forwarded_requests_total",
            "perdure_proposed_commands_total",
            "perdure_proposals_total",
            "perdure_actors_active",
            "perdure_inbox_messages",
            "process_resident_memory_bytes",
            "perdure_orchestration_turns_total",
            "perdure_orchestration_activities_total{result=\"completed\"}",
            "perdure_orchestration_executions_total{status=\"continued_as_new\"}",
            "perdure_orchestration_instances{status=\"running\"}",
            "perdure_orchestration_work_items_pending",
            "perdure_orchestration_turn_duration_seconds_bucket{le=\"+Inf\"}",
            "perdure_orchestration_history_events_at_completion_count",
        ] {
            assert!(text.contains(name), "{u}/metrics lacks {name}");
        }
        assert!(!text.contains("load-"), "an entity key leaked into a label");
        let mut check = Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            check
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        let out = check.wait_with_output().unwrap();
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "promtool check metrics on {u}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // 2. a real Prometheus scrapes the three nodes
    let port = free_port("127.0.0.1");
    let prom = format!("http://127.0.0.1:{port}");
    let config = c.dir.path().join("prometheus.yml");
    let targets: Vec<String> = c.addrs.iter().map(|a| format!("\"{a}\"")).collect();
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: perdure\n    \
             metrics_path: /metrics\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        ),
    )
    .unwrap();
    let _prom = KillOnDrop(
        Command::new(&prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                c.dir.path().join("prometheus-data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let t = Instant::now();
    while !matches!(http.get(format!("{prom}/-/ready")).send().await, Ok(r) if r.status() == 200) {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "Prometheus not ready"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let within = Duration::from_secs(90);
    eventually(&http, &prom, "up{job=\"perdure\"}", within, |r| {
        r.len() == 3 && r.iter().all(|s| value(s) == 1.0)
    })
    .await;
    let rate = eventually(
        &http,
        &prom,
        "sum(rate(perdure_entity_operations_total{outcome=\"ok\"}[10s]))",
        within,
        |r| r.len() == 1 && value(&r[0]) > 0.0,
    )
    .await;
    eprintln!(
        "Prometheus sees {:.0} ops/s over the cluster",
        value(&rate[0])
    );
    // every node leads some partitions, all partitions are led exactly once
    eventually(
        &http,
        &prom,
        "sum(perdure_partition_role{role=\"leader\"})",
        within,
        |r| r.len() == 1 && value(&r[0]) == PARTITIONS as f64,
    )
    .await;
    eventually(
        &http,
        &prom,
        "sum(rate(perdure_wal_fsync_duration_seconds_count[10s])) > 0",
        within,
        |r| r.len() == 1,
    )
    .await;
    // wait until the 1m windows of the dashboard hold at least two samples of every node
    eventually(
        &http,
        &prom,
        "count(rate(perdure_entity_operations_total[1m]))",
        within,
        |r| r.len() == 1 && value(&r[0]) > 0.0,
    )
    .await;

    if orchestrations {
        // the samples ran: their turns, activities and ends reached Prometheus
        for expr in [
            "sum(perdure_orchestration_executions_total{status=\"completed\"}) >= 30",
            "sum(perdure_orchestration_activities_total{result=\"completed\"}) >= 90",
            "sum(perdure_orchestration_instances{status=\"completed\"}) >= 30",
            "sum(perdure_orchestration_turn_duration_seconds_count) > 0",
        ] {
            eventually(&http, &prom, expr, within, |r| r.len() == 1).await;
        }
    }

    // 3. every dashboard query evaluates; the throughput ones carry the load
    let mut empty = Vec::new();
    for expr in dashboard_queries() {
        let r = query(&http, &prom, &expr).await;
        if r.is_empty() {
            empty.push(expr);
        }
    }
    eprintln!("dashboard queries without data now (no errors, nothing to show): {empty:#?}");
    for must in [
        "sum(rate(perdure_entity_operations_total{outcome=\"ok\"}[1m]))",
        "up{job=\"perdure\"}",
        "process_resident_memory_bytes{job=\"perdure\"}",
    ] {
        assert!(!empty.iter().any(|e| e == must), "{must} has no data");
    }
    // the orchestration series exist from start (counters at 0, every label value made)
    let missing: Vec<&String> = empty
        .iter()
        .filter(|e| e.contains("perdure_orchestration_"))
        .collect();
    assert!(missing.is_empty(), "no data: {missing:#?}");
    // the stream-ingestion series (`perdure_ingest_*`) are labelled by subscription and exist
    // only once a subscription's consumer ran on the node: this cluster has none, so their
    // queries must evaluate (as every query above) and are expected to be empty
    let ingest: Vec<String> = dashboard_queries()
        .into_iter()
        .filter(|e| e.contains("perdure_ingest_"))
        .collect();
    assert!(
        ingest.len() >= 5,
        "the dashboard's stream ingestion row: {ingest:#?}"
    );

    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert!(acked.load(Ordering::Relaxed) > 0);
}

/// The directory screenshots are kept in: `target/artifacts/` of the workspace.
fn artifacts() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir.canonicalize().unwrap_or(dir)
}

fn chromium(bin: &Path, profile: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1400,1200",
            "--virtual-time-budget=6000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run chromium")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_dashboard_renders_members_partitions_and_an_entity_in_chromium() {
    let Some(bin) = tool("chromium").or_else(|| tool("chromium-browser")) else {
        return;
    };
    let http = client();
    let c = cluster(&http).await;
    let r = http
        .post(format!(
            "{}{BASE}/entities/counter/dashboard-demo?op=add",
            c.urls[1]
        ))
        .body("42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let workers = load(&http, &c.urls, stop.clone(), acked.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;

    let page = format!("{}/#entity=counter/dashboard-demo", c.urls[0]);
    let profile = c.dir.path().join("chromium");
    let bin2 = bin.clone();
    let (profile2, page2) = (profile.clone(), page.clone());
    let dom =
        tokio::task::spawn_blocking(move || chromium(&bin2, &profile2, &["--dump-dom", &page2]))
            .await
            .unwrap();
    let html = String::from_utf8_lossy(&dom.stdout).into_owned();
    assert!(
        dom.status.success(),
        "chromium --dump-dom: {}\n{}",
        dom.status,
        String::from_utf8_lossy(&dom.stderr)
    );
    for n in 1..=3 {
        assert!(
            html.contains(&format!("data-node=\"{n}\"")),
            "member {n} missing from the dashboard:\n{html}"
        );
    }
    for p in 0..PARTITIONS {
        assert!(
            html.contains(&format!("data-partition=\"{p}\"")),
            "partition {p} missing from the dashboard:\n{html}"
        );
    }
    assert!(
        html.contains("<pre id=\"entity-state\">42</pre>"),
        "the entity's state is not shown:\n{html}"
    );
    assert!(
        html.contains("data-key=\"dashboard-demo\""),
        "the entity list lacks the entity:\n{html}"
    );
    assert!(html.contains(">ready<"), "readiness not shown:\n{html}");
    // the orchestration section, from the stats (the instance list needs the instances API)
    assert!(
        html.contains("<td data-status=\"completed\">"),
        "instances by status missing:\n{html}"
    );
    assert!(
        !html.contains("<b id=\"orch-live\">–</b>"),
        "the orchestration counters are not shown:\n{html}"
    );

    let shot = artifacts().join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let arg = format!("--screenshot={}", shot.display());
    let out = tokio::task::spawn_blocking(move || chromium(&bin, &profile, &[&arg, &page]))
        .await
        .unwrap();
    assert!(
        out.status.success() && shot.is_file(),
        "chromium --screenshot: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("dashboard screenshot: {}", shot.display());

    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_dashboard_works_with_a_token_in_chromium() {
    let Some(bin) = tool("chromium").or_else(|| tool("chromium-browser")) else {
        return;
    };
    let (read, write) = ("dashboard-read-token-0123", "app-write-token-012345678");
    let dir = tempfile::tempdir().unwrap();
    let spec = NodeSpec::new(1, 0, dir.path()).unwrap();
    let mut config = spec.config(&[]);
    config.partitions = 4;
    let token = |name: &str, token: &str, role| perdure_types::config::TokenConfig {
        name: name.into(),
        token: token.into(),
        role,
    };
    config.auth.tokens = vec![
        token("dashboard", read, perdure_types::config::Role::Read),
        token("app", write, perdure_types::config::Role::Write),
    ];
    spec.write_config(&config).unwrap();
    let _nodes = Nodes::start(std::slice::from_ref(&spec));
    assert!(ready(&spec.url(), Duration::from_secs(30)).await);
    let http = client();
    let r = http
        .post(format!(
            "{}{BASE}/entities/counter/tokened?op=add",
            spec.url()
        ))
        .bearer_auth(write)
        .body("7")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // the token given once in the link, kept in sessionStorage, sent as Bearer
    let page = format!("{}/?token={read}#entity=counter/tokened", spec.url());
    let profile = dir.path().join("chromium");
    let dom = tokio::task::spawn_blocking(move || chromium(&bin, &profile, &["--dump-dom", &page]))
        .await
        .unwrap();
    let html = String::from_utf8_lossy(&dom.stdout).into_owned();
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    assert!(
        html.contains("<pre id=\"entity-state\">7</pre>"),
        "the entity's state is not shown with a read token:\n{html}"
    );
    assert!(
        html.contains("data-node=\"1\""),
        "the member is missing:\n{html}"
    );
    assert!(html.contains(">ready<"), "readiness not shown:\n{html}");
}
