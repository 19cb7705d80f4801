//! The orchestration runtime on one node, in process: the samples end to end, sub-orchestrations,
//! continue-as-new, external events, terminate, suspend/resume, reuse policies, purge, query
//! paging, restart, and an instance that survives a restart of the node mid-flight.

mod common;

use common::{config, Node};
use perdure_runtime::orchestrations::model::{OrchestrationContext, OrchestrationError};
use perdure_runtime::orchestrations::{samples, InstanceFilter, Query, StartRequest};
use perdure_runtime::{Error, OrchestrationRegistry, Registries, Registry};
use perdure_types::config::{NodeConfig, OrchestrationsConfig};
use perdure_types::orchestration::{EventKind, ReusePolicy, RuntimeStatus};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

static ACTIVITY_RUNS: AtomicU64 = AtomicU64::new(0);
static FLAKY_CALLS: AtomicU64 = AtomicU64::new(0);
static FIRST_STEP_RUNS: AtomicU64 = AtomicU64::new(0);

fn registry() -> OrchestrationRegistry {
    samples::register(OrchestrationRegistry::default())
        .orchestrator("Parent", |ctx: OrchestrationContext| async move {
            let n: u64 = ctx.input()?;
            let a = ctx.call_sub_orchestration("FanOutFanIn", None, n).await?;
            let b = ctx
                .call_sub_orchestration(
                    "HelloSequence",
                    Some(format!("{}-child", ctx.instance_id())),
                    Value::Null,
                )
                .await?;
            Ok(json!([a, b]))
        })
        .orchestrator("Counter", |ctx: OrchestrationContext| async move {
            // counts "Add" events across continue-as-new generations until it reaches 3
            let n: u64 = ctx.input()?;
            if n >= 3 {
                return Ok(json!(n));
            }
            let ev = ctx.wait_for_external_event("Add").await?;
            ctx.set_custom_status(json!({"n": n}))?;
            ctx.continue_as_new(n + ev.as_u64().unwrap_or(0))
        })
        .orchestrator("Waiter", |ctx: OrchestrationContext| async move {
            let v = ctx.wait_for_external_event("Go").await?;
            let r = ctx.call_activity("Count", v.clone()).await?;
            Ok(json!([v, r]))
        })
        .orchestrator("Failing", |ctx: OrchestrationContext| async move {
            ctx.call_activity("Boom", Value::Null).await?;
            Err::<Value, _>(OrchestrationError::new("Unreachable", "never"))
        })
        .orchestrator("Flaky", |ctx: OrchestrationContext| async move {
            let a = ctx.call_activity("FirstStep", 1).await?;
            let b = ctx.call_activity("FailsFirst", 2).await?;
            Ok(json!([a, b]))
        })
        .activity("FirstStep", |_ctx, v: Value| async move {
            FIRST_STEP_RUNS.fetch_add(1, Ordering::SeqCst);
            Ok(v)
        })
        .activity("FailsFirst", |_ctx, v: Value| async move {
            if FLAKY_CALLS.fetch_add(1, Ordering::SeqCst) == 0 {
                return Err(perdure_runtime::orchestrations::model::ActivityError::new(
                    "Flaky",
                    "first call fails",
                ));
            }
            Ok(v)
        })
        .activity("Count", |_ctx, v: Value| async move {
            ACTIVITY_RUNS.fetch_add(1, Ordering::Relaxed);
            Ok(v)
        })
        .activity("Boom", |_ctx, _v: Value| async move {
            Err(perdure_runtime::orchestrations::model::ActivityError::new(
                "Boom", "it broke",
            ))
        })
}

async fn start_node(cfg: &NodeConfig) -> Node {
    node_with(cfg, OrchestrationsConfig::default()).await
}

