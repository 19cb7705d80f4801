//! Orchestrations with the real binary: the samples over HTTP (start → 202 → poll `Location`
//! until 200), instances in flight through `kill -9` and restart of a single node, and through
//! the loss of the node leading most partitions of a 3-node cluster. Every started instance
//! completes once with the right output, every activity's result is in its history exactly once,
//! and no instance stays Running.

mod common;

use common::cluster::{self, http_client, Nodes};
use perdure_harness::{Node, NodeSpec};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const BASE: &str = common::BASE;

/// A single node with the samples on.
fn single_node(dir: &std::path::Path) -> Node {
    let spec = NodeSpec::new(1, 0, dir).unwrap();
    let mut config = spec.config(&[]);
    config.partitions = 4;
    config.samples.enabled = true;
    spec.write_config(&config).unwrap();
    let mut node = Node::new(spec, cluster::test_bin());
    node.start(&Default::default()).unwrap();
    node.wait_ready(Duration::from_secs(30)).unwrap();
    node
}

async fn start(
    http: &reqwest::Client,
    url: &str,
    name: &str,
    id: &str,
    input: Value,
) -> reqwest::Result<reqwest::Response> {
    http.post(format!("{url}{BASE}/orchestrators/{name}/{id}"))
        .json(&input)
        .send()
        .await
}

