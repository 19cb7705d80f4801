//! The example binary runs a real node with its own entity type and orchestration: an order is
//! placed (stock reserved by entity calls, the card charged by an activity), a declined card
//! gives the stock back, and an order for more than the stock is rejected.

use serde_json::{json, Value};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const BASE: &str = "/runtime/webhooks/durabletask";

async fn order(http: &reqwest::Client, url: &str, id: &str, body: Value) -> Value {
    let r = http
        .post(format!("{url}{BASE}/orchestrators/PlaceOrder/{id}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = http
        .get(format!("{url}{BASE}/instances/{id}/wait?timeoutMs=20000"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let s: Value = r.json().await.unwrap();
    assert_eq!(s["runtimeStatus"], "Completed", "{s}");
    s["output"].clone()
}

async fn stock(http: &reqwest::Client, url: &str, item: &str) -> Value {
    http.get(format!("{url}{BASE}/entities/inventory/{item}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_reserve_charge_and_give_back() {
    let dir = tempfile::tempdir().unwrap();
    let port = perdure_harness::free_port("127.0.0.1").unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let _node = Node(
        Command::new(env!("CARGO_BIN_EXE_custom-node"))
            .env("PERDURE_DATA_DIR", dir.path().join("data"))
            .env("PERDURE_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("PERDURE_GRPC__ADDR", "127.0.0.1:0")
            .env("PERDURE_PARTITIONS", "4")
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let t = Instant::now();
    while !matches!(http.get(format!("{url}/readyz")).send().await, Ok(r) if r.status() == 200) {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the example node never got ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for item in ["apple", "pear"] {
        let r = http
            .post(format!("{url}{BASE}/entities/inventory/{item}?op=restock"))
            .json(&json!(10))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }

    let placed = order(
        &http,
        &url,
        "o1",
        json!({"items": {"apple": 3, "pear": 2}, "card": "4242"}),
    )
    .await;
    assert_eq!(placed["status"], "placed", "{placed}");
    assert!(placed["receipt"]
        .as_str()
        .unwrap()
        .starts_with("receipt-o1-"));
    assert_eq!(stock(&http, &url, "apple").await, json!(7));

    let refunded = order(
        &http,
        &url,
        "o2",
        json!({"items": {"apple": 5}, "card": "0000"}),
    )
    .await;
    assert_eq!(refunded["status"], "refunded", "{refunded}");
    // the stock given back by a signal: read until it arrives
    let t = Instant::now();
    while stock(&http, &url, "apple").await != json!(7) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "stock not given back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let rejected = order(
        &http,
        &url,
        "o3",
        json!({"items": {"pear": 50}, "card": "4242"}),
    )
    .await;
    assert_eq!(rejected["status"], "rejected", "{rejected}");
    assert_eq!(stock(&http, &url, "pear").await, json!(8));
}
