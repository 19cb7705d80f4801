//! The entity success paths over HTTP, in process: signal, idempotent retry, call, read state,
//! list with paging (query and header continuation), batch signals, 404 and 422.
//! These need the entity runtime (`perdure_runtime::Runtime`) to serve requests.

mod common;

use common::{code, json, Node};
use serde_json::{json, Value};
use std::collections::BTreeSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signal_ten_times_then_call_and_read_state() {
    let node = Node::start().await;
    for i in 0..10 {
        let (s, _, body) = json(
            node.http
                .post(node.api("/entities/counter/a"))
                .query(&[("op", "add")])
                .header("Idempotency-Key", format!("k{i}"))
                .body("1"),
        )
        .await;
        assert_eq!(s, 202, "{body}");
        assert_eq!(body, json!({"accepted": true, "duplicate": false}));
    }
    let (s, _, body) = json(node.http.post(node.api("/entities/counter/a/call?op=get"))).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body, json!(10));
    let (s, _, body) = json(node.http.get(node.api("/entities/counter/a"))).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body, json!(10));
    // names are case-insensitive
    let (s, _, body) = json(node.http.get(node.api("/entities/Counter/a"))).await;
    assert_eq!((s.as_u16(), body), (200, json!(10)));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_signal_is_applied_once() {
    let node = Node::start().await;
    let send = || {
        node.http
            .post(node.api("/entities/counter/retry?op=add"))
            .header("Idempotency-Key", "same-key")
            .body("5")
    };
    let (s, _, first) = json(send()).await;
    assert_eq!(s, 202);
    assert_eq!(first["duplicate"], false);
    let (s, _, second) = json(send()).await;
    assert_eq!(s, 202);
    assert_eq!(second, json!({"accepted": true, "duplicate": true}));
    let (_, _, state) = json(node.http.get(node.api("/entities/counter/retry"))).await;
    assert_eq!(state, json!(5));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_returns_results_null_and_operation_failures() {
    let node = Node::start().await;
    let (s, _, body) = json(
        node.http
            .post(node.api("/entities/counter/c/call?op=add"))
            .body("7"),
    )
    .await;
    assert_eq!((s.as_u16(), body), (200, json!(7)));
    let (s, _, body) = json(
        node.http
            .post(node.api("/entities/counter/c/call?op=reset")),
    )
    .await;
    assert_eq!((s.as_u16(), body), (200, Value::Null));
    let (s, _, body) = json(
        node.http
            .post(node.api("/entities/register/r/call?op=set"))
            .json(&json!({"a": [1, 2]})),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let (_, _, body) = json(node.http.get(node.api("/entities/register/r"))).await;
    assert_eq!(body, json!({"a": [1, 2]}));
    // overflow: the operation runs and fails; its state change is discarded
    let max = i64::MAX.to_string();
    let (s, _, _) = json(
        node.http
            .post(node.api("/entities/counter/o/call?op=add"))
            .body(max.clone()),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _, body) = json(
        node.http
            .post(node.api("/entities/counter/o/call?op=add"))
            .body(max.clone()),
    )
    .await;
    assert_eq!(s, 422, "{body}");
    assert_eq!(code(&body), "operation_failed");
    let (_, _, body) = json(node.http.get(node.api("/entities/counter/o"))).await;
    assert_eq!(body, json!(i64::MAX));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_an_entity_without_state_is_404() {
    let node = Node::start().await;
    let (s, _, body) = json(node.http.get(node.api("/entities/counter/never"))).await;
    assert_eq!(s, 404, "{body}");
    assert_eq!(code(&body), "entity_not_found");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("@counter@never"));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_with_slashes_and_spaces_round_trip() {
    let node = Node::start().await;
    let (s, _, _) = json(
        node.http
            .post(node.api("/entities/counter/a%2Fb%20c?op=add"))
            .body("2"),
    )
    .await;
    assert_eq!(s, 202);
    let (s, _, body) = json(node.http.get(node.api("/entities/counter/a%2Fb%20c"))).await;
    assert_eq!((s.as_u16(), body), (200, json!(2)));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_through_every_entity_once() {
    let node = Node::start().await;
    let keys: BTreeSet<String> = (0..7).map(|i| format!("k{i}")).collect();
    for k in &keys {
        let (s, _, _) = json(
            node.http
                .post(node.api(&format!("/entities/counter/{k}?op=add")))
                .body("3"),
        )
        .await;
        assert_eq!(s, 202);
    }
    // another type is not listed
    let (s, _, _) = json(
        node.http
            .post(node.api("/entities/register/x?op=set"))
            .body("1"),
    )
    .await;
    assert_eq!(s, 202);

    // follow the continuation through the query string
    let mut seen = Vec::new();
    let mut continuation: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut req = node
            .http
            .get(node.api("/entities/counter"))
            .query(&[("top", "3")]);
        if let Some(c) = &continuation {
            req = req.query(&[("continuation", c)]);
        }
        let (s, headers, body) = json(req).await;
        assert_eq!(s, 200, "{body}");
        let entities = body["entities"].as_array().unwrap();
        assert!(entities.len() <= 3);
        for e in entities {
            assert_eq!(e["state"], json!(3));
            seen.push(e["key"].as_str().unwrap().to_string());
        }
        pages += 1;
        assert!(pages <= 10, "paging does not end");
        continuation = body["continuation"].as_str().map(str::to_string);
        assert_eq!(
            headers
                .get("x-ms-continuation-token")
                .map(|v| v.to_str().unwrap().to_string()),
            continuation
        );
        if continuation.is_none() {
            break;
        }
    }
    assert!(pages >= 3);
    assert_eq!(seen.len(), keys.len(), "each entity once: {seen:?}");
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), keys);

    // the same through the x-ms-continuation-token header
    let mut seen = BTreeSet::new();
    let mut token: Option<String> = None;
    loop {
        let mut req = node.http.get(node.api("/entities/counter?top=4"));
        if let Some(t) = &token {
            req = req.header("x-ms-continuation-token", t);
        }
        let (s, headers, body) = json(req).await;
        assert_eq!(s, 200);
        for e in body["entities"].as_array().unwrap() {
            assert!(seen.insert(e["key"].as_str().unwrap().to_string()));
        }
        token = headers
            .get("x-ms-continuation-token")
            .map(|v| v.to_str().unwrap().to_string());
        if token.is_none() {
            break;
        }
    }
    assert_eq!(seen, keys);

    let (s, _, body) = json(node.http.get(node.api("/entities/aggregator"))).await;
    assert_eq!(s, 200);
    assert_eq!(body["entities"], json!([]));
    assert_eq!(body["continuation"], Value::Null);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_signals_answer_in_order_and_apply_once() {
    let node = Node::start().await;
    let batch = json!({"signals": [
        {"name": "counter", "key": "b1", "op": "add", "input": 2, "idempotencyKey": "b-1"},
        {"name": "counter", "key": "b2", "op": "add", "input": 3, "idempotencyKey": "b-2"},
        {"name": "counter", "key": "b1", "op": "explode"},
        {"name": "list", "key": "l", "op": "append", "input": null, "idempotencyKey": "b-3"},
    ]});
    let (s, _, body) = json(node.http.post(node.api("/entities:batch")).json(&batch)).await;
    assert_eq!(s, 200, "{body}");
    let r = body["results"].as_array().unwrap();
    assert_eq!(r.len(), 4);
    assert_eq!(r[0], json!({"accepted": true, "duplicate": false}));
    assert_eq!(r[1], json!({"accepted": true, "duplicate": false}));
    assert_eq!(r[2]["error"]["code"], "unknown_operation");
    assert_eq!(r[3], json!({"accepted": true, "duplicate": false}));
    // the same batch again: every accepted signal is a duplicate
    let (s, _, body) = json(node.http.post(node.api("/entities:batch")).json(&batch)).await;
    assert_eq!(s, 200);
    let r = body["results"].as_array().unwrap();
    for i in [0, 1, 3] {
        assert_eq!(r[i], json!({"accepted": true, "duplicate": true}), "{i}");
    }
    for (key, want) in [
        ("counter/b1", json!(2)),
        ("counter/b2", json!(3)),
        ("list/l", json!([null])),
    ] {
        let (s, _, body) = json(node.http.get(node.api(&format!("/entities/{key}")))).await;
        assert_eq!((s.as_u16(), body), (200, want), "{key}");
    }
    node.stop().await;
}
