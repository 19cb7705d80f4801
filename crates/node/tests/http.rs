//! The HTTP API's edges, in process: health and readiness, JSON errors for unknown routes, bad
//! ids, missing operations, oversized and malformed bodies, refused batch items, and a clean
//! graceful shutdown. (The entity success paths are in `http_entities.rs`.)

mod common;

use common::{code, json, test_config, Node};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness() {
    let node = Node::start().await;
    let (s, _, body) = json(node.http.get(format!("{}/healthz", node.url))).await;
    assert_eq!(s, 200);
    assert_eq!(body, json!({"status": "ok"}));
    let (s, _, body) = json(node.http.get(format!("{}/readyz", node.url))).await;
    assert_eq!(s, 200);
    assert_eq!(body["status"], "ready");
    assert_eq!(body["partitions"], 4);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_answer_json() {
    let node = Node::start().await;
    for path in [
        "/nope",
        "/runtime/webhooks/durabletask/orchestrators",
        "/dashboard/nope",
    ] {
        let (s, _, body) = json(node.http.get(format!("{}{path}", node.url))).await;
        assert_eq!(s, 404, "{path}");
        assert_eq!(code(&body), "not_found");
        assert!(body["error"]["message"].as_str().unwrap().contains(path));
    }
    let (s, _, body) = json(
        node.http
            .post(node.api("/entities/counter/a/call/extra"))
            .query(&[("op", "get")]),
    )
    .await;
    assert_eq!(s, 404);
    assert_eq!(code(&body), "not_found");
    let (s, _, body) = json(node.http.delete(node.api("/entities/counter/a"))).await;
    assert_eq!(s, 405);
    assert_eq!(code(&body), "method_not_allowed");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_entity_ids_are_400() {
    let node = Node::start().await;
    let long_name = "n".repeat(200);
    let long_key = "k".repeat(2000);
    let cases = [
        "/entities/bad@name/a".to_string(),
        format!("/entities/{long_name}/a"),
        format!("/entities/counter/{long_key}"),
        "/entities/counter/a%0Ab".to_string(),
        "/entities/sp%20ace/a".to_string(),
    ];
    for path in &cases {
        let (s, _, body) = json(node.http.post(node.api(path)).query(&[("op", "add")])).await;
        assert_eq!(s, 400, "POST {path}: {body}");
        assert_eq!(code(&body), "bad_entity_id", "{path}");
        let (s, _, body) = json(node.http.get(node.api(path))).await;
        assert_eq!(s, 400, "GET {path}: {body}");
        assert_eq!(code(&body), "bad_entity_id", "{path}");
    }
    let (s, _, body) = json(node.http.get(node.api("/entities/bad@name"))).await;
    assert_eq!(s, 400);
    assert_eq!(code(&body), "bad_entity_id");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_operation_is_400() {
    let node = Node::start().await;
    for url in [
        node.api("/entities/counter/a"),
        node.api("/entities/counter/a?op="),
        node.api("/entities/counter/a/call"),
    ] {
        let (s, _, body) = json(node.http.post(&url)).await;
        assert_eq!(s, 400, "{url}");
        assert_eq!(code(&body), "missing_operation");
        assert!(body["error"]["message"].as_str().unwrap().contains("op="));
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_types_operations_and_bad_inputs_are_refused_before_anything_is_written() {
    let node = Node::start().await;
    let cases = [
        (
            "/entities/nosuchtype/a",
            "add",
            Some("1"),
            "unknown_entity_type",
        ),
        ("/entities/counter/a", "explode", None, "unknown_operation"),
        ("/entities/counter/a", "add", Some("\"five\""), "bad_input"),
        ("/entities/register/a", "set", None, "bad_input"),
    ];
    for (path, op, body, want) in cases {
        for suffix in ["", "/call"] {
            let mut req = node
                .http
                .post(node.api(&format!("{path}{suffix}")))
                .query(&[("op", op)]);
            if let Some(b) = body {
                req = req.body(b);
            }
            let (s, _, resp) = json(req).await;
            assert_eq!(s, 400, "{path}{suffix}?op={op}: {resp}");
            assert_eq!(code(&resp), want, "{path}{suffix}?op={op}");
        }
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_idempotency_keys_are_400() {
    let node = Node::start().await;
    let (s, _, body) = json(
        node.http
            .post(node.api("/entities/counter/a?op=add"))
            .header("Idempotency-Key", "k".repeat(300)),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(code(&body), "bad_idempotency_key");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_413() {
    let node = Node::start().await;
    let limit = node.config.http.max_body_bytes as usize;
    let big = format!("\"{}\"", "x".repeat(limit + 10));
    for url in [
        node.api("/entities/register/a?op=set"),
        node.api("/entities/register/a/call?op=set"),
        node.api("/entities:batch"),
    ] {
        let (s, _, body) = json(node.http.post(&url).body(big.clone())).await;
        assert_eq!(s, 413, "{url}");
        assert_eq!(code(&body), "body_too_large");
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_400_naming_the_error() {
    let node = Node::start().await;
    for url in [
        node.api("/entities/counter/a?op=add"),
        node.api("/entities/counter/a/call?op=add"),
        node.api("/entities:batch"),
    ] {
        let (s, _, body) = json(node.http.post(&url).body("{\"signals\": ")).await;
        assert_eq!(s, 400, "{url}");
        assert_eq!(code(&body), "bad_json");
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(msg.contains("EOF") && msg.contains("line 1"), "{msg}");
    }
    // the right JSON in the wrong shape
    let (s, _, body) = json(
        node.http
            .post(node.api("/entities:batch"))
            .body(r#"{"signals":[{"name":"counter"}]}"#),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(code(&body), "bad_json");
    assert!(body["error"]["message"].as_str().unwrap().contains("key"));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_list_queries_are_400() {
    let node = Node::start().await;
    for q in ["top=abc", "top=0", "top=-1"] {
        let (s, _, body) = json(node.http.get(node.api(&format!("/entities/counter?{q}")))).await;
        assert_eq!(s, 400, "{q}");
        assert_eq!(code(&body), "bad_query");
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_over_the_limit_are_refused_and_bad_items_answered_in_order() {
    let node = Node::start().await;
    let max = node.config.http.max_batch_signals as usize;
    let one = json!({"name": "counter", "key": "a", "op": "add", "input": 1});
    let (s, _, body) = json(
        node.http
            .post(node.api("/entities:batch"))
            .json(&json!({ "signals": vec![one; max + 1] })),
    )
    .await;
    assert_eq!(s, 413);
    assert_eq!(code(&body), "too_many_signals");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("max_batch_signals"));

    let (s, _, body) = json(node.http.post(node.api("/entities:batch")).json(&json!({
        "signals": [
            {"name": "bad@name", "key": "a", "op": "add"},
            {"name": "counter", "key": "a", "op": "explode"},
            {"name": "nosuchtype", "key": "a", "op": "add"},
            {"name": "counter", "key": "a", "op": "add", "input": "five"},
            {"name": "register", "key": "a", "op": "set"},
            {"name": "counter", "key": "a", "op": ""},
        ]
    })))
    .await;
    assert_eq!(s, 200, "{body}");
    let codes: Vec<&str> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["error"]["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        [
            "bad_entity_id",
            "unknown_operation",
            "unknown_entity_type",
            "bad_input",
            "bad_input",
            "missing_operation"
        ]
    );
    let (s, _, body) = json(
        node.http
            .post(node.api("/entities:batch"))
            .json(&json!({ "signals": [] })),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(body, json!({"results": []}));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_releases_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let node = Node::start_with(config.clone()).await;
    let url = node.url.clone();
    node.stop().await;
    assert!(
        reqwest::get(format!("{url}/healthz")).await.is_err(),
        "the listener is closed"
    );
    // the same directory opens again at once
    let node = Node::start_with(config).await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_an_idle_keep_alive_connection() {
    let node = Node::start().await;
    // leaves a pooled keep-alive connection open
    let (s, _, _) = json(node.http.get(format!("{}/healthz", node.url))).await;
    assert_eq!(s, 200);
    let started = std::time::Instant::now();
    node.stop().await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "an idle connection held up shutdown for {:?}",
        started.elapsed()
    );
}

#[test]
fn the_openapi_file_describes_every_route() {
    let spec = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/api/openapi.yaml"
    ))
    .unwrap();
    for route in [
        "  /runtime/webhooks/durabletask/entities/{name}/{key}:",
        "  /runtime/webhooks/durabletask/entities/{name}/{key}/call:",
        "  /runtime/webhooks/durabletask/entities/{name}:",
        "  /runtime/webhooks/durabletask/entities:batch:",
        "  /healthz:",
        "  /readyz:",
        "  /metrics:",
        "  /:",
        "  /dashboard/stats:",
        "  /dashboard/types:",
    ] {
        assert!(spec.contains(&format!("\n{route}\n")), "{route} missing");
    }
    for code in [
        "bad_entity_id",
        "missing_operation",
        "bad_json",
        "body_too_large",
        "too_many_signals",
        "entity_not_found",
        "operation_failed",
        "unavailable",
        "not_ready",
    ] {
        assert!(spec.contains(code), "error code {code} undocumented");
    }
}
