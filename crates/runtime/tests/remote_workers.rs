//! Orchestrators and activities run by remote workers (what the gRPC protocol's workers do),
//! driven here by a worker written in Rust against the facade: dispatch shapes, completion
//! tokens, leases, sessions, filters and terminate.

mod common;

use common::Node;
use perdure_runtime::entities::Registry;
use perdure_runtime::orchestrations::model::OrchestrationRegistry;
use perdure_runtime::orchestrations::{Orchestrations, StartRequest};
use perdure_runtime::remote::{
    Dispatched, NameFilter, Outcome, RemoteConfig, RemoteWork, WorkFilter, WorkerSession,
    WorkerSpec,
};
use perdure_runtime::{Error, Registries};
use perdure_types::config::OrchestrationsConfig;
use perdure_types::orchestration::{
    Action, EventKind, FailureDetails, HistoryEvent, RuntimeStatus, TurnOutput,
};
use serde_json::json;
use std::time::Duration;

async fn node(dir: &std::path::Path, lease: Duration) -> Node {
    let cfg = common::config(dir);
    let node = Node::start(
        &cfg,
        Registries {
            entities: Registry::builtin(),
            orchestrations: OrchestrationRegistry::default(),
        },
        OrchestrationsConfig::default(),
    )
    .await;
    node.runtime
        .orchestrations()
        .serve_remote_workers(RemoteConfig {
            lease,
            max_work_item_bytes: 64 << 10,
        });
    node
}

fn spec(filter: Option<WorkFilter>) -> WorkerSpec {
    WorkerSpec {
        max_orchestrators: 10,
        max_activities: 10,
        filter,
        peer: "test".into(),
    }
}

async fn next(s: &mut WorkerSession) -> Dispatched {
    tokio::time::timeout(Duration::from_secs(20), s.next())
        .await
        .expect("no work item within 20 s")
        .expect("the session ended")
}

async fn start(o: &Orchestrations, name: &str, id: &str, input: serde_json::Value) {
    o.start(StartRequest {
        name: name.into(),
        instance_id: Some(id.into()),
        input: Some(input),
        ..Default::default()
    })
    .await
    .unwrap();
}

