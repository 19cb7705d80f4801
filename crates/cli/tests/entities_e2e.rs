//! End-to-end with the real binary (test entity types on): entity-to-entity signals across
//! partitions, scheduled signals across a restart, and one operation at a time per entity under
//! concurrent HTTP load while actors passivate and reactivate.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BASE: &str = "/runtime/webhooks/durabletask";

struct Node {
    child: Child,
    url: String,
}

impl Node {
    /// `perdure serve` on `port` over `data`, with the test types; waits for `/readyz`.
    async fn start(data: &Path, port: u16, extra_env: &[(&str, &str)]) -> Node {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_perdure"));
        cmd.args([
            "serve",
            "--partitions",
            "4",
            "--http-addr",
            &format!("127.0.0.1:{port}"),
            "--grpc-addr",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data)
        .env("PERDURE_ENTITIES__TEST_TYPES", "true")
        .env("PERDURE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start perdure serve");
        let node = Node {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let http = reqwest::Client::new();
        let t = Instant::now();
        loop {
            if let Ok(r) = http.get(format!("{}/readyz", node.url)).send().await {
                if r.status() == 200 {
                    return node;
                }
            }
            assert!(t.elapsed() < Duration::from_secs(30), "not ready in 30 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let t = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                assert!(s.success(), "exit after SIGTERM: {s}");
                return;
            }
            assert!(
                t.elapsed() < Duration::from_secs(15),
                "no exit within 15 s of SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn signal(
        &self,
        http: &reqwest::Client,
        name: &str,
        key: &str,
        op: &str,
        input: serde_json::Value,
    ) {
        let r = http
            .post(format!("{}{BASE}/entities/{name}/{key}?op={op}", self.url))
            .json(&input)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{:?}", r.text().await);
    }

    async fn state(
        &self,
        http: &reqwest::Client,
        name: &str,
        key: &str,
    ) -> Option<serde_json::Value> {
        let r = http
            .get(format!("{}{BASE}/entities/{name}/{key}", self.url))
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            200 => Some(r.json().await.unwrap()),
            404 => None,
            s => panic!("GET state: {s}"),
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // a failed test must not leave the server running
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn eventually(what: &str, within: Duration, mut f: impl AsyncFnMut() -> bool) {
    let t = Instant::now();
    while !f().await {
        assert!(t.elapsed() < within, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entity_signals_cross_partitions_and_scheduled_signals_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = port();
    let http = reqwest::Client::new();
    let node = Node::start(&data, port, &[]).await;

    // 16 target counters land on all 4 partitions; the relay lives on one of them
    for round in 1..=10 {
        for t in 0..16 {
            node.signal(
                &http,
                "relay",
                "r",
                "send",
                serde_json::json!({"to": format!("t{t}"), "amount": round}),
            )
            .await;
        }
    }
    for t in 0..16 {
        let key = format!("t{t}");
        eventually(
            &format!("counter {key}"),
            Duration::from_secs(15),
            async || node.state(&http, "counter", &key).await == Some(serde_json::json!(55)),
        )
        .await;
    }
    assert_eq!(
        node.state(&http, "relay", "r").await,
        Some(serde_json::json!(160))
    );

    // scheduled signals, then a restart before they are due
    let scheduled = Instant::now();
    for i in 0..4 {
        node.signal(
            &http,
            "relay",
            "timer",
            "later",
            serde_json::json!({"to": format!("late{i}"), "ms": 2500}),
        )
        .await;
    }
    node.stop().await;
    assert!(
        scheduled.elapsed() < Duration::from_millis(2500),
        "restart must happen before the timers are due"
    );
    let node = Node::start(&data, port, &[]).await;
    for i in 0..4 {
        let key = format!("late{i}");
        let before_due = scheduled.elapsed() < Duration::from_millis(2400);
        let fired = node.state(&http, "counter", &key).await.is_some();
        assert!(!(before_due && fired), "fired early");
        eventually(
            &format!("timer for {key}"),
            Duration::from_secs(15),
            async || node.state(&http, "counter", &key).await == Some(serde_json::json!(1)),
        )
        .await;
    }
    assert!(
        scheduled.elapsed() >= Duration::from_millis(2500),
        "fired before its time"
    );
    // delivered once: nothing more arrives later, and the targets of the first part are unchanged
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for i in 0..4 {
        assert_eq!(
            node.state(&http, "counter", &format!("late{i}")).await,
            Some(serde_json::json!(1))
        );
    }
    for t in 0..16 {
        assert_eq!(
            node.state(&http, "counter", &format!("t{t}")).await,
            Some(serde_json::json!(55))
        );
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_operation_at_a_time_per_entity_under_concurrent_http_load() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(
        &dir.path().join("data"),
        port(),
        &[("PERDURE_ENTITIES__PASSIVATE_AFTER_MS", "5")],
    )
    .await;
    let http = reqwest::Client::new();
    let mut tasks = Vec::new();
    for w in 0..32 {
        let (http, url) = (http.clone(), node.url.clone());
        tasks.push(tokio::spawn(async move {
            let key = format!("p{}", w % 4);
            let mut max_overlaps = 0;
            for i in 0..30 {
                let path = if i % 2 == 0 {
                    "call?op=visit"
                } else {
                    "?op=visit"
                };
                let sep = if i % 2 == 0 { "/" } else { "" };
                let r = http
                    .post(format!("{url}{BASE}/entities/probe/{key}{sep}{path}"))
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success(), "{}", r.status());
                if i % 2 == 0 {
                    let v: serde_json::Value = r.json().await.unwrap();
                    max_overlaps = max_overlaps.max(v["overlaps"].as_u64().unwrap());
                }
                if i % 10 == 0 {
                    tokio::time::sleep(Duration::from_millis(15)).await; // let actors passivate
                }
            }
            max_overlaps
        }));
    }
    let mut overlaps = 0;
    for t in tasks {
        overlaps = overlaps.max(t.await.unwrap());
    }
    assert_eq!(overlaps, 0, "two operations ran at once on one entity");
    let mut visits = 0;
    for k in 0..4 {
        visits += node
            .state(&http, "probe", &format!("p{k}"))
            .await
            .unwrap()
            .as_u64()
            .unwrap();
    }
    assert_eq!(visits, 32 * 30, "every operation applied exactly once");
    node.stop().await;
}
