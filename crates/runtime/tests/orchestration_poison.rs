//! A step that keeps crashing is not retried for ever: after `orchestrations.max_dispatches`
//! failed attempts the instance fails with a `PoisonMessage` failure naming the cause, and it is
//! listed by the `poisoned` filter. Its own test binary: the switch that makes the step crash
//! (`PERDURE_TEST_ORCH_PANIC_PREFIX`) is read once per process.

use perdure_cluster::Partitions;
use perdure_runtime::orchestrations::{samples, InstanceFilter, Query, StartRequest};
use perdure_runtime::{OrchestrationRegistry, Registries, Registry, Runtime};
use perdure_types::config::{NodeConfig, OrchestrationsConfig};
use perdure_types::orchestration::RuntimeStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_keeps_panicking_is_quarantined() {
    // set before the runtime starts, which is when the switch is read
    std::env::set_var("PERDURE_TEST_ORCH_PANIC_PREFIX", "poison-");
    let dir = tempfile::tempdir().unwrap();
    let cfg = NodeConfig {
        data_dir: dir.path().join("data"),
        partitions: 2,
        ..Default::default()
    };
    let partitions = Arc::new(Partitions::start(&cfg).await.unwrap());
    partitions
        .wait_ready(Duration::from_secs(10))
        .await
        .unwrap();
    let runtime = Runtime::start_with(
        partitions,
        Registries {
            entities: Registry::builtin(),
            orchestrations: samples::register(OrchestrationRegistry::default()),
        },
        cfg.entities.clone(),
        OrchestrationsConfig {
            max_dispatches: 3,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let o = runtime.orchestrations();
    let t = Instant::now();
    let start = |id: &str| StartRequest {
        name: "HelloSequence".into(),
        instance_id: Some(id.into()),
        ..Default::default()
    };
    while o.start(start("fine")).await.is_err() {
        assert!(t.elapsed() < Duration::from_secs(10), "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    o.start(start("poison-1")).await.unwrap();
    let s = o
        .wait("poison-1", Duration::from_secs(30), false)
        .await
        .unwrap();
    assert_eq!(s.record.status, RuntimeStatus::Failed);
    let f = s.record.failure.unwrap();
    assert_eq!(f.error_type, "PoisonMessage");
    assert!(
        f.message.contains("3 times") && f.message.contains("panics"),
        "{f:?}"
    );
    assert_eq!(
        o.metrics()
            .poisoned
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // other instances are not affected; the poisoned one is listed
    let fine = o
        .wait("fine", Duration::from_secs(30), false)
        .await
        .unwrap();
    assert_eq!(fine.record.status, RuntimeStatus::Completed);
    let page = o
        .query(Query {
            filter: InstanceFilter {
                poisoned: true,
                ..Default::default()
            },
            page_size: 10,
            continuation: None,
        })
        .await
        .unwrap();
    let ids: Vec<_> = page
        .instances
        .iter()
        .map(|r| r.instance_id.to_string())
        .collect();
    assert_eq!(ids, vec!["poison-1"]);
    runtime.shutdown().await;
}
