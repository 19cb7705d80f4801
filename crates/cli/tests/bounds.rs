//! Bounded commands (Hardening case 3): operations whose combined changes would exceed what one
//! log entry may hold never reach the log; they fail as operations, and the partition serves on.

mod common;

use common::cluster::{http_client, member, start, test_config};
use std::time::Duration;

const BASE: &str = "runtime/webhooks/durabletask";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_appends_fail_as_operations_and_the_partition_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let m = member(1, dir.path());
    // one partition: the list and the counter below share its Raft group
    let mut c = test_config(&m, &[], "bounds", "", 1);
    c.http.max_body_bytes = 100 << 20;
    // a debug build takes seconds per 90 MiB operation: the answers, not the deadline, are tested
    c.entities.request_timeout_ms = 120_000;
    m.write_config(&c).unwrap();
    let mut node = start(&m);
    node.wait_ready(Duration::from_secs(30)).unwrap();
    let url = m.url();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    // three appends of 90 MiB each, at once: together over the 256 MiB a log entry may hold
    let item = serde_json::Value::String("x".repeat(90 << 20));
    let body = serde_json::to_vec(&item).unwrap();
    let mut sent = Vec::new();
    for _ in 0..3 {
        let (http, url, body) = (http.clone(), url.clone(), body.clone());
        sent.push(tokio::spawn(async move {
            http.post(format!("{url}/{BASE}/entities/list/big/call?op=append"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
    }
    for s in sent {
        let status = s.await.unwrap().expect("every append is answered");
        assert_eq!(
            status, 422,
            "an append over the state limit fails as an operation"
        );
    }
    drop(body);
    // the partition still commits: a small append to the same list, a counter add
    let http = http_client();
    let r = http
        .post(format!("{url}/{BASE}/entities/list/big/call?op=append"))
        .json(&serde_json::json!("small"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", node.log_tail(20));
    let r = http
        .post(format!("{url}/{BASE}/entities/counter/c/call?op=add"))
        .json(&serde_json::json!(5))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", node.log_tail(20));
    let state: serde_json::Value = http
        .get(format!("{url}/{BASE}/entities/list/big"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state, serde_json::json!(["small"]));
    assert_eq!(
        perdure_harness::http_status(&m.http_addr(), "/readyz", Duration::from_secs(5)),
        Some(200)
    );
}