/// Waits (long polls, retrying through restarts and leader changes) until `id` finishes;
/// returns its status with history and outputs.
async fn finished(http: &reqwest::Client, urls: &[String], id: &str) -> Value {
    let t = Instant::now();
    let mut i = 0;
    loop {
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "{id} did not finish in 90 s"
        );
        let url = &urls[i % urls.len()];
        i += 1;
        let r = http
            .get(format!("{url}{BASE}/instances/{id}/wait?timeoutMs=3000"))
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        match r {
            Ok(r) if r.status() == 200 => {
                let s = http
                    .get(format!(
                        "{url}{BASE}/instances/{id}?showHistory=true&showHistoryOutput=true"
                    ))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(s.status(), 200);
                return s.json().await.unwrap();
            }
            Ok(r) if r.status() == 202 => {}
            Ok(r) if r.status() == 404 => panic!("{id}: unknown"),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Each scheduled activity's result appears exactly once, and nothing else completed.
fn assert_each_result_once(status: &Value) {
    let events = status["historyEvents"].as_array().expect("history shown");
    let mut scheduled = HashMap::new();
    let mut results: HashMap<i64, usize> = HashMap::new();
    for e in events {
        match e["EventType"].as_str() {
            Some("TaskScheduled") => {
                scheduled.insert(e["EventId"].as_i64().unwrap(), ());
            }
            Some("TaskCompleted") | Some("TaskFailed") => {
                *results
                    .entry(e["TaskScheduledId"].as_i64().unwrap())
                    .or_default() += 1;
            }
            _ => {}
        }
    }
    assert_eq!(scheduled.len(), results.len(), "{status}");
    for (task, n) in results {
        assert!(
            scheduled.contains_key(&task),
            "result for unscheduled task {task}: {status}"
        );
        assert_eq!(n, 1, "task {task} recorded {n} times: {status}");
    }
}

fn hello5() -> Value {
    json!([
        "Hello Tokyo!",
        "Hello Seattle!",
        "Hello London!",
        "Hello Paris!",
        "Hello Cairo!"
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_six_patterns_run_against_the_real_binary() {
    let dir = tempfile::tempdir().unwrap();
    let node = single_node(dir.path());
    let url = node.spec.url();
    let http = http_client();

    // async HTTP API: 202 with Location, polled until 200
    let r = start(&http, &url, "HelloSequence", "hello-1", Value::Null)
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["statusQueryGetUri"], json!(location));
    let t = Instant::now();
    let status: Value = loop {
        let r = http.get(&location).send().await.unwrap();
        if r.status() == 200 {
            break r.json().await.unwrap();
        }
        assert_eq!(r.status(), 202);
        assert!(t.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status["runtimeStatus"], "Completed");
    assert_eq!(
        status["output"],
        json!(["Hello Tokyo!", "Hello Seattle!", "Hello London!"])
    );

    start(&http, &url, "FanOutFanIn", "fan", json!(300))
        .await
        .unwrap();
    let s = finished(&http, std::slice::from_ref(&url), "fan").await;
    assert_eq!(s["output"], json!(300 * 299 / 2));
    assert_each_result_once(&s);

    start(
        &http,
        &url,
        "CounterAggregation",
        "agg",
        json!({"key": "e2e", "adds": 20}),
    )
    .await
    .unwrap();
    assert_eq!(
        finished(&http, std::slice::from_ref(&url), "agg").await["output"],
        json!(20)
    );

    start(
        &http,
        &url,
        "Approval",
        "appr",
        json!({"timeout_ms": 60000}),
    )
    .await
    .unwrap();
    let r = http
        .post(format!("{url}{BASE}/instances/appr/raiseEvent/Approval"))
        .json(&json!(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(
        finished(&http, std::slice::from_ref(&url), "appr").await["output"],
        json!("rejected")
    );
    start(&http, &url, "Approval", "esc", json!({"timeout_ms": 200}))
        .await
        .unwrap();
    assert_eq!(
        finished(&http, std::slice::from_ref(&url), "esc").await["output"],
        json!("escalated")
    );

    start(
        &http,
        &url,
        "Monitor",
        "mon",
        json!({"counter": "mon", "target": 2, "interval_ms": 50, "expiry_ms": 60000}),
    )
    .await
    .unwrap();
    for _ in 0..2 {
        http.post(format!("{url}{BASE}/entities/counter/mon?op=add"))
            .json(&json!(1))
            .send()
            .await
            .unwrap();
    }
    assert_eq!(
        finished(&http, std::slice::from_ref(&url), "mon").await["output"],
        json!("reached")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_in_flight_survive_kill_9_and_complete_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = single_node(dir.path());
    let url = node.spec.url();
    let http = http_client();
    let mut started: Vec<(String, &str)> = Vec::new();
    for round in 0..3 {
        // start many, and kill the node while they run
        let mut pending = Vec::new();
        for i in 0..80 {
            let (name, input) = if i % 8 == 0 {
                ("FanOutFanIn", json!(40))
            } else {
                ("HelloSequence5", Value::Null)
            };
            let id = format!("r{round}-{i}");
            let http = http.clone();
            let url = url.clone();
            pending.push(tokio::spawn(async move {
                let ok = matches!(start(&http, &url, name, &id, input).await, Ok(r) if r.status() == 202);
                (id, name, ok)
            }));
        }
        tokio::time::sleep(Duration::from_millis(30 + 40 * round)).await;
        node.kill9().unwrap();
        for p in pending {
            let (id, name, ok) = p.await.unwrap();
            if ok {
                started.push((id, name));
            }
        }
        node.restart().unwrap();
        node.wait_ready(Duration::from_secs(30)).unwrap();
    }
    assert!(!started.is_empty(), "no start was acknowledged");
    eprintln!("kill -9 rounds: {} starts acknowledged", started.len());
    for (id, name) in &started {
        let s = finished(&http, std::slice::from_ref(&url), id).await;
        assert_eq!(s["runtimeStatus"], "Completed", "{id}: {s}");
        let want = if *name == "FanOutFanIn" {
            json!(40 * 39 / 2)
        } else {
            hello5()
        };
        assert_eq!(s["output"], want, "{id}");
        assert_each_result_once(&s);
    }
    let running = http
        .get(format!(
            "{url}{BASE}/instances?runtimeStatus=Running,Pending&top=1000"
        ))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(running.as_array().map(Vec::len), Some(0), "{running}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_complete_when_the_node_leading_most_partitions_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let specs = cluster::three_members(dir.path());
    for m in &specs {
        let mut c = cluster::test_config(
            m,
            &specs,
            "orch-failover",
            "orch-failover-secret-0123456789abcdef",
            6,
        );
        c.samples.enabled = true;
        m.write_config(&c).unwrap();
    }
    let mut nodes = Nodes::start(&specs);
    let urls: Vec<String> = specs.iter().map(|s| s.url()).collect();
    let http = http_client();
    for n in nodes.0.iter_mut() {
        n.wait_ready(Duration::from_secs(60)).unwrap();
    }
    let leaders = loop {
        if let Some(l) = cluster::leaders(&http, &urls[0]).await {
            if l.values().sum::<usize>() == 6 {
                break l;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (&victim, _) = leaders.iter().max_by_key(|(_, n)| **n).unwrap();
    let victim = victim as usize - 1;
    let survivors: Vec<String> = (0..3)
        .filter(|i| *i != victim)
        .map(|i| urls[i].clone())
        .collect();

    // starts keep coming (through the survivors) while the node leading most partitions dies
    // once 25 were acknowledged: instances in every stage are in flight at the kill
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut pending = Vec::new();
    for w in 0..8 {
        let (http, acked, url) = (http.clone(), acked.clone(), survivors[w % 2].clone());
        pending.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for i in 0..10 {
                let n = w * 10 + i;
                let (name, input) = if n % 6 == 0 {
                    ("FanOutFanIn", json!(30))
                } else {
                    ("HelloSequence5", Value::Null)
                };
                let id = format!("f-{n}");
                if matches!(start(&http, &url, name, &id, input).await, Ok(r) if r.status() == 202)
                {
                    acked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    mine.push((id, name));
                }
            }
            mine
        }));
    }
    let t = Instant::now();
    while acked.load(std::sync::atomic::Ordering::SeqCst) < 25
        && t.elapsed() < Duration::from_secs(20)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    nodes.kill(victim);
    let mut started = Vec::new();
    for p in pending {
        started.extend(p.await.unwrap());
    }
    assert!(!started.is_empty());
    eprintln!(
        "node {} (leading {} of 6 partitions) killed; {} starts acknowledged",
        victim + 1,
        leaders[&(victim as u64 + 1)],
        started.len()
    );
    for (id, name) in &started {
        let s = finished(&http, &survivors, id).await;
        assert_eq!(s["runtimeStatus"], "Completed", "{id}: {s}");
        let want = if *name == "FanOutFanIn" {
            json!(30 * 29 / 2)
        } else {
            hello5()
        };
        assert_eq!(s["output"], want, "{id}");
        assert_each_result_once(&s);
    }
}
