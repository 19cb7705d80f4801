//! `/metrics`, `/dashboard/stats` and the web dashboard, in process: two nodes in one process keep
//! separate registries; entity operations (single and batched) are counted by type, operation and
//! outcome with bounded labels; `metrics.enabled = false` turns them off; the orchestration
//! workload's counters, histograms and instance gauges move with the sample orchestrations.

mod common;

use common::{json, test_config, Node};
use perdure_cluster::Partitions;
use perdure_node::metrics::NodeMetrics;
use perdure_runtime::orchestrations::model::{OrchestrationContext, OrchestrationError};
use perdure_runtime::orchestrations::{samples, StartRequest};
use perdure_runtime::{OrchestrationRegistry, Registries, Registry, Runtime};
use perdure_types::orchestration::RuntimeStatus;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    // the Durable Task workers' view: none connected, nothing waiting
    assert!(
        stats["remote_workers"]["workers"].as_array().is_some(),
        "{stats}"
    );
    assert_eq!(stats["remote_workers"]["pending"]["activity"], 0, "{stats}");
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

/// The samples, and three more: one calling an activity no node has, one that continues as new
/// once, one that runs until terminated.
fn orchestrations() -> OrchestrationRegistry {
    samples::register(OrchestrationRegistry::default())
        .orchestrator("CallsNothing", |ctx: OrchestrationContext| async move {
            Ok(ctx.call_activity("NoSuchActivity", Value::Null).await?)
        })
        .orchestrator("Twice", |ctx: OrchestrationContext| async move {
            let n: u64 = ctx.input()?;
            if n == 0 {
                return ctx.continue_as_new(1);
            }
            Ok(json!(n))
        })
        .orchestrator("Forever", |ctx: OrchestrationContext| async move {
            ctx.wait_for_external_event("Never").await?;
            Err::<Value, _>(OrchestrationError::new("Unreachable", "never"))
        })
}

