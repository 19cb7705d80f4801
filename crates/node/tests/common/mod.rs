//! A node started in process on `127.0.0.1:0` with a temporary data directory.

#![allow(dead_code)]

use perdure_types::config::NodeConfig;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The base path of the entity routes.
pub const BASE: &str = "/runtime/webhooks/durabletask";

/// A running node; `stop` shuts it down and checks that it stopped cleanly.
pub struct Node {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// An HTTP client.
    pub http: reqwest::Client,
    /// The node's config.
    pub config: NodeConfig,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), perdure_node::Error>>>,
    _dir: Option<tempfile::TempDir>,
}

/// Test settings: 4 partitions, small HTTP limits, gRPC off (these tests are about HTTP: with
/// gRPC workers served, an entity type or orchestrator without Rust code is taken as theirs
/// instead of refused; tests that want gRPC turn it on, on a free port).
pub fn test_config(dir: &std::path::Path) -> NodeConfig {
    let mut c = NodeConfig {
        data_dir: dir.join("data"),
        partitions: 4,
        ..NodeConfig::default()
    };
    c.grpc.enabled = false;
    c.grpc.addr = "127.0.0.1:0".into();
    c.http.max_body_bytes = 64 * 1024;
    c.http.max_batch_signals = 10;
    c
}

impl Node {
    /// Starts a node on a fresh temporary directory and waits until `/readyz` says 200.
    pub async fn start() -> Node {
        let dir = tempfile::tempdir().unwrap();
        let config = test_config(dir.path());
        let mut node = Node::start_with(config).await;
        node._dir = Some(dir);
        node
    }

    /// Starts a node with `config` and waits until it is ready.
    pub async fn start_with(config: NodeConfig) -> Node {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(perdure_node::run(config.clone(), listener, async move {
            let _ = rx.await;
        }));
        let node = Node {
            url,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            config,
            stop: Some(tx),
            task: Some(task),
            _dir: None,
        };
        node.wait_ready().await;
        node
    }

    /// Polls `/readyz` until 200 (at most 30 s).
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = self.http.get(format!("{}/readyz", self.url)).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "node not ready within 30 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `BASE` + `path`, absolute.
    pub fn api(&self, path: &str) -> String {
        format!("{}{BASE}{path}", self.url)
    }

    /// Shuts the node down; `run` must return `Ok` within 15 s.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let task = self.task.take().unwrap();
        let r = tokio::time::timeout(Duration::from_secs(15), task)
            .await
            .expect("node did not stop within 15 s")
            .expect("node task panicked");
        r.expect("node stopped with an error");
    }
}

/// Sends a request and returns (status, headers, JSON body; `Null` for an empty body).
pub async fn json(
    req: reqwest::RequestBuilder,
) -> (
    reqwest::StatusCode,
    reqwest::header::HeaderMap,
    serde_json::Value,
) {
    let resp = req.send().await.expect("request sent");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.expect("body read");
    let body = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{status}: body is not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    };
    (status, headers, body)
}

/// The `error.code` of an error body (panics when the body is not one).
pub fn code(body: &serde_json::Value) -> &str {
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error body: {body}"))
}