/// The orchestrator "Chain" as a replay engine would run it: one activity "Echo" with the
/// input, then completes with its result.
fn chain(past: &[HistoryEvent], new: &[HistoryEvent]) -> TurnOutput {
    let all: Vec<&HistoryEvent> = past.iter().chain(new).collect();
    let input = all.iter().find_map(|e| match &e.kind {
        EventKind::ExecutionStarted { input, .. } => Some(input.clone()),
        _ => None,
    });
    let scheduled = all
        .iter()
        .any(|e| matches!(e.kind, EventKind::TaskScheduled { .. }));
    let result = all.iter().find_map(|e| match &e.kind {
        EventKind::TaskCompleted { result, .. } => Some(result.clone()),
        _ => None,
    });
    let actions = match (result, scheduled) {
        (Some(r), _) => vec![Action::CompleteOrchestration {
            id: 2,
            status: RuntimeStatus::Completed,
            result: r,
            failure: None,
            carryover_events: vec![],
        }],
        (None, false) => vec![Action::ScheduleTask {
            id: 1,
            name: "Echo".into(),
            input: input.flatten(),
        }],
        (None, true) => vec![],
    };
    TurnOutput {
        actions,
        custom_status: Some("\"working\"".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_orchestrator_and_activity_run_with_the_protocols_dispatch_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path(), Duration::from_secs(60)).await;
    let o = node.runtime.orchestrations();
    start(o, "Chain", "r-1", json!("hi")).await;
    // nobody took it yet: pending
    let s = o.status("r-1", false).await.unwrap();
    assert_eq!(s.record.status, RuntimeStatus::Pending);

    let mut w = o.connect_worker(spec(None)).unwrap();
    assert_eq!(o.workers().len(), 1);
    // first dispatch: no past, [OrchestratorStarted, ExecutionStarted]
    let d = next(&mut w).await;
    let RemoteWork::Orchestrator(turn) = &d.work else {
        panic!("{d:?}")
    };
    assert!(turn.past.is_empty());
    assert!(matches!(turn.new[0].kind, EventKind::OrchestratorStarted));
    assert!(matches!(
        turn.new[1].kind,
        EventKind::ExecutionStarted { .. }
    ));
    assert_eq!(turn.new.len(), 2);
    o.complete_work(
        &d.token,
        Outcome::Orchestrator(chain(&turn.past, &turn.new)),
    )
    .await
    .unwrap();
    // a token is spent once
    let again = o
        .complete_work(&d.token, Outcome::Orchestrator(TurnOutput::default()))
        .await;
    assert!(matches!(again, Err(Error::UnknownToken(_))), "{again:?}");

    // the activity
    let d = next(&mut w).await;
    let RemoteWork::Activity(a) = &d.work else {
        panic!("{d:?}")
    };
    assert_eq!((a.name.as_str(), a.task_id), ("Echo", 1));
    assert_eq!(a.input.as_deref(), Some("\"hi\""));
    // the instance runs now, with the worker's custom status
    let s = o.status("r-1", false).await.unwrap();
    assert_eq!(s.record.status, RuntimeStatus::Running);
    assert_eq!(s.record.custom_status.as_deref(), Some("\"working\""));
    o.complete_work(&d.token, Outcome::Activity(Ok(Some("\"HI\"".into()))))
        .await
        .unwrap();

    // second turn: the committed history as past, [OrchestratorStarted, TaskCompleted] new
    let d = next(&mut w).await;
    let RemoteWork::Orchestrator(turn) = &d.work else {
        panic!("{d:?}")
    };
    let kinds: Vec<&str> = turn.past.iter().map(|e| e.kind_name()).collect();
    assert_eq!(
        kinds,
        [
            "OrchestratorStarted",
            "ExecutionStarted",
            "TaskScheduled",
            "OrchestratorCompleted"
        ]
    );
    assert_eq!(turn.past[2].event_id, 1);
    let kinds: Vec<&str> = turn.new.iter().map(|e| e.kind_name()).collect();
    assert_eq!(kinds, ["OrchestratorStarted", "TaskCompleted"]);
    o.complete_work(
        &d.token,
        Outcome::Orchestrator(chain(&turn.past, &turn.new)),
    )
    .await
    .unwrap();
    let (status, out) = node.finish("r-1").await;
    assert_eq!((status, out), (RuntimeStatus::Completed, Some(json!("HI"))));
    drop(w);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_a_worker_drops_abandons_or_sits_on_goes_to_another_worker() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path(), Duration::from_millis(1500)).await;
    let o = node.runtime.orchestrations();
    start(o, "Chain", "r-2", json!(1)).await;

    // a worker takes the turn and goes away: the turn goes to the next worker
    let mut w1 = o.connect_worker(spec(None)).unwrap();
    let d1 = next(&mut w1).await;
    drop(w1);
    let mut w2 = o.connect_worker(spec(None)).unwrap();
    let d2 = next(&mut w2).await;
    assert_ne!(d1.token, d2.token);
    assert_eq!(d1.work, d2.work);
    // the first worker's token completes nothing now
    assert!(o
        .complete_work(&d1.token, Outcome::Orchestrator(TurnOutput::default()))
        .await
        .is_err());
    // an abandon hands it out again at once
    o.abandon_work(&d2.token).await.unwrap();
    let d3 = next(&mut w2).await;
    assert_eq!(d3.work, d2.work);
    let RemoteWork::Orchestrator(turn) = &d3.work else {
        panic!()
    };
    o.complete_work(
        &d3.token,
        Outcome::Orchestrator(chain(&turn.past, &turn.new)),
    )
    .await
    .unwrap();
    // the activity: held and never completed, it comes back after the lease (1.5 s)
    let held = next(&mut w2).await;
    assert!(matches!(held.work, RemoteWork::Activity(_)));
    let t = std::time::Instant::now();
    let back = next(&mut w2).await;
    assert!(
        t.elapsed() >= Duration::from_millis(1000),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(back.work, held.work);
    // a failure is recorded as the activity's failure: the instance decides (here: a replay
    // engine that sees no completion waits; the test completes it by hand)
    o.complete_work(
        &back.token,
        Outcome::Activity(Err(FailureDetails::new("ValueError", "boom"))),
    )
    .await
    .unwrap();
    let d = next(&mut w2).await;
    let RemoteWork::Orchestrator(turn) = &d.work else {
        panic!()
    };
    assert!(turn.new.iter().any(
        |e| matches!(&e.kind, EventKind::TaskFailed { failure, .. } if failure.message == "boom")
    ));
    o.complete_work(
        &d.token,
        Outcome::Orchestrator(TurnOutput {
            actions: vec![Action::CompleteOrchestration {
                id: 2,
                status: RuntimeStatus::Failed,
                result: None,
                failure: Some(FailureDetails::new(
                    "TaskFailedError",
                    "Activity task #1 failed: boom",
                )),
                carryover_events: vec![],
            }],
            custom_status: None,
        }),
    )
    .await
    .unwrap();
    let s = o.wait("r-2", Duration::from_secs(20), false).await.unwrap();
    assert_eq!(s.record.status, RuntimeStatus::Failed);
    assert_eq!(
        s.record.failure.unwrap().message,
        "Activity task #1 failed: boom"
    );
    drop(w2);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_pick_the_worker_and_a_terminate_does_not_wait_for_one() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path(), Duration::from_secs(60)).await;
    let o = node.runtime.orchestrations();
    let only = |name: &str| WorkFilter {
        orchestrations: vec![NameFilter {
            name: name.into(),
            versions: vec![],
        }],
        ..Default::default()
    };
    let mut other = o.connect_worker(spec(Some(only("Other")))).unwrap();
    start(o, "Chain", "r-3", json!(1)).await;
    start(o, "Other", "r-4", json!(1)).await;
    let d = next(&mut other).await;
    assert_eq!(d.work.subject(), "r-4");
    // Chain is not for this worker: it stays pending
    assert!(
        tokio::time::timeout(Duration::from_millis(500), other.next())
            .await
            .is_err()
    );
    assert_eq!(
        o.status("r-3", false).await.unwrap().record.status,
        RuntimeStatus::Pending
    );
    // a terminate ends it although no worker takes its turn, and one held by a worker too
    o.terminate("r-3", Some(json!("stop")), false)
        .await
        .unwrap();
    o.terminate("r-4", Some(json!("stop too")), false)
        .await
        .unwrap();
    for id in ["r-3", "r-4"] {
        let s = o.wait(id, Duration::from_secs(20), false).await.unwrap();
        assert_eq!(s.record.status, RuntimeStatus::Terminated, "{id}");
    }
    // the withdrawn turn's token completes nothing
    assert!(o
        .complete_work(&d.token, Outcome::Orchestrator(TurnOutput::default()))
        .await
        .is_err());
    // a history over what a worker receives fails the instance, naming why
    let big = "x".repeat(70 << 10);
    let mut w = o.connect_worker(spec(None)).unwrap();
    start(o, "Chain", "r-5", json!(big)).await;
    let s = o.wait("r-5", Duration::from_secs(20), false).await.unwrap();
    assert_eq!(s.record.status, RuntimeStatus::Failed);
    let f = s.record.failure.unwrap();
    assert_eq!(f.error_type, "HistoryTooLarge", "{f:?}");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), w.next())
            .await
            .is_err(),
        "nothing was dispatched"
    );
    drop((w, other));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entities_without_a_rust_type_run_on_workers_one_batch_at_a_time() {
    use perdure_runtime::entities::SignalRequest;
    use perdure_runtime::remote::{EntityAction, EntityBatchOutcome};
    use perdure_types::EntityId;
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path(), Duration::from_secs(60)).await;
    let (o, e) = (node.runtime.orchestrations(), node.runtime.entities());
    let tally = EntityId::new("tally", "a").unwrap();
    // a signal is acknowledged once durable, before any worker runs it
    for n in [2, 3] {
        e.signal(SignalRequest {
            entity: tally.clone(),
            operation: "add".into(),
            input: Some(json!(n)),
            idempotency_key: None,
        })
        .await
        .unwrap();
    }
    assert_eq!(e.get(&tally).await.unwrap(), None);
    // a worker gets the operations as batches (one at a time: the next comes only after the
    // previous one's outcome committed), with the state each time
    let mut w = o.connect_worker(spec(None)).unwrap();
    let mut state: Option<i64> = None;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let d = next(&mut w).await;
        let RemoteWork::Entity(batch) = &d.work else {
            panic!("{d:?}")
        };
        assert_eq!(batch.entity, tally);
        assert_eq!(
            batch.state.as_deref().map(|s| s.parse::<i64>().unwrap()),
            state
        );
        let mut results = Vec::new();
        for op in &batch.operations {
            assert_eq!(op.operation, "add");
            let n: i64 = op.input.as_deref().unwrap().parse().unwrap();
            seen.push(n);
            state = Some(state.unwrap_or(0) + n);
            results.push(Ok(None));
        }
        // the last batch also signals another worker-served entity
        let actions = if seen.len() == 2 {
            vec![EntityAction::Signal {
                target: "@audit@a".into(),
                operation: "note".into(),
                input: Some("\"done\"".into()),
                scheduled_time: None,
            }]
        } else {
            vec![]
        };
        o.complete_work(
            &d.token,
            Outcome::Entity(EntityBatchOutcome {
                results,
                state: state.map(|s| s.to_string()),
                actions,
            }),
        )
        .await
        .unwrap();
    }
    assert_eq!(seen, [2, 3]);
    // a completion is answered before its batch commits: the state shows once it did
    let t = std::time::Instant::now();
    while e.get(&tally).await.unwrap() != Some(json!(5)) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the batch never committed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // the action reached the other entity
    let d = next(&mut w).await;
    let RemoteWork::Entity(batch) = &d.work else {
        panic!("{d:?}")
    };
    assert_eq!(batch.entity.canonical(), "@audit@a");
    assert_eq!(batch.operations[0].input.as_deref(), Some("\"done\""));
    o.complete_work(
        &d.token,
        Outcome::Entity(EntityBatchOutcome {
            results: vec![Ok(None)],
            state: None,
            actions: vec![],
        }),
    )
    .await
    .unwrap();
    // a call is answered with the worker's result or failure
    let calls = tokio::spawn({
        let rt = node.runtime.entities().clone();
        let tally = tally.clone();
        async move {
            let ok = rt.call(tally.clone(), "get", None).await;
            let bad = rt.call(tally, "explode", None).await;
            (ok, bad)
        }
    });
    for answer in [
        Ok(Some("5".to_string())),
        Err(FailureDetails::new("ValueError", "no such operation")),
    ] {
        let d = next(&mut w).await;
        o.complete_work(
            &d.token,
            Outcome::Entity(EntityBatchOutcome {
                results: vec![answer],
                state: Some("5".into()),
                actions: vec![],
            }),
        )
        .await
        .unwrap();
    }
    let (ok, bad) = calls.await.unwrap();
    assert_eq!(ok.unwrap(), json!(5));
    let bad = bad.unwrap_err().to_string();
    assert!(bad.contains("no such operation"), "{bad}");
    // a worker that answers nonsense (a state that is not JSON) fails the batch's operations
    // and changes nothing
    let calls = tokio::spawn({
        let rt = node.runtime.entities().clone();
        let tally = tally.clone();
        async move { rt.call(tally, "add", Some(json!(1))).await }
    });
    let d = next(&mut w).await;
    o.complete_work(
        &d.token,
        Outcome::Entity(EntityBatchOutcome {
            results: vec![Ok(None)],
            state: Some("{not json".into()),
            actions: vec![],
        }),
    )
    .await
    .unwrap();
    assert!(calls.await.unwrap().is_err());
    assert_eq!(e.get(&tally).await.unwrap(), Some(json!(5)));
    drop(w);
    node.stop().await;
}
