//! The Durable Task gRPC interface of the real binary, through the generated tonic client (the
//! SDKs' calls): start, get, the waits (and `DEADLINE_EXCEEDED` at the caller's deadline), raise
//! event, terminate, suspend and resume, query paging, instance id listing, purge, history
//! streaming, restart, the errors the SDKs rely on (`ALREADY_EXISTS`, `NOT_FOUND`), entity
//! signal and read, malformed messages (refused, the node keeps serving) and a graceful stop.

mod common;

use common::cluster;
use perdure_grpc::proto;
use perdure_grpc::proto::history_event::EventType;
use perdure_grpc::proto::task_hub_sidecar_service_client::TaskHubSidecarServiceClient;
use perdure_harness::{Node, NodeSpec};
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic::{Code, Request};

type Client = TaskHubSidecarServiceClient<Channel>;

const PENDING: i32 = proto::OrchestrationStatus::Pending as i32;
const COMPLETED: i32 = proto::OrchestrationStatus::Completed as i32;
const TERMINATED: i32 = proto::OrchestrationStatus::Terminated as i32;
const SUSPENDED: i32 = proto::OrchestrationStatus::Suspended as i32;

/// A single node with the samples on and gRPC on a port of its own.
fn single_node(dir: &std::path::Path) -> (Node, String) {
    let spec = NodeSpec::new(1, 0, dir).unwrap().with_grpc_port().unwrap();
    let mut config = spec.config(&[]);
    config.partitions = 4;
    config.samples.enabled = true;
    spec.write_config(&config).unwrap();
    let url = format!("http://{}", spec.grpc_addr());
    let mut node = Node::new(spec, cluster::test_bin());
    node.start(&Default::default()).unwrap();
    node.wait_ready(Duration::from_secs(30)).unwrap();
    (node, url)
}

