//! The client's orchestration methods against a real node (started in process with the samples
//! registered): start, status with history, wait, raise event, terminate, suspend, resume,
//! rewind, restart, list with paging, purge one and by filter, and the typed errors.

use perdure_client::{Client, Error, OrchestrationFilter, RuntimeStatus, StartOptions};
use perdure_types::config::NodeConfig;
use serde_json::{json, Value};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::oneshot;

/// A node serving on `127.0.0.1:0` until dropped (its data in a temporary directory).
struct Node {
    url: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), perdure_node::Error>>>,
    _dir: tempfile::TempDir,
}

impl Node {
    async fn start() -> Node {
        let dir = tempfile::tempdir().unwrap();
        let mut config = NodeConfig {
            data_dir: dir.path().join("data"),
            partitions: 4,
            ..NodeConfig::default()
        };
        config.samples.enabled = true;
        config.grpc.addr = "127.0.0.1:0".into();
        // no gRPC workers: a name without Rust code is refused (else it waits for a worker)
        config.grpc.enabled = false;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(perdure_node::run(config, listener, async move {
            let _ = rx.await;
        }));
        let t = Instant::now();
        let http = reqwest::Client::new();
        loop {
            if let Ok(r) = http.get(format!("{url}/readyz")).send().await {
                if r.status() == 200 {
                    break;
                }
            }
            assert!(t.elapsed() < Duration::from_secs(30), "node not ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Node {
            url,
            stop: Some(tx),
            task: Some(task),
            _dir: dir,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(15), task)
            .await
            .expect("node stopped")
            .unwrap()
            .unwrap();
    }
}

async fn until(c: &Client, id: &str, status: RuntimeStatus) {
    let t = Instant::now();
    loop {
        let s = c.orchestration_status(id, false).await.unwrap();
        if s.runtime_status == status {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{id} is {:?}",
            s.runtime_status
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orchestrations_through_the_client() {
    let node = Node::start().await;
    let c = Client::new(&node.url).unwrap();

    // start without an id (the client makes one), wait, read the history
    let started = c
        .start_orchestration("HelloSequence", None, None)
        .await
        .unwrap();
    assert_eq!(started.id.len(), 36);
    assert_eq!(
        started.status_query_get_uri,
        format!(
            "{}/runtime/webhooks/durabletask/instances/{}",
            node.url, started.id
        )
    );
    let done = c
        .wait_for_orchestration(&started.id, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(done.runtime_status, RuntimeStatus::Completed);
    assert_eq!(
        done.output,
        json!(["Hello Tokyo!", "Hello Seattle!", "Hello London!"])
    );
    let with_history = c.orchestration_status(&started.id, true).await.unwrap();
    let events = with_history.history_events.unwrap();
    assert_eq!(events.len() as u64, with_history.history_event_count);
    assert!(events
        .iter()
        .any(|e| e["EventType"] == "TaskCompleted" && e["Result"] == "Hello Tokyo!"));
    assert!(c
        .orchestration_status(&started.id, false)
        .await
        .unwrap()
        .history_events
        .is_none());

    // a start under an id that runs: AlreadyStarted (not retried)
    c.start_orchestration(
        "Approval",
        Some("appr"),
        Some(json!({"timeout_ms": 60_000})),
    )
    .await
    .unwrap();
    let e = c
        .start_orchestration(
            "Approval",
            Some("appr"),
            Some(json!({"timeout_ms": 60_000})),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::AlreadyStarted { instance_id, retried: false, .. } if instance_id == "appr"),
        "{e}"
    );
    assert_eq!((e.status(), e.code()), (Some(409), Some("instance_exists")));

    // a wait that times out answers the status as it is
    let t = Instant::now();
    let running = c
        .wait_for_orchestration("appr", Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(running.runtime_status, RuntimeStatus::Running);
    assert!(t.elapsed() < Duration::from_secs(5));

    // raise the event; the instance finishes; then events are refused as finished
    c.raise_event("appr", "Approval", Some(json!(true)))
        .await
        .unwrap();
    let done = c
        .wait_for_orchestration("appr", Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(done.output, json!("approved"));
    let e = c
        .raise_event("appr", "Approval", Some(json!(true)))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InstanceFinished { .. }), "{e}");
    let e = c.terminate("appr", Some("late"), false).await.unwrap_err();
    assert!(matches!(e, Error::InstanceFinished { .. }), "{e}");
    // unknown instances: InstanceNotFound everywhere
    for e in [
        c.orchestration_status("nope", false).await.unwrap_err(),
        c.raise_event("nope", "x", None).await.unwrap_err(),
        c.suspend("nope", None).await.unwrap_err(),
        c.purge_orchestration("nope", false).await.unwrap_err(),
        c.restart("nope", true).await.unwrap_err(),
    ] {
        assert!(
            matches!(&e, Error::InstanceNotFound { instance_id } if instance_id == "nope"),
            "{e}"
        );
    }
    // bad ids are refused before sending
    assert!(matches!(
        c.orchestration_status("@x", false).await,
        Err(Error::InvalidInstanceId(_))
    ));

    // suspend, resume, rewind (not failed: 410), terminate with a reason
    c.start_orchestration(
        "Approval",
        Some("mgmt"),
        Some(json!({"timeout_ms": 60_000})),
    )
    .await
    .unwrap();
    c.suspend("mgmt", Some("hold")).await.unwrap();
    until(&c, "mgmt", RuntimeStatus::Suspended).await;
    c.resume("mgmt", None).await.unwrap();
    until(&c, "mgmt", RuntimeStatus::Running).await;
    let e = c.rewind("mgmt", Some("why")).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(410), Some("instance_state")));
    let e = c.purge_orchestration("mgmt", false).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(409), Some("instance_state")));
    c.terminate("mgmt", Some("enough"), true).await.unwrap();
    let done = c
        .wait_for_orchestration("mgmt", Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(
        (done.runtime_status, done.output),
        (RuntimeStatus::Terminated, json!("enough"))
    );

    // restart under a new id and under the same one
    let again = c.restart("mgmt", true).await.unwrap();
    assert_ne!(again.id, "mgmt");
    let s = c.orchestration_status(&again.id, false).await.unwrap();
    assert_eq!(s.input, Some(json!({"timeout_ms": 60_000})));
    let same = c.restart("mgmt", false).await.unwrap();
    assert_eq!(same.id, "mgmt");
    until(&c, "mgmt", RuntimeStatus::Running).await;

    // a scheduled start waits as Pending; a reuse policy replacing nothing refuses
    let later = SystemTime::now() + Duration::from_secs(3600);
    c.start_orchestration_with(
        "HelloSequence",
        Some("later"),
        None,
        &StartOptions {
            scheduled_start: Some(later),
            version: Some("v2".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        c.orchestration_status("later", false)
            .await
            .unwrap()
            .runtime_status,
        RuntimeStatus::Pending
    );
    c.start_orchestration("HelloSequence", Some("once"), None)
        .await
        .unwrap();
    c.wait_for_orchestration("once", Duration::from_secs(20))
        .await
        .unwrap();
    let e = c
        .start_orchestration_with(
            "HelloSequence",
            Some("once"),
            None,
            &StartOptions {
                reuse_policy: Some(vec![]),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::AlreadyStarted { .. }), "{e}");
    let e = c
        .start_orchestration("NoSuchOrchestrator", None, None)
        .await
        .unwrap_err();
    assert_eq!(
        (e.status(), e.code()),
        (Some(400), Some("unknown_orchestrator"))
    );

    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_pages_and_purges() {
    let node = Node::start().await;
    let c = Client::new(&node.url).unwrap();
    let ids: Vec<String> = (0..7).map(|i| format!("l-{i}")).collect();
    for id in &ids {
        c.start_orchestration("FanOutFanIn", Some(id), Some(json!(4)))
            .await
            .unwrap();
    }
    for id in &ids {
        let s = c
            .wait_for_orchestration(id, Duration::from_secs(20))
            .await
            .unwrap();
        assert_eq!(s.output, json!(6));
    }
    c.start_orchestration(
        "Approval",
        Some("l-running"),
        Some(json!({"timeout_ms": 60_000})),
    )
    .await
    .unwrap();

    let filter = OrchestrationFilter {
        instance_id_prefix: Some("l-".into()),
        runtime_status: vec![RuntimeStatus::Completed],
        ..Default::default()
    };
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..20 {
        let page = c
            .list_orchestrations(&filter, Some(2), token.as_deref())
            .await
            .unwrap();
        assert!(page.instances.len() <= 2);
        seen.extend(page.instances.into_iter().map(|s| s.instance_id));
        token = page.continuation;
        if token.is_none() {
            break;
        }
    }
    assert!(token.is_none(), "paging never ended");
    seen.sort();
    assert_eq!(seen, ids);
    let everything = c
        .list_orchestrations(&OrchestrationFilter::default(), None, None)
        .await
        .unwrap();
    assert_eq!(everything.instances.len(), 8);
    assert_eq!(everything.continuation, None);
    let future = OrchestrationFilter {
        created_from: Some(SystemTime::now() + Duration::from_secs(3600)),
        ..Default::default()
    };
    assert!(c
        .list_orchestrations(&future, None, None)
        .await
        .unwrap()
        .instances
        .is_empty());

    // purge one, then by filter (the running one stays), then nothing is left to purge
    assert_eq!(c.purge_orchestration("l-0", false).await.unwrap(), 1);
    let by_prefix = OrchestrationFilter {
        instance_id_prefix: Some("l-".into()),
        ..Default::default()
    };
    assert_eq!(c.purge_orchestrations(&by_prefix).await.unwrap(), 6);
    assert_eq!(c.purge_orchestrations(&by_prefix).await.unwrap(), 0);
    let left = c.list_orchestrations(&by_prefix, None, None).await.unwrap();
    let left: Vec<&str> = left
        .instances
        .iter()
        .map(|s| s.instance_id.as_str())
        .collect();
    assert_eq!(left, ["l-running"]);
    assert_eq!(
        c.orchestration_status("l-running", false)
            .await
            .unwrap()
            .input,
        Some(json!({"timeout_ms": 60_000}))
    );
    let _: Value = c.cluster_status().await.unwrap();
    node.stop().await;
}
