//! One node in process for the orchestration tests: partitions, the runtime with the caller's
//! registries, readiness, a clean stop, and shorthands to start an orchestration and wait for it.

#![allow(dead_code)]

use perdure_cluster::Partitions;
use perdure_runtime::orchestrations::StartRequest;
use perdure_runtime::{Error, Registries, Runtime};
use perdure_types::config::{NodeConfig, OrchestrationsConfig};
use perdure_types::orchestration::RuntimeStatus;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A node of 4 partitions with its data in `dir`.
pub fn config(dir: &std::path::Path) -> NodeConfig {
    NodeConfig {
        data_dir: dir.join("data"),
        partitions: 4,
        ..Default::default()
    }
}

/// The runtime of one node.
pub struct Node {
    /// Its runtime.
    pub runtime: Runtime,
}

impl Node {
    /// Starts a node running `registries` and waits until both workloads answer (an unknown
    /// instance is not found; a counter can be called).
    pub async fn start(
        cfg: &NodeConfig,
        registries: Registries,
        orch: OrchestrationsConfig,
    ) -> Self {
        let partitions = Arc::new(Partitions::start(cfg).await.unwrap());
        partitions
            .wait_ready(Duration::from_secs(10))
            .await
            .unwrap();
        let runtime = Runtime::start_with(partitions, registries, cfg.entities.clone(), orch)
            .await
            .unwrap();
        let t = Instant::now();
        let warm = perdure_types::EntityId::new("counter", "__warmup").unwrap();
        loop {
            let orch = runtime.orchestrations().status("__warmup", false).await;
            let ent = runtime.entities().call(warm.clone(), "get", None).await;
            match (orch, ent) {
                (Err(Error::InstanceNotFound(_)), Ok(_)) => break,
                _ => {
                    assert!(t.elapsed() < Duration::from_secs(10), "never ready");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        Self { runtime }
    }

    /// Stops the runtime, then the partitions, once nothing else holds them.
    pub async fn stop(self) {
        self.runtime.shutdown().await;
        let mut partitions = self.runtime.partitions().clone();
        drop(self.runtime);
        let t = Instant::now();
        loop {
            match Arc::try_unwrap(partitions) {
                Ok(p) => return p.shutdown().await,
                Err(p) => {
                    assert!(
                        t.elapsed() < Duration::from_secs(10),
                        "partitions still shared"
                    );
                    partitions = p;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }

    /// Starts orchestrator `name` as instance `id` with `input`.
    pub async fn start_orch(&self, name: &str, id: &str, input: Value) {
        self.runtime
            .orchestrations()
            .start(StartRequest {
                name: name.into(),
                instance_id: Some(id.into()),
                input: Some(input),
                ..Default::default()
            })
            .await
            .unwrap();
    }

    /// Waits (up to 30 s) until `id` finishes: its status and output.
    pub async fn finish(&self, id: &str) -> (RuntimeStatus, Option<Value>) {
        let s = self
            .runtime
            .orchestrations()
            .wait(id, Duration::from_secs(30), false)
            .await
            .unwrap();
        let out = s
            .record
            .output
            .as_deref()
            .and_then(|o| serde_json::from_str(o).ok());
        (s.record.status, out)
    }
}
