//! `/metrics`, `/dashboard/stats` and the web dashboard, in process: two nodes in one process keep
//! separate registries; entity operations (single and batched) are counted by type, operation and
//! outcome with bounded labels; `metrics.enabled = false` turns them off.

mod common;

use common::{json, test_config, Node};
use serde_json::json;

/// The value of the sample `series` (name with labels exactly as exposed), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn metrics(node: &Node) -> String {
    let r = node
        .http
        .get(format!("{}/metrics", node.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    r.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_are_counted_per_node_with_bounded_labels() {
    let a = Node::start().await;
    let b = Node::start().await;
    for _ in 0..3 {
        let (s, _, _) = json(a.http.post(a.api("/entities/counter/k1?op=add")).body("2")).await;
        assert_eq!(s, 202);
    }
    let (s, _, _) = json(a.http.post(a.api("/entities/Counter/k1/call?op=get"))).await;
    assert_eq!(s, 200);
    let (s, _, _) = json(a.http.post(a.api("/entities/counter/k1/call?op=nope"))).await;
    assert_eq!(s, 400);
    let (s, _, _) = json(a.http.get(a.api("/entities/counter/k1"))).await;
    assert_eq!(s, 200);
    let (s, _, _) = json(a.http.get(a.api("/entities/no-such-type/k1"))).await;
    assert_eq!(s, 400);
    let batch = json!({"signals": [
        {"name": "counter", "key": "k2", "op": "add", "input": 1},
        {"name": "register", "key": "r", "op": "set", "input": "x"},
        {"name": "counter", "key": "k3", "op": "bogus"},
        {"name": "secret-type-x", "key": "k4", "op": "bogus-op-y"},
    ]});
    let (s, _, _) = json(a.http.post(a.api("/entities:batch")).json(&batch)).await;
    assert_eq!(s, 200);

    let text = metrics(&a).await;
    let ops = |labels: &str| {
        sample(
            &text,
            &format!("perdure_entity_operations_total{{{labels}}}"),
        )
        .unwrap_or(0.0)
    };
    for (labels, expected) in [
        (
            r#"kind="signal",operation="add",outcome="ok",type="counter""#,
            4.0,
        ),
        (
            r#"kind="call",operation="get",outcome="ok",type="counter""#,
            1.0,
        ),
        (
            r#"kind="call",operation="other",outcome="rejected",type="counter""#,
            1.0,
        ),
        (
            r#"kind="read",operation="state",outcome="ok",type="counter""#,
            1.0,
        ),
        (
            r#"kind="read",operation="other",outcome="rejected",type="other""#,
            1.0,
        ),
        (
            r#"kind="signal",operation="set",outcome="ok",type="register""#,
            1.0,
        ),
        (
            r#"kind="signal",operation="other",outcome="rejected",type="counter""#,
            1.0,
        ),
        (
            r#"kind="signal",operation="other",outcome="rejected",type="other""#,
            1.0,
        ),
    ] {
        assert_eq!(ops(labels), expected, "{labels}\n{text}");
    }
    // nothing a client chose becomes a label: no keys, no unknown names
    for leaked in ["k1", "no-such-type", "nope", "bogus", "secret-type-x"] {
        assert!(
            !text.contains(&format!("\"{leaked}\"")),
            "{leaked} became a label value"
        );
    }
    assert_eq!(
        sample(
            &text,
            r#"perdure_http_requests_total{method="POST",route="/runtime/webhooks/durabletask/entities/{name}/{key}",status="202"}"#
        ),
        Some(3.0)
    );
    assert!(
        sample(
            &text,
            r#"perdure_entity_operation_duration_seconds_count{kind="signal",type="counter"}"#
        )
        .unwrap()
            >= 4.0
    );
    assert!(sample(&text, "perdure_wal_fsync_duration_seconds_count").unwrap() > 0.0);
    assert!(sample(&text, "perdure_wal_written_bytes_total").unwrap() > 0.0);
    assert_eq!(sample(&text, "perdure_partitions_led"), Some(4.0));
    assert_eq!(
        sample(
            &text,
            r#"perdure_partition_role{partition="0",role="leader"}"#
        ),
        Some(1.0)
    );
    assert!(sample(&text, "perdure_actors_active").unwrap() >= 1.0);
    assert!(text.contains("process_resident_memory_bytes"));

    // the other node in this process has a registry of its own
    let other = metrics(&b).await;
    assert_eq!(
        sample(
            &other,
            r#"perdure_entity_operations_total{kind="signal",operation="add",outcome="ok",type="counter"}"#
        ),
        Some(0.0)
    );

    // the dashboard's summary agrees
    let (s, _, stats) = json(a.http.get(format!("{}/dashboard/stats", a.url))).await;
    assert_eq!(s, 200);
    assert!(stats["operations"]["ok"].as_u64().unwrap() >= 7, "{stats}");
    assert!(
        stats["operations"]["rejected"].as_u64().unwrap() >= 4,
        "{stats}"
    );
    assert_eq!(stats["partitions_led"], 4);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_is_served_and_metrics_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.metrics.enabled = false;
    let node = Node::start_with(config).await;
    let r = node
        .http
        .get(format!("{}/", node.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = r.text().await.unwrap();
    assert!(
        page.contains("/dashboard/app.js")
            && !page.contains("http://")
            && !page.contains("https://")
    );
    for asset in ["/dashboard/app.js", "/dashboard/style.css"] {
        let r = node
            .http
            .get(format!("{}{asset}", node.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{asset}");
    }
    let (s, _, types) = json(node.http.get(format!("{}/dashboard/types", node.url))).await;
    assert_eq!(s, 200);
    assert!(types["types"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["name"] == "counter"));
    for off in ["/metrics", "/dashboard/stats"] {
        let (s, _, _) = json(node.http.get(format!("{}{off}", node.url))).await;
        assert_eq!(s, 404, "{off} with metrics.enabled = false");
    }
    let (s, _, _) = json(
        node.http
            .post(node.api("/entities/counter/x?op=add"))
            .body("1"),
    )
    .await;
    assert_eq!(s, 202);
    node.stop().await;
}
