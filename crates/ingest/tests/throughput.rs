//! How fast one node in process applies records from an in-memory source (no broker): the
//! ceiling of the consumer and entity path. Ignored by default; run in release:
//! `cargo test --release -p perdure-ingest --test throughput -- --ignored --nocapture`.

use perdure_cluster::Partitions;
use perdure_ingest::source::memory::{MemoryConnector, MemorySource};
use perdure_ingest::{Ingest, IngestMetrics, IngestWorkload};
use perdure_runtime::host::Workload;
use perdure_runtime::{Registries, Registry, Runtime};
use perdure_types::config::{IngestConfig, NodeConfig};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement: run in release with --ignored --nocapture"]
async fn records_per_second_from_memory() {
    let records: u64 = std::env::var("RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400_000);
    let keys: u64 = 10_000;
    let connector = Arc::new(MemoryConnector::default());
    let source = MemorySource::new(8);
    for i in 0..records {
        let user = format!("u{}", (i * 7919) % keys);
        source.append(
            (i % 8) as u32,
            None,
            json!({"user": user}).to_string().as_bytes(),
        );
    }
    connector.insert("bench", source.clone());
    let dir = tempfile::tempdir().unwrap();
    let cfg = NodeConfig {
        data_dir: dir.path().join("data"),
        ..Default::default()
    };
    let partitions = Arc::new(Partitions::start(&cfg).await.unwrap());
    partitions
        .wait_ready(Duration::from_secs(10))
        .await
        .unwrap();
    let workload = IngestWorkload::new(
        connector,
        IngestConfig::default(),
        IngestMetrics::unregistered().unwrap(),
    );
    let runtime = Runtime::start_with_workloads(
        partitions,
        Registries {
            entities: Registry::builtin(),
            ..Default::default()
        },
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
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    ingest
        .put(
            "bench",
            serde_json::from_value(
                json!({"source": {"nats": {"url": "nats://127.0.0.1:1", "stream": "s"}},
                "mapping": {"entity": "counter", "key": "/user", "operation": "add"}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    loop {
        let s = ingest.status("bench").await.unwrap();
        if s.applied >= records {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{records} records, {keys} counters, 8 source partitions: {secs:.2} s, {:.0} records/s",
        records as f64 / secs
    );
}
