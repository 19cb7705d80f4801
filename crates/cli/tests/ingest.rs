//! Stream ingestion end to end: the real `perdure` binary consuming a real NATS JetStream
//! server (Debian's `nats-server`) and a Kafka-protocol broker (`perdure-kafka-mock`).
//!
//! - the crash test: one node killed with -9 and restarted 20 times while a stream drains and
//!   a producer keeps writing: every counter equals what was produced for its key, and list
//!   entities that append each record's position hold each position once, in order;
//! - Kafka, 8 partitions keyed by the record key (`$key`), records without a key dead-lettered;
//! - faults of the source: the broker stopped and started again (an error shown, then
//!   nothing lost), the stream deleted and created again (the consumer stops, saying why).
//!
//! Without the brokers the tests print a skip message and pass, unless
//! `PERDURE_TEST_REQUIRE_TOOLS=1` (CI).

mod common;

use common::cluster::{http_client, member, start, test_config};
use common::BASE;
use perdure_harness::brokers::{self, KafkaMock, KafkaRecord, NatsServer};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

async fn put(http: &reqwest::Client, url: &str, name: &str, spec: Value) {
    let r = http
        .put(format!("{url}{BASE}/subscriptions/{name}"))
        .json(&spec)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    assert!(
        status == 201 || status == 200,
        "{status}: {}",
        r.text().await.unwrap()
    );
}

async fn status(http: &reqwest::Client, url: &str, name: &str) -> Option<Value> {
    let r = http
        .get(format!("{url}{BASE}/subscriptions/{name}"))
        .send()
        .await
        .ok()?;
    r.json().await.ok()
}

