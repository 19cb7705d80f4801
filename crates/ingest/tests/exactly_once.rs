//! Stream ingestion on one node in process, from in-memory sources: every record applied once
//! and in order per entity, bad records dead-lettered with their reason and the position still
//! advancing, pause/resume and restarts of consumers without duplicates, and the target side
//! recognizing records applied before.

use perdure_cluster::Partitions;
use perdure_ingest::source::memory::{MemoryConnector, MemorySource};
use perdure_ingest::{Ingest, IngestMetrics, IngestWorkload};
use perdure_runtime::host::Workload;
use perdure_runtime::{IngestRecord, RecordOutcome, Registries, Registry, Runtime};
use perdure_types::config::{IngestConfig, NodeConfig};
use perdure_types::subscription::SubscriptionSpec;
use perdure_types::EntityId;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Node {
    runtime: Runtime,
    ingest: Arc<Ingest>,
    _dir: tempfile::TempDir,
}

async fn node(connector: Arc<MemoryConnector>, config: IngestConfig) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let cfg = NodeConfig {
        data_dir: dir.path().join("data"),
        partitions: 4,
        ..Default::default()
    };
    let partitions = Arc::new(Partitions::start(&cfg).await.unwrap());
    partitions
        .wait_ready(Duration::from_secs(10))
        .await
        .unwrap();
    let workload = IngestWorkload::new(connector, config, IngestMetrics::unregistered().unwrap());
    let registries = Registries {
        entities: Registry::builtin(),
        ..Default::default()
    };
    let runtime = Runtime::start_with_workloads(
        partitions,
        registries,
        cfg.entities.clone(),
        cfg.orchestrations.clone(),
        None,
        vec![workload.clone() as Arc<dyn Workload>],
    )
    .await
    .unwrap();
    let ingest = Ingest::new(
        runtime.host().router().clone(),
        runtime.entities().clone(),
        workload,
    )
    .unwrap();
    // ready: a counter answers
    let t = Instant::now();
    let warm = EntityId::new("counter", "__warmup").unwrap();
    while runtime
        .entities()
        .call(warm.clone(), "get", None)
        .await
        .is_err()
    {
        assert!(t.elapsed() < Duration::from_secs(10), "never ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Node {
        runtime,
        ingest,
        _dir: dir,
    }
}

fn spec(json: Value) -> SubscriptionSpec {
    serde_json::from_value(json).unwrap()
}