/// Polls `f` until it answers `Some` (at most 20 s).
async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orchestrations_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let partitions = Arc::new(Partitions::start(&config).await.unwrap());
    partitions
        .wait_ready(Duration::from_secs(10))
        .await
        .unwrap();
    let registries = Registries {
        entities: Registry::builtin(),
        orchestrations: orchestrations(),
    };
    let runtime = Arc::new(
        Runtime::start_with(
            partitions.clone(),
            registries,
            config.entities.clone(),
            config.orchestrations.clone(),
        )
        .await
        .unwrap(),
    );
    let m = NodeMetrics::new(runtime.clone(), partitions.clone()).unwrap();
    let o = runtime.orchestrations();

    // every series is there from the start, at 0 (the leader loops may still be starting)
    let before = m.render().unwrap();
    for series in [
        "perdure_orchestration_instances_started_total",
        "perdure_orchestration_turns_total",
        r#"perdure_orchestration_activities_total{result="failed"}"#,
        r#"perdure_orchestration_executions_total{status="continued_as_new"}"#,
        r#"perdure_orchestration_instances{status="running"}"#,
        "perdure_orchestration_work_items_pending",
        "perdure_orchestration_live_instances",
        "perdure_orchestration_turn_duration_seconds_count",
        "perdure_orchestration_history_events_at_completion_count",
        r#"perdure_remote_work_items_total{event="redispatched",kind="entity"}"#,
        r#"perdure_remote_work_pending{kind="orchestrator"}"#,
    ] {
        assert_eq!(sample(&before, series), Some(0.0), "{series}\n{before}");
    }

    let t = Instant::now();
    loop {
        match o.status("__warmup", false).await {
            Err(perdure_runtime::Error::InstanceNotFound(_)) => break,
            _ => {
                assert!(t.elapsed() < Duration::from_secs(10), "never ready");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    let start = |name: &str, id: &str, input: Value| {
        o.start(StartRequest {
            name: name.into(),
            instance_id: Some(id.into()),
            input: Some(input),
            ..Default::default()
        })
    };
    for (name, id, input) in [
        ("HelloSequence", "orch-hello", Value::Null),
        ("FanOutFanIn", "orch-fan", json!(5)),
        ("CallsNothing", "orch-nothing", Value::Null),
        ("Twice", "orch-twice", json!(0)),
        ("Forever", "orch-forever", Value::Null),
    ] {
        start(name, id, input).await.unwrap();
    }
    let wait = |id: &'static str| async move {
        o.wait(id, Duration::from_secs(20), false)
            .await
            .unwrap()
            .record
            .status
    };
    assert_eq!(wait("orch-hello").await, RuntimeStatus::Completed);
    assert_eq!(wait("orch-fan").await, RuntimeStatus::Completed);
    assert_eq!(wait("orch-nothing").await, RuntimeStatus::Failed);
    assert_eq!(wait("orch-twice").await, RuntimeStatus::Completed);
    eventually("Forever running", || {
        let text = m.render().unwrap();
        (sample(
            &text,
            r#"perdure_orchestration_instances{status="running"}"#,
        ) == Some(1.0))
        .then_some(())
    })
    .await;
    o.terminate("orch-forever", None, false).await.unwrap();
    assert_eq!(wait("orch-forever").await, RuntimeStatus::Terminated);
    assert_eq!(o.purge("orch-hello", false).await.unwrap(), 1);

    // the instances scan runs at most every second: wait for one after the purge
    let text = eventually("the instance gauges", || {
        let text = m.render().unwrap();
        let n = |s: &str| {
            sample(
                &text,
                &format!("perdure_orchestration_instances{{status=\"{s}\"}}"),
            )
        };
        (n("completed") == Some(2.0) && n("terminated") == Some(1.0)).then_some(text)
    })
    .await;
    let v =
        |series: &str| sample(&text, series).unwrap_or_else(|| panic!("{series} missing:\n{text}"));
    for (series, expected) in [
        (
            r#"perdure_orchestration_instances{status="completed"}"#,
            2.0,
        ),
        (r#"perdure_orchestration_instances{status="failed"}"#, 1.0),
        (
            r#"perdure_orchestration_instances{status="terminated"}"#,
            1.0,
        ),
        (r#"perdure_orchestration_instances{status="running"}"#, 0.0),
        (r#"perdure_orchestration_instances{status="pending"}"#, 0.0),
        ("perdure_orchestration_work_items_pending", 0.0),
        ("perdure_orchestration_activities_pending", 0.0),
        // HelloSequence's 3 and FanOutFanIn's 5; the unknown activity failed at once
        ("perdure_orchestration_activities_started_total", 8.0),
        (
            r#"perdure_orchestration_activities_total{result="completed"}"#,
            8.0,
        ),
        (
            r#"perdure_orchestration_activities_total{result="failed"}"#,
            1.0,
        ),
        (
            r#"perdure_orchestration_executions_total{status="completed"}"#,
            3.0,
        ),
        (
            r#"perdure_orchestration_executions_total{status="failed"}"#,
            1.0,
        ),
        (
            r#"perdure_orchestration_executions_total{status="terminated"}"#,
            1.0,
        ),
        (
            r#"perdure_orchestration_executions_total{status="continued_as_new"}"#,
            1.0,
        ),
        // each ended execution's history size observed once
        (
            "perdure_orchestration_history_events_at_completion_count",
            6.0,
        ),
        ("perdure_orchestration_poisoned_total", 0.0),
        ("perdure_orchestration_purged_total", 1.0),
    ] {
        assert_eq!(v(series), expected, "{series}\n{text}");
    }
    assert!(v("perdure_orchestration_instances_started_total") >= 5.0);
    let turns = v("perdure_orchestration_turns_total");
    assert!(turns >= 10.0, "{turns} turns");
    assert!(v("perdure_orchestration_history_events_total") > turns);
    let latency = v("perdure_orchestration_turn_duration_seconds_count");
    assert!(
        latency >= turns,
        "every committed turn's latency is observed"
    );
    assert_eq!(
        v(r#"perdure_orchestration_turn_duration_seconds_bucket{le="+Inf"}"#),
        latency
    );
    assert!(v("perdure_orchestration_turn_duration_seconds_sum") > 0.0);
    assert_eq!(
        v(r#"perdure_orchestration_history_events_at_completion_bucket{le="+Inf"}"#),
        6.0
    );
    // every history holds its start and its end at least
    assert!(v("perdure_orchestration_history_events_at_completion_sum") >= 12.0);
    assert!(text.contains("# TYPE perdure_orchestration_turn_duration_seconds histogram"));
    // no instance id or orchestrator name becomes a label
    for leaked in ["orch-", "HelloSequence", "Forever"] {
        assert!(!text.contains(leaked), "{leaked} in the exposition");
    }

    // the dashboard's summary agrees
    let s = m.summary();
    let orch = &s["orchestrations"];
    assert_eq!(orch["turns"], turns as u64, "{s}");
    assert_eq!(orch["activities"]["completed"], 8, "{s}");
    assert_eq!(orch["instances"]["completed"], 2, "{s}");
    assert_eq!(orch["executions"]["continued_as_new"], 1, "{s}");

    drop(m);
    runtime.shutdown().await;
    drop(runtime);
    let mut partitions = partitions;
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