async fn node_with(cfg: &NodeConfig, orch: OrchestrationsConfig) -> Node {
    let registries = Registries {
        entities: Registry::builtin(),
        orchestrations: registry(),
    };
    Node::start(cfg, registries, orch).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_samples_run_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(&config(dir.path())).await;
    let o = node.runtime.orchestrations();

    node.start_orch("HelloSequence", "hello", Value::Null).await;
    assert_eq!(
        node.finish("hello").await,
        (
            RuntimeStatus::Completed,
            Some(json!(["Hello Tokyo!", "Hello Seattle!", "Hello London!"]))
        )
    );
    // every activity's result is in the history exactly once, in order
    let h = o.status("hello", true).await.unwrap().history.unwrap();
    let done: Vec<i32> = h
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::TaskCompleted { scheduled_id, .. } => Some(scheduled_id),
            _ => None,
        })
        .collect();
    assert_eq!(done, vec![0, 1, 2]);

    node.start_orch("FanOutFanIn", "fan", json!(200)).await;
    assert_eq!(
        node.finish("fan").await,
        (RuntimeStatus::Completed, Some(json!(200 * 199 / 2)))
    );

    node.start_orch(
        "CounterAggregation",
        "agg",
        json!({"key": "k1", "adds": 25}),
    )
    .await;
    assert_eq!(
        node.finish("agg").await,
        (RuntimeStatus::Completed, Some(json!(25)))
    );

    node.start_orch("Approval", "ok", json!({"timeout_ms": 60_000}))
        .await;
    o.raise_event("ok", "Approval", Some(json!(true)))
        .await
        .unwrap();
    assert_eq!(
        node.finish("ok").await,
        (RuntimeStatus::Completed, Some(json!("approved")))
    );

    node.start_orch("Approval", "late", json!({"timeout_ms": 300}))
        .await;
    assert_eq!(
        node.finish("late").await,
        (RuntimeStatus::Completed, Some(json!("escalated")))
    );

    node.start_orch(
        "Monitor",
        "mon",
        json!({"counter": "m", "target": 3, "interval_ms": 50, "expiry_ms": 60_000}),
    )
    .await;
    for _ in 0..3 {
        node.runtime
            .entities()
            .signal(perdure_runtime::SignalRequest {
                entity: perdure_types::EntityId::new("counter", "m").unwrap(),
                operation: "add".into(),
                input: Some(json!(1)),
                idempotency_key: None,
            })
            .await
            .unwrap();
    }
    assert_eq!(
        node.finish("mon").await,
        (RuntimeStatus::Completed, Some(json!("reached")))
    );

    node.start_orch(
        "Monitor",
        "mon2",
        json!({"counter": "never", "target": 1, "interval_ms": 50, "expiry_ms": 300}),
    )
    .await;
    assert_eq!(
        node.finish("mon2").await,
        (RuntimeStatus::Completed, Some(json!("expired")))
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_orchestrations_continue_as_new_and_failures() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(&config(dir.path())).await;
    let o = node.runtime.orchestrations();

    node.start_orch("Parent", "parent", json!(10)).await;
    assert_eq!(
        node.finish("parent").await,
        (
            RuntimeStatus::Completed,
            Some(json!([
                45,
                ["Hello Tokyo!", "Hello Seattle!", "Hello London!"]
            ]))
        )
    );
    let child = o.status("parent-child", false).await.unwrap().record;
    assert_eq!(child.status, RuntimeStatus::Completed);
    assert_eq!(child.parent.unwrap().instance_id.as_str(), "parent");

    // continue-as-new: events raised while a generation runs are carried over
    node.start_orch("Counter", "ctr", json!(0)).await;
    for _ in 0..3 {
        o.raise_event("ctr", "Add", Some(json!(1))).await.unwrap();
    }
    assert_eq!(
        node.finish("ctr").await,
        (RuntimeStatus::Completed, Some(json!(3)))
    );

    node.start_orch("Failing", "fails", Value::Null).await;
    let (st, _) = node.finish("fails").await;
    assert_eq!(st, RuntimeStatus::Failed);
    let f = o
        .status("fails", false)
        .await
        .unwrap()
        .record
        .failure
        .unwrap();
    assert_eq!(f.error_type, "Boom");
    assert!(f.message.contains("it broke"), "{f:?}");

    // rewind: the failed activity runs again, the one that succeeded does not
    node.start_orch("Flaky", "flaky", Value::Null).await;
    assert_eq!(node.finish("flaky").await.0, RuntimeStatus::Failed);
    assert_eq!(
        o.rewind("ctr", None).await.unwrap_err().code(),
        "instance_state",
        "only a failed instance is rewound"
    );
    o.rewind("flaky", Some("fixed".into())).await.unwrap();
    assert_eq!(
        node.finish("flaky").await,
        (RuntimeStatus::Completed, Some(json!([1, 2])))
    );
    assert_eq!(
        FIRST_STEP_RUNS.load(Ordering::SeqCst),
        1,
        "the step that succeeded ran once"
    );
    let h = o.status("flaky", true).await.unwrap().history.unwrap();
    assert!(h.iter().any(|e| e.kind_name() == "ExecutionRewound"));
    assert!(!h.iter().any(|e| e.kind_name() == "TaskFailed"));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_management() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(&config(dir.path())).await;
    let o = node.runtime.orchestrations();

    // unknown names and ids write nothing
    let e = o
        .start(StartRequest {
            name: "Nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), "unknown_orchestrator");
    assert_eq!(
        o.status("missing", false).await.unwrap_err().code(),
        "instance_not_found"
    );
    assert_eq!(
        o.raise_event("missing", "Go", None)
            .await
            .unwrap_err()
            .code(),
        "instance_not_found"
    );

    // suspend holds events; resume lets them in
    node.start_orch("Waiter", "w1", Value::Null).await;
    o.suspend("w1", Some("hold".into())).await.unwrap();
    o.raise_event("w1", "Go", Some(json!(7))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        o.status("w1", false).await.unwrap().record.status,
        RuntimeStatus::Suspended
    );
    o.resume("w1", None).await.unwrap();
    assert_eq!(
        node.finish("w1").await,
        (RuntimeStatus::Completed, Some(json!([7, 7])))
    );
    // a finished instance takes no more events, and says so
    assert_eq!(
        o.raise_event("w1", "Go", None).await.unwrap_err().code(),
        "instance_finished"
    );

    // terminate
    node.start_orch("Waiter", "w2", Value::Null).await;
    let dup = o
        .start(StartRequest {
            name: "Waiter".into(),
            instance_id: Some("w2".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(dup.code(), "instance_exists");
    o.terminate("w2", Some(json!("enough")), false)
        .await
        .unwrap();
    assert_eq!(
        node.finish("w2").await,
        (RuntimeStatus::Terminated, Some(json!("enough")))
    );

    // a finished id is replaced by the default policy; a policy replacing nothing refuses
    let refused = o
        .start(StartRequest {
            name: "HelloSequence".into(),
            instance_id: Some("w2".into()),
            policy: ReusePolicy {
                replaceable: vec![],
                ignore_if_running: false,
            },
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "instance_exists");
    node.start_orch("HelloSequence", "w2", Value::Null).await;
    assert_eq!(node.finish("w2").await.0, RuntimeStatus::Completed);

    // restart under a new id
    let again = o.restart("w2", true).await.unwrap();
    assert_ne!(again.instance_id.as_str(), "w2");
    assert_eq!(
        node.finish(again.instance_id.as_str()).await.0,
        RuntimeStatus::Completed
    );

    // query: paging with continuation tokens sees every instance once
    for i in 0..12 {
        node.start_orch("HelloSequence", &format!("q-{i:02}"), Value::Null)
            .await;
    }
    for i in 0..12 {
        node.finish(&format!("q-{i:02}")).await;
    }
    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let page = o
            .query(Query {
                filter: InstanceFilter {
                    prefix: Some("q-".into()),
                    statuses: vec![RuntimeStatus::Completed],
                    ..Default::default()
                },
                page_size: 5,
                continuation: token,
            })
            .await
            .unwrap();
        assert!(page.instances.len() <= 5);
        seen.extend(
            page.instances
                .into_iter()
                .map(|r| r.instance_id.to_string()),
        );
        token = page.continuation;
        if token.is_none() {
            break;
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        (0..12).map(|i| format!("q-{i:02}")).collect::<Vec<_>>()
    );

    // purge: a running instance is refused, finished ones go
    node.start_orch("Waiter", "w3", Value::Null).await;
    assert_eq!(
        o.purge("w3", false).await.unwrap_err().code(),
        "instance_state"
    );
    assert_eq!(o.purge("q-00", false).await.unwrap(), 1);
    assert_eq!(
        o.status("q-00", false).await.unwrap_err().code(),
        "instance_not_found"
    );
    let n = o
        .purge_where(InstanceFilter {
            prefix: Some("q-".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(n, 11);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_in_flight_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let node = start_node(&cfg).await;
    node.start_orch("Waiter", "r1", Value::Null).await;
    node.start_orch("FanOutFanIn", "r2", json!(50)).await;
    node.finish("r2").await;
    node.stop().await;

    let node = start_node(&cfg).await;
    let o = node.runtime.orchestrations();
    assert_eq!(
        o.status("r1", false).await.unwrap().record.status,
        RuntimeStatus::Running
    );
    o.raise_event("r1", "Go", Some(json!("x"))).await.unwrap();
    assert_eq!(
        node.finish("r1").await,
        (RuntimeStatus::Completed, Some(json!(["x", "x"])))
    );
    assert_eq!(
        node.finish("r2").await,
        (RuntimeStatus::Completed, Some(json!(1225)))
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_orchestrators_stay_within_their_bound_and_replay_when_needed() {
    let dir = tempfile::tempdir().unwrap();
    let orch = OrchestrationsConfig {
        max_live: 8, // 2 per partition
        ..Default::default()
    };
    let node = node_with(&config(dir.path()), orch).await;
    let o = node.runtime.orchestrations();
    for i in 0..40 {
        node.start_orch("Waiter", &format!("live-{i}"), Value::Null)
            .await;
    }
    // every one has taken its first turn (waiting for its event)
    for i in 0..40 {
        let t = Instant::now();
        while o
            .status(&format!("live-{i}"), false)
            .await
            .unwrap()
            .record
            .status
            != RuntimeStatus::Running
        {
            assert!(t.elapsed() < Duration::from_secs(10));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let live = o.metrics().live.load(Ordering::Relaxed);
    assert!(
        live <= 8 + 4 * 4,
        "{live} live orchestrators, bound 8 (+ the evictions in flight)"
    );
    let replays_before = o.metrics().replays.load(Ordering::Relaxed);
    for i in 0..40 {
        o.raise_event(&format!("live-{i}"), "Go", Some(json!(i)))
            .await
            .unwrap();
    }
    for i in 0..40 {
        assert_eq!(
            node.finish(&format!("live-{i}")).await,
            (RuntimeStatus::Completed, Some(json!([i, i])))
        );
    }
    assert!(
        o.metrics().replays.load(Ordering::Relaxed) > replays_before,
        "passivated orchestrators were rebuilt from their histories"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_start_waits_and_events_raised_before_it_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(&config(dir.path())).await;
    let o = node.runtime.orchestrations();
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + 400;
    o.start(StartRequest {
        name: "Waiter".into(),
        instance_id: Some("later".into()),
        scheduled_start: Some(at),
        ..Default::default()
    })
    .await
    .unwrap();
    o.raise_event("later", "Go", Some(json!("early")))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let st = o.status("later", true).await.unwrap();
    assert_eq!(st.record.status, RuntimeStatus::Pending, "{st:#?}");
    assert_eq!(
        node.finish("later").await,
        (RuntimeStatus::Completed, Some(json!(["early", "early"])))
    );
    let h = o.status("later", true).await.unwrap().history.unwrap();
    assert!(
        h.iter()
            .filter(|e| matches!(e.kind, EventKind::OrchestratorStarted))
            .all(|e| e.timestamp >= at),
        "no turn ran before the scheduled start: {h:#?}"
    );
    node.stop().await;
}

/// Commands proposed on every partition so far.
fn commands(node: &Node) -> u64 {
    let host = node.runtime.host();
    (0..node.runtime.partitions().count())
        .filter_map(|p| host.metrics(p))
        .map(|m| m.commands())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_and_its_first_turn_are_one_command_and_a_known_id_goes_by_its_reuse_policy() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(&config(dir.path())).await;
    let o = node.runtime.orchestrations();
    // the leaderships' own first commands (retention) are done by now
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = commands(&node);
    node.start_orch("HelloSequence", "once", Value::Null).await;
    assert_eq!(node.finish("once").await.0, RuntimeStatus::Completed);
    // the start with its first turn (scheduling SayHello), then one turn per result
    assert_eq!(commands(&node) - before, 4);
    let first = o.status("once", true).await.unwrap();
    let h = first.history.unwrap();
    assert!(
        matches!(h[0].kind, EventKind::OrchestratorStarted)
            && matches!(h[1].kind, EventKind::ExecutionStarted { .. }),
        "{h:?}"
    );
    assert_eq!(first.record.turns, 4);

    // the same id again: the default policy replaces a finished instance
    node.start_orch("HelloSequence", "once", Value::Null).await;
    let (status, out) = node.finish("once").await;
    assert_eq!(status, RuntimeStatus::Completed);
    assert_eq!(
        out,
        Some(json!(["Hello Tokyo!", "Hello Seattle!", "Hello London!"]))
    );
    let second = o.status("once", false).await.unwrap().record;
    assert_ne!(second.execution_id, first.record.execution_id);
    // while it runs, a start under its id is refused; it is not replaced
    node.start_orch("Waiter", "waits", Value::Null).await;
    match o
        .start(StartRequest {
            name: "HelloSequence".into(),
            instance_id: Some("waits".into()),
            ..Default::default()
        })
        .await
    {
        Err(Error::InstanceExists { status, .. }) => assert_eq!(status, RuntimeStatus::Running),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        o.status("waits", false).await.unwrap().record.name,
        "Waiter"
    );
    node.stop().await;
}