async fn connect(url: &str) -> Client {
    let t = Instant::now();
    loop {
        match Client::connect(url.to_string()).await {
            Ok(c) => return c,
            Err(e) => assert!(t.elapsed() < Duration::from_secs(10), "connect: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn start(c: &mut Client, name: &str, id: &str, input: &str) -> Result<String, tonic::Status> {
    c.start_instance(proto::CreateInstanceRequest {
        instance_id: id.into(),
        name: name.into(),
        input: Some(input.into()),
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner().instance_id)
}

fn get_req(id: &str, payloads: bool, timeout: Duration) -> Request<proto::GetInstanceRequest> {
    let mut r = Request::new(proto::GetInstanceRequest {
        instance_id: id.into(),
        get_inputs_and_outputs: payloads,
    });
    r.set_timeout(timeout);
    r
}

/// Waits for completion (payloads on); the state.
async fn finished(c: &mut Client, id: &str) -> proto::OrchestrationState {
    let r = c
        .wait_for_instance_completion(get_req(id, true, Duration::from_secs(30)))
        .await
        .unwrap()
        .into_inner();
    assert!(r.exists, "{id}");
    r.orchestration_state.unwrap()
}

async fn state(c: &mut Client, id: &str) -> Option<proto::OrchestrationState> {
    let r = c
        .get_instance(proto::GetInstanceRequest {
            instance_id: id.into(),
            get_inputs_and_outputs: true,
        })
        .await
        .unwrap()
        .into_inner();
    r.exists.then(|| r.orchestration_state.unwrap())
}

/// Polls until `id` has `status` (10 s at most).
async fn until_status(c: &mut Client, id: &str, status: i32) {
    let t = Instant::now();
    loop {
        if state(c, id).await.map(|s| s.orchestration_status) == Some(status) {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{id} never reached {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const HELLO5: &str =
    r#"["Hello Tokyo!","Hello Seattle!","Hello London!","Hello Paris!","Hello Cairo!"]"#;
const NEVER: &str = r#"{"timeout_ms": 600000}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_client_rpcs_manage_instances_as_the_sdks_expect() {
    let dir = tempfile::tempdir().unwrap();
    let (mut node, url) = single_node(dir.path());
    let mut c = connect(&url).await;

    // start, get, wait for completion with the right output
    assert_eq!(
        start(&mut c, "HelloSequence5", "h1", "null").await.unwrap(),
        "h1"
    );
    let s = finished(&mut c, "h1").await;
    assert_eq!(s.orchestration_status, COMPLETED);
    let out: serde_json::Value = serde_json::from_str(s.output.as_deref().unwrap()).unwrap();
    assert_eq!(
        out,
        serde_json::from_str::<serde_json::Value>(HELLO5).unwrap()
    );
    assert!(s.created_timestamp.is_some() && s.completed_timestamp.is_some());
    let plain = c
        .get_instance(proto::GetInstanceRequest {
            instance_id: "h1".into(),
            get_inputs_and_outputs: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(plain.exists);
    assert_eq!(
        plain.orchestration_state.unwrap().output,
        None,
        "outputs only when asked"
    );
    assert!(
        state(&mut c, "nobody").await.is_none(),
        "unknown: exists = false"
    );

    // a duplicate start without a policy, and with one that replaces a completed instance
    let dup = start(&mut c, "HelloSequence5", "h1", "null")
        .await
        .unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists, "{dup:?}");
    c.start_instance(proto::CreateInstanceRequest {
        instance_id: "h1".into(),
        name: "HelloSequence5".into(),
        orchestration_id_reuse_policy: Some(proto::OrchestrationIdReusePolicy {
            replaceable_status: vec![COMPLETED],
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(finished(&mut c, "h1").await.orchestration_status, COMPLETED);

    // a wait on an instance that never finishes answers DEADLINE_EXCEEDED at the deadline
    start(&mut c, "Approval", "a1", NEVER).await.unwrap();
    let t = Instant::now();
    let e = c
        .wait_for_instance_completion(get_req("a1", false, Duration::from_secs(1)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    let started = c
        .wait_for_instance_start(get_req("a1", false, Duration::from_secs(10)))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(
        started.orchestration_state.unwrap().orchestration_status,
        PENDING
    );
    // raising the event completes it; an unknown instance is NOT_FOUND
    c.raise_event(proto::RaiseEventRequest {
        instance_id: "a1".into(),
        name: "Approval".into(),
        input: Some("true".into()),
    })
    .await
    .unwrap();
    assert_eq!(
        finished(&mut c, "a1").await.output.as_deref(),
        Some("\"approved\"")
    );
    let e = c
        .raise_event(proto::RaiseEventRequest {
            instance_id: "nobody".into(),
            name: "Approval".into(),
            input: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    // an event for a finished instance is dropped
    c.raise_event(proto::RaiseEventRequest {
        instance_id: "a1".into(),
        name: "Approval".into(),
        input: Some("false".into()),
    })
    .await
    .unwrap();

    // suspend (twice: a no-op), events held, resume; resume of a running one is a no-op
    start(&mut c, "Approval", "s1", NEVER).await.unwrap();
    until_status(&mut c, "s1", proto::OrchestrationStatus::Running as i32).await;
    c.resume_instance(proto::ResumeRequest {
        instance_id: "s1".into(),
        reason: None,
    })
    .await
    .unwrap();
    for _ in 0..2 {
        c.suspend_instance(proto::SuspendRequest {
            instance_id: "s1".into(),
            reason: Some("hold".into()),
        })
        .await
        .unwrap();
        until_status(&mut c, "s1", SUSPENDED).await;
    }
    c.raise_event(proto::RaiseEventRequest {
        instance_id: "s1".into(),
        name: "Approval".into(),
        input: Some("false".into()),
    })
    .await
    .unwrap();
    let e = c
        .wait_for_instance_completion(get_req("s1", false, Duration::from_secs(1)))
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Code::DeadlineExceeded,
        "held while suspended: {e:?}"
    );
    c.resume_instance(proto::ResumeRequest {
        instance_id: "s1".into(),
        reason: None,
    })
    .await
    .unwrap();
    assert_eq!(
        finished(&mut c, "s1").await.output.as_deref(),
        Some("\"rejected\"")
    );
    let e = c
        .suspend_instance(proto::SuspendRequest {
            instance_id: "nobody".into(),
            reason: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // terminate with an output; again, and an unknown id: no-ops
    start(&mut c, "Approval", "t1", NEVER).await.unwrap();
    for id in ["t1", "t1", "nobody"] {
        c.terminate_instance(proto::TerminateRequest {
            instance_id: id.into(),
            output: Some("\"stop\"".into()),
            recursive: true,
        })
        .await
        .unwrap();
    }
    let s = finished(&mut c, "t1").await;
    assert_eq!(s.orchestration_status, TERMINATED);
    assert_eq!(s.output.as_deref(), Some("\"stop\""));

    // query paging: 3 instances, pages of 2 -> a token, then the rest
    for i in 0..3 {
        start(&mut c, "HelloSequence5", &format!("page-{i}"), "null")
            .await
            .unwrap();
    }
    for i in 0..3 {
        finished(&mut c, &format!("page-{i}")).await;
    }
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let r = c
            .query_instances(proto::QueryInstancesRequest {
                query: Some(proto::InstanceQuery {
                    max_instance_count: 2,
                    instance_id_prefix: Some("page-".into()),
                    continuation_token: token.clone(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(r.orchestration_state.len() <= 2);
        if pages == 1 {
            assert_eq!(r.orchestration_state.len(), 2);
            assert!(
                r.continuation_token.is_some(),
                "a first page of 2 of 3 has a token"
            );
        }
        seen.extend(r.orchestration_state.into_iter().map(|s| s.instance_id));
        match r.continuation_token.filter(|t| !t.is_empty() && t != "0") {
            Some(t) => token = Some(t),
            None => break,
        }
        assert!(pages < 20);
    }
    seen.sort();
    assert_eq!(seen, ["page-0", "page-1", "page-2"]);

    // instance ids of finished instances, by completion time, the token holding the last id
    let all = c
        .list_instance_ids(proto::ListInstanceIdsRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(all.last_instance_key.is_none(), "one page holds them all");
    for id in ["h1", "a1", "s1", "t1", "page-0", "page-2"] {
        assert!(
            all.instance_ids.iter().any(|x| x == id),
            "{id} in {:?}",
            all.instance_ids
        );
    }
    let mut paged = Vec::new();
    let mut key = None;
    loop {
        let r = c
            .list_instance_ids(proto::ListInstanceIdsRequest {
                page_size: 2,
                last_instance_key: key.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        paged.extend(r.instance_ids.clone());
        match r.last_instance_key {
            Some(k) => {
                assert!(k.contains(r.instance_ids.last().unwrap().as_str()), "{k}");
                key = Some(k);
            }
            None => break,
        }
    }
    assert_eq!(paged, all.instance_ids);

    // history: NOT_FOUND for an unknown instance; chunks of events in order
    let e = c
        .stream_instance_history(proto::StreamInstanceHistoryRequest {
            instance_id: "nobody".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let mut stream = c
        .stream_instance_history(proto::StreamInstanceHistoryRequest {
            instance_id: "page-0".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut events = Vec::new();
    while let Some(chunk) = stream.message().await.unwrap() {
        events.extend(chunk.events);
    }
    let kinds: Vec<&EventType> = events
        .iter()
        .filter_map(|e| e.event_type.as_ref())
        .collect();
    assert!(
        matches!(kinds.first(), Some(EventType::OrchestratorStarted(_))),
        "{kinds:?}"
    );
    match kinds.get(1) {
        Some(EventType::ExecutionStarted(s)) => {
            assert_eq!(s.name, "HelloSequence5");
            assert_eq!(
                s.orchestration_instance.as_ref().unwrap().instance_id,
                "page-0"
            );
        }
        other => panic!("second event {other:?}"),
    }
    let scheduled = kinds
        .iter()
        .filter(|k| matches!(k, EventType::TaskScheduled(_)))
        .count();
    let completed = kinds
        .iter()
        .filter(|k| matches!(k, EventType::TaskCompleted(_)))
        .count();
    assert_eq!((scheduled, completed), (5, 5));
    // perdure's Rust orchestrators write executionCompleted before the turn's orchestratorCompleted
    assert!(
        kinds[kinds.len().saturating_sub(2)..]
            .iter()
            .any(|k| matches!(k, EventType::ExecutionCompleted(_))),
        "{kinds:?}"
    );

    // restart under a new id; rewind of a completed instance is refused
    let new_id = c
        .restart_instance(proto::RestartInstanceRequest {
            instance_id: "page-1".into(),
            restart_with_new_instance_id: true,
        })
        .await
        .unwrap()
        .into_inner()
        .instance_id;
    assert_ne!(new_id, "page-1");
    assert_eq!(
        finished(&mut c, &new_id).await.orchestration_status,
        COMPLETED
    );
    let e = c
        .rewind_instance(proto::RewindInstanceRequest {
            instance_id: "page-1".into(),
            reason: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");

    // purge: one (finished: 1; running or unknown: 0), then by filter
    start(&mut c, "Approval", "running", NEVER).await.unwrap();
    let purge_one = |id: &str| proto::PurgeInstancesRequest {
        request: Some(proto::purge_instances_request::Request::InstanceId(
            id.into(),
        )),
        recursive: true,
        is_orchestration: true,
    };
    for (id, n) in [("page-0", 1), ("page-0", 0), ("running", 0), ("nobody", 0)] {
        let r = c.purge_instances(purge_one(id)).await.unwrap().into_inner();
        assert_eq!(r.deleted_instance_count, n, "{id}");
        assert_eq!(r.is_complete, Some(true));
    }
    assert!(state(&mut c, "page-0").await.is_none());
    let r = c
        .purge_instances(proto::PurgeInstancesRequest {
            request: Some(
                proto::purge_instances_request::Request::PurgeInstanceFilter(
                    proto::PurgeInstanceFilter {
                        runtime_status: vec![COMPLETED],
                        ..Default::default()
                    },
                ),
            ),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.deleted_instance_count >= 4, "{r:?}");
    assert!(state(&mut c, "h1").await.is_none());
    assert!(
        state(&mut c, "running").await.is_some(),
        "a running instance stays"
    );

    // entities: signal, then read
    c.signal_entity(proto::SignalEntityRequest {
        instance_id: "@counter@k1".into(),
        name: "add".into(),
        input: Some("5".into()),
        request_id: "req-1".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let e = c
        .get_entity(proto::GetEntityRequest {
            instance_id: "@counter@k1".into(),
            include_state: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(e.exists);
    assert_eq!(e.entity.unwrap().serialized_state.as_deref(), Some("5"));
    let never = c
        .get_entity(proto::GetEntityRequest {
            instance_id: "@counter@never".into(),
            include_state: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!never.exists);

    // a worker's hello is answered
    c.hello(()).await.unwrap();

    node.stop(Duration::from_secs(20)).unwrap();
}

/// A message whose field 1 is bytes: sent as a `GetInstanceRequest`, whose field 1 is a string,
/// it does not decode (not UTF-8).
#[derive(Clone, PartialEq, prost::Message)]
struct NotUtf8 {
    #[prost(bytes = "vec", tag = "1")]
    field: Vec<u8>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_client_malformed_messages_are_refused_the_node_keeps_serving_and_stops_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let (mut node, url) = single_node(dir.path());
    let mut c = connect(&url).await;
    let channel = Channel::from_shared(url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();

    // bytes that do not decode as the method's message
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let path =
        tonic::codegen::http::uri::PathAndQuery::from_static("/TaskHubSidecarService/GetInstance");
    let codec = tonic_prost::ProstCodec::<NotUtf8, proto::GetInstanceResponse>::default();
    let e = grpc
        .unary(
            Request::new(NotUtf8 {
                field: vec![0xff, 0xfe, 0xfd],
            }),
            path,
            codec,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e.code(), Code::Internal | Code::InvalidArgument),
        "{e:?}"
    );
    // a method the service does not have
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<NotUtf8, proto::GetInstanceResponse>::default();
    let e = grpc
        .unary(
            Request::new(NotUtf8::default()),
            tonic::codegen::http::uri::PathAndQuery::from_static("/TaskHubSidecarService/Nope"),
            codec,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented, "{e:?}");
    // an empty instance id is a bad argument
    let e = start(&mut c, "HelloSequence5", "", "not json")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    // still serving
    start(&mut c, "HelloSequence5", "after", "null")
        .await
        .unwrap();
    assert_eq!(
        finished(&mut c, "after").await.orchestration_status,
        COMPLETED
    );

    // a long poll in flight ends when the node stops, and the node stops cleanly
    start(&mut c, "Approval", "pending-forever", NEVER)
        .await
        .unwrap();
    let mut waiting = c.clone();
    let wait = tokio::spawn(async move {
        waiting
            .wait_for_instance_completion(get_req(
                "pending-forever",
                false,
                Duration::from_secs(60),
            ))
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        let s = node.stop(Duration::from_secs(20));
        (node, s)
    });
    let answer = tokio::time::timeout(Duration::from_secs(15), wait)
        .await
        .expect("the long poll ended")
        .unwrap();
    let e = answer.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    let (_node, s) = status.await.unwrap();
    assert!(s.unwrap().success());
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
}