/// Waits until `name` applied and dead-lettered `total` records with no lag.
async fn drained(
    http: &reqwest::Client,
    url: &str,
    name: &str,
    total: u64,
    within: Duration,
) -> Value {
    let t = Instant::now();
    let mut last = Value::Null;
    while t.elapsed() < within {
        if let Some(s) = status(http, url, name).await {
            let done =
                s["applied"].as_u64().unwrap_or(0) + s["dead_lettered"].as_u64().unwrap_or(0);
            if done >= total && s["lag"].as_u64() == Some(0) {
                return s;
            }
            last = s;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{name} did not drain {total} records in {within:?}: {last:#}");
}

async fn entity(http: &reqwest::Client, url: &str, name: &str, key: &str) -> Value {
    let r = http
        .get(format!("{url}{BASE}/entities/{name}/{key}"))
        .send()
        .await
        .unwrap();
    if r.status().as_u16() == 404 {
        return Value::Null;
    }
    r.json().await.unwrap()
}

/// A single node of 4 partitions in `dir`, ready; and its URL.
fn one_node(dir: &std::path::Path, cluster: &str) -> (perdure_harness::Node, String) {
    let m = member(1, dir);
    m.write_config(&test_config(&m, &[], cluster, "", 4))
        .unwrap();
    let mut node = start(&m);
    node.wait_ready(Duration::from_secs(30)).unwrap();
    (node, m.url())
}

fn user(i: u64) -> String {
    format!("u{}", i % 50)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_20_times_while_a_stream_drains_applies_every_record_once() {
    let Some(bin) = brokers::nats_server_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start_with(&bin, &dir.path().join("nats")).unwrap();
    let url_nats = nats.url();
    let (mut node, url) = one_node(dir.path(), "crash");
    let http = http_client();
    // the stream exists before the subscriptions
    brokers::create_nats_stream(&url_nats, "events", &["events.>"])
        .await
        .unwrap();
    let source = json!({"nats": {"url": url_nats, "stream": "events", "subject": "events.>"}});
    put(
        &http,
        &url,
        "counts",
        json!({"source": source,
        "mapping": {"entity": "counter", "key": "/user", "operation": "add", "input": "/amount"}}),
    )
    .await;
    put(&http, &url, "positions", json!({"source": source,
        "mapping": {"entity": "list", "key": "/user", "operation": "append", "input": "$position"}})).await;
    // a producer writes all along: 30 000 records, in rounds
    let total: u64 = 30_000;
    let producer = {
        let url_nats = url_nats.clone();
        tokio::spawn(async move {
            let mut i = 0;
            while i < total {
                let values: Vec<Vec<u8>> = (i..(i + 1000).min(total))
                    .map(|j| {
                        json!({"user": user(j), "amount": 1 + j % 3})
                            .to_string()
                            .into_bytes()
                    })
                    .collect();
                i += values.len() as u64;
                brokers::produce_nats(&url_nats, "events", "events.click", values)
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        })
    };
    let mut expected: HashMap<String, i64> = HashMap::new();
    for j in 0..total {
        *expected.entry(user(j)).or_default() += (1 + j % 3) as i64;
    }
    let mut seen_progress = Vec::new();
    for round in 0..20u64 {
        // let it consume for a while, at a different point of a batch each round
        tokio::time::sleep(Duration::from_millis(150 + (round * 37) % 400)).await;
        node.kill9().unwrap();
        node.restart().unwrap();
        node.wait_ready(Duration::from_secs(30)).unwrap();
        if let Some(s) = status(&http, &url, "counts").await {
            seen_progress.push(s["applied"].as_u64().unwrap_or(0));
        }
    }
    producer.await.unwrap();
    let s = drained(&http, &url, "counts", total, Duration::from_secs(180)).await;
    assert_eq!(s["dead_lettered"], 0, "{s:#}");
    drained(&http, &url, "positions", total, Duration::from_secs(180)).await;
    // the kills happened while records were being applied
    assert!(
        seen_progress.iter().any(|&a| a > 0 && a < total),
        "no kill fell while the stream drained: {seen_progress:?}"
    );
    for (k, want) in &expected {
        let got = entity(&http, &url, "counter", k).await;
        assert_eq!(got.as_i64(), Some(*want), "counter {k}");
    }
    let mut all: Vec<u64> = Vec::new();
    for u in 0..50u64 {
        let k = user(u);
        let got = entity(&http, &url, "list", &k).await;
        let positions: Vec<u64> = got
            .as_array()
            .unwrap_or_else(|| panic!("list {k}: {got}"))
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "list {k}: each position once, in order"
        );
        all.extend(positions);
    }
    all.sort_unstable();
    assert_eq!(
        all,
        (1..=total).collect::<Vec<_>>(),
        "every position exactly once"
    );
    drop(node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_partitions_keyed_by_the_record_key() {
    let Some(bin) = brokers::kafka_mock_or_skip() else {
        return;
    };
    let kafka = KafkaMock::start_with(&bin, &[("clicks", 8)]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (node, url) = one_node(dir.path(), "kafka");
    let http = http_client();
    let mut expected: HashMap<String, i64> = HashMap::new();
    let per_partition = 2_000u64;
    for p in 0..8u32 {
        let records: Vec<KafkaRecord> = (0..per_partition)
            .map(|i| {
                let key = format!("k{}", (i * 7 + u64::from(p)) % 100);
                *expected.entry(key.clone()).or_default() += 2;
                KafkaRecord {
                    key: Some(key.into_bytes()),
                    headers: Vec::new(),
                    value: b"2".to_vec(),
                }
            })
            .collect();
        brokers::produce_kafka(kafka.bootstrap(), "clicks", p, records)
            .await
            .unwrap();
    }
    // records without a key cannot be mapped: dead-lettered, the position moves on
    let keyless = vec![
        KafkaRecord {
            key: None,
            headers: Vec::new(),
            value: b"2".to_vec()
        };
        3
    ];
    brokers::produce_kafka(kafka.bootstrap(), "clicks", 5, keyless)
        .await
        .unwrap();
    put(
        &http,
        &url,
        "clicks",
        json!({
        "source": {"kafka": {"brokers": [kafka.bootstrap()], "topic": "clicks"}},
        "mapping": {"entity": "counter", "key": "$key", "operation": "add", "input": "$value"}}),
    )
    .await;
    let s = drained(
        &http,
        &url,
        "clicks",
        8 * per_partition + 3,
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(s["dead_lettered"], 3, "{s:#}");
    assert_eq!(s["partitions"].as_array().unwrap().len(), 8, "{s:#}");
    for (k, want) in &expected {
        assert_eq!(
            entity(&http, &url, "counter", k).await.as_i64(),
            Some(*want),
            "counter {k}"
        );
    }
    let dead: Value = http
        .get(format!("{url}{BASE}/subscriptions/clicks/dead-letters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let dead = dead["dead_letters"].as_array().unwrap().clone();
    assert_eq!(dead.len(), 3, "{dead:?}");
    assert!(
        dead.iter()
            .all(|d| d["reason"].as_str().unwrap().contains("no key")),
        "{dead:?}"
    );
    // the consumers show in /cluster
    let cluster: Value = http
        .get(format!("{url}/cluster"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        cluster["consumers"].as_array().map(Vec::len),
        Some(8),
        "{cluster:#}"
    );
    // the metrics count them
    let metrics = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            r#"perdure_ingest_records_total{result="applied",subscription="clicks"} 16000"#
        ) || metrics.contains(
            r#"perdure_ingest_records_total{subscription="clicks",result="applied"} 16000"#
        ),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("perdure_ingest"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    drop(node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_stopped_or_a_stream_recreated_is_reported_and_nothing_is_lost() {
    let Some(bin) = brokers::nats_server_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut nats = NatsServer::start_with(&bin, &dir.path().join("nats")).unwrap();
    let url_nats = nats.url();
    let (node, url) = one_node(dir.path(), "faults");
    let http = http_client();
    let values = |from: u64, n: u64| -> Vec<Vec<u8>> {
        (from..from + n)
            .map(|_| br#"{"user": "f", "amount": 1}"#.to_vec())
            .collect()
    };
    brokers::produce_nats(&url_nats, "ev", "ev.a", values(0, 500))
        .await
        .unwrap();
    let def = json!({
        "source": {"nats": {"url": url_nats, "stream": "ev"}},
        "mapping": {"entity": "counter", "key": "/user", "operation": "add", "input": "/amount"}});
    put(&http, &url, "f", def.clone()).await;
    drained(&http, &url, "f", 500, Duration::from_secs(60)).await;
    // the broker goes away: the error shows, the node serves on
    nats.stop();
    let t = Instant::now();
    loop {
        let s = status(&http, &url, "f").await.unwrap();
        if s["error"].is_string() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no error shown: {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        entity(&http, &url, "counter", "f").await.as_i64(),
        Some(500)
    );
    // back (same data): what is written now is applied, once
    nats.restart().unwrap();
    brokers::produce_nats(&url_nats, "ev", "ev.a", values(0, 300))
        .await
        .unwrap();
    drained(&http, &url, "f", 800, Duration::from_secs(60)).await;
    assert_eq!(
        entity(&http, &url, "counter", "f").await.as_i64(),
        Some(800)
    );
    // the stream deleted and created again: its positions start over below the checkpoint;
    // the consumer stops and says why instead of skipping or re-reading
    brokers::delete_nats_stream(&url_nats, "ev").await.unwrap();
    brokers::produce_nats(&url_nats, "ev", "ev.a", values(0, 10))
        .await
        .unwrap();
    let t = Instant::now();
    loop {
        let s = status(&http, &url, "f").await.unwrap();
        let stopped = s["partitions"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["state"] == "stopped"));
        let said = s["error"].as_str().unwrap_or_default().to_string();
        if stopped && (said.contains("created again") || said.contains("recreated")) {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "not stopped: {s:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        entity(&http, &url, "counter", "f").await.as_i64(),
        Some(800)
    );
    // recreating the subscription reads the new stream from its start
    http.delete(format!("{url}{BASE}/subscriptions/f"))
        .send()
        .await
        .unwrap();
    put(&http, &url, "f", def.clone()).await;
    drained(&http, &url, "f", 10, Duration::from_secs(60)).await;
    assert_eq!(
        entity(&http, &url, "counter", "f").await.as_i64(),
        Some(810)
    );
    let metrics = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("perdure_ingest_source_errors_total"),
        "no source errors counted"
    );
    drop(node);
}