/// Waits until subscription `name` has applied or dead-lettered `total` records with no lag.
async fn drained(ingest: &Ingest, name: &str, total: u64) -> perdure_ingest::SubscriptionStatus {
    let t = Instant::now();
    loop {
        let s = ingest.status(name).await.unwrap();
        if s.applied + s.dead_lettered >= total && s.lag == 0 {
            return s;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "not drained: {s:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn counter(rt: &Runtime, key: &str) -> i64 {
    let e = EntityId::new("counter", key).unwrap();
    rt.entities()
        .get(&e)
        .await
        .unwrap()
        .and_then(|v| v.as_i64())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_is_applied_once_and_bad_ones_are_dead_lettered() {
    let connector = Arc::new(MemoryConnector::default());
    let source = MemorySource::new(3);
    connector.insert("clicks", source.clone());
    let n = node(
        connector,
        IngestConfig {
            fetch_max_records: 100,
            max_in_flight_records: 300,
            ..Default::default()
        },
    )
    .await;
    let mut expected = std::collections::HashMap::<String, i64>::new();
    let mut total = 0u64;
    for i in 0..3000u64 {
        let user = format!("u{}", i % 37);
        let amount = (i % 5) as i64;
        *expected.entry(user.clone()).or_default() += amount;
        source.append(
            (i % 3) as u32,
            None,
            json!({"user": user, "amount": amount})
                .to_string()
                .as_bytes(),
        );
        total += 1;
    }
    // bad records: not JSON, a key that is an object, a key no entity id takes, no input
    let bad: Vec<&[u8]> = vec![
        b"not json",
        br#"{"user": {"a": 1}, "amount": 1}"#,
        b"{\"user\": \"a\\u0000b\", \"amount\": 1}",
        br#"{"user": "u1"}"#,
        br#"{"user": "u1", "amount": "seven"}"#,
    ];
    for b in &bad {
        source.append(1, None, b);
        total += 1;
    }
    let (sub, created) = n
        .ingest
        .put(
            "clicks",
            spec(json!({"source": {"nats": {"url": "nats://127.0.0.1:1", "stream": "clicks"}},
                "mapping": {"entity": "counter", "key": "/user", "operation": "add", "input": "/amount"}})),
        )
        .await
        .unwrap();
    assert!(created);
    assert_eq!(sub.generation, 0);
    // while it drains: pause and resume (consumers stop and start again from the checkpoint)
    tokio::time::sleep(Duration::from_millis(30)).await;
    n.ingest.pause("clicks", true).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    n.ingest.pause("clicks", false).await.unwrap();
    let s = drained(&n.ingest, "clicks", total).await;
    assert_eq!(s.dead_lettered, bad.len() as u64, "{s:#?}");
    assert_eq!(s.applied, 3000, "{s:#?}");
    assert_eq!(s.partitions.len(), 3);
    for (user, want) in &expected {
        assert_eq!(counter(&n.runtime, user).await, *want, "counter {user}");
    }
    let dead = n.ingest.dead_letters("clicks", 100).await.unwrap();
    assert_eq!(dead.len(), bad.len());
    let reasons: Vec<&str> = dead.iter().map(|d| d.reason.as_str()).collect();
    assert!(reasons[0].contains("not JSON"), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("an object")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("not a valid entity key")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("nothing at \"/amount\"")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("amount")), "{reasons:?}");
    // more records after a while: applied too, once
    for i in 0..100u64 {
        source.append(
            (i % 3) as u32,
            None,
            json!({"user": "late", "amount": 1}).to_string().as_bytes(),
        );
    }
    drained(&n.ingest, "clicks", total + 100).await;
    assert_eq!(counter(&n.runtime, "late").await, 100);
    n.ingest.delete("clicks").await.unwrap();
    assert!(n.ingest.status("clicks").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_get_each_position_once_in_order() {
    let connector = Arc::new(MemoryConnector::default());
    let source = MemorySource::new(2);
    connector.insert("positions", source.clone());
    let n = node(
        connector,
        IngestConfig {
            fetch_max_records: 7,
            ..Default::default()
        },
    )
    .await;
    for i in 0..400u64 {
        let key = format!("l{}", i % 4);
        source.append((i % 2) as u32, Some(key.as_bytes()), b"{}");
    }
    n.ingest
        .put(
            "positions",
            spec(json!({"source": {"kafka": {"brokers": ["127.0.0.1:1"], "topic": "t"}},
                "mapping": {"entity": "list", "key": "$key", "operation": "append", "input": "$position"}})),
        )
        .await
        .unwrap();
    drained(&n.ingest, "positions", 400).await;
    // records i (partition i%2, position i/2+1) with key l{i%4}: l0 and l2 get partition 0's
    // records, l1 and l3 partition 1's; each list holds its positions once, increasing
    for l in 0..4 {
        let e = EntityId::new("list", &format!("l{l}")).unwrap();
        let v = n.runtime.entities().get(&e).await.unwrap().unwrap();
        let got: Vec<u64> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect();
        assert_eq!(got.len(), 100, "l{l}: {got:?}");
        assert!(
            got.windows(2).all(|w| w[0] < w[1]),
            "l{l} in order once: {got:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_sent_twice_are_applied_once() {
    let n = node(
        Arc::new(MemoryConnector::default()),
        IngestConfig::default(),
    )
    .await;
    let e = EntityId::new("counter", "twice").unwrap();
    let p = n.runtime.partitions().partition_of(&e);
    let recs = |from: u64, to: u64| -> Vec<IngestRecord> {
        (from..=to)
            .map(|position| IngestRecord {
                entity: e.clone(),
                operation: "add".into(),
                input: Some(json!(1)),
                position,
            })
            .collect()
    };
    let first = n
        .runtime
        .entities()
        .ingest(p, "s#0:0", recs(1, 10))
        .await
        .unwrap();
    assert!(first.iter().all(|o| *o == RecordOutcome::Applied));
    // a deposed consumer's successor sends an overlapping range
    let again = n
        .runtime
        .entities()
        .ingest(p, "s#0:0", recs(5, 15))
        .await
        .unwrap();
    assert_eq!(
        again
            .iter()
            .filter(|o| **o == RecordOutcome::Duplicate)
            .count(),
        6
    );
    assert_eq!(
        again
            .iter()
            .filter(|o| **o == RecordOutcome::Applied)
            .count(),
        5
    );
    // another source partition has its own mark
    let other = n
        .runtime
        .entities()
        .ingest(p, "s#0:1", recs(1, 2))
        .await
        .unwrap();
    assert!(other.iter().all(|o| *o == RecordOutcome::Applied));
    assert_eq!(counter(&n.runtime, "twice").await, 17);
    // a failing operation counts, and moves the mark
    let bad = IngestRecord {
        entity: e.clone(),
        operation: "add".into(),
        input: Some(json!(i64::MAX)),
        position: 16,
    };
    let r = n
        .runtime
        .entities()
        .ingest(p, "s#0:0", vec![bad.clone()])
        .await
        .unwrap();
    assert!(matches!(r[0], RecordOutcome::Failed(_)), "{r:?}");
    let r = n
        .runtime
        .entities()
        .ingest(p, "s#0:0", vec![bad])
        .await
        .unwrap();
    assert_eq!(r[0], RecordOutcome::Duplicate);
    assert_eq!(counter(&n.runtime, "twice").await, 17);
    // after a restart of the actors (passivation or a new leader), the marks are read back
    n.runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_changed_while_consuming_takes_over_at_a_checkpoint() {
    let connector = Arc::new(MemoryConnector::default());
    let source = MemorySource::new(2);
    connector.insert("moving", source.clone());
    let n = node(
        connector,
        IngestConfig {
            fetch_max_records: 50,
            max_in_flight_records: 200,
            ..Default::default()
        },
    )
    .await;
    let total = 4000u64;
    for i in 0..total {
        source.append(
            (i % 2) as u32,
            None,
            json!({"a": format!("a{}", i % 10), "b": format!("b{}", i % 10)})
                .to_string()
                .as_bytes(),
        );
    }
    let by = |key: &str| {
        spec(
            json!({"source": {"nats": {"url": "nats://127.0.0.1:1", "stream": "s"}},
            "mapping": {"entity": "counter", "key": key, "operation": "add"}}),
        )
    };
    n.ingest.put("moving", by("/a")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (s, created) = n.ingest.put("moving", by("/b")).await.unwrap();
    assert!(!created);
    assert_eq!(s.generation, 0, "the same source: positions kept");
    drained(&n.ingest, "moving", total).await;
    let mut sum = 0;
    for k in 0..10 {
        sum += counter(&n.runtime, &format!("a{k}")).await;
        sum += counter(&n.runtime, &format!("b{k}")).await;
    }
    // every record applied once, under the old mapping or the new one, never both
    assert_eq!(sum, total as i64);
    assert!(
        counter(&n.runtime, "b0").await > 0,
        "the new mapping took over"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_is_down_holds_up_no_other_subscription() {
    let connector = Arc::new(MemoryConnector::default());
    let down = MemorySource::new(4);
    down.set_down(true);
    connector.insert("down", down.clone());
    let up = MemorySource::new(4);
    connector.insert("up", up.clone());
    for i in 0..400u64 {
        up.append(
            (i % 4) as u32,
            None,
            json!({"user": "x"}).to_string().as_bytes(),
        );
    }
    let n = node(connector, IngestConfig::default()).await;
    let def = |stream: &str| {
        spec(
            json!({"source": {"nats": {"url": "nats://127.0.0.1:1", "stream": stream}},
            "mapping": {"entity": "counter", "key": "/user", "operation": "add"}}),
        )
    };
    n.ingest.put("down", def("d")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    n.ingest.put("up", def("u")).await.unwrap();
    drained(&n.ingest, "up", 400).await;
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(counter(&n.runtime, "x").await, 400);
    // the down broker's error shows (its connection attempt gives up after a second)
    let t = Instant::now();
    loop {
        let s = n.ingest.status("down").await.unwrap();
        if s.error.as_deref().is_some_and(|e| e.contains("down")) {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{s:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // back up: it drains too
    down.append(0, None, json!({"user": "y"}).to_string().as_bytes());
    down.set_down(false);
    drained(&n.ingest, "down", 1).await;
    assert_eq!(counter(&n.runtime, "y").await, 1);
}
