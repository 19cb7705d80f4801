//! The orchestration HTTP API (Durable Functions' paths), in process with the samples
//! registered: the six samples driven over HTTP (start → 202 → poll `Location` until 200), the
//! management URLs as Durable Functions writes them, every route and status code (404 unknown,
//! 410 finished, 409 existing or wrong status, 413, 400), history, query paging through the
//! `x-ms-continuation-token` header, purge by filter, and the roles a token needs.

mod common;

use common::{code, json, test_config, Node, BASE};
use perdure_types::config::{NodeConfig, Role, TokenConfig};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// The tests' config with the samples on and a 1 KiB orchestration payload limit.
fn samples_config(dir: &std::path::Path) -> NodeConfig {
    let mut c = test_config(dir);
    c.samples.enabled = true;
    c.orchestrations.max_payload_bytes = 1024;
    c
}

async fn start_node() -> (Node, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start_with(samples_config(dir.path())).await;
    (node, dir)
}

/// `id` as one path segment.
fn enc(id: &str) -> String {
    perdure_types::api::encode_segment(id)
}

/// `BASE/instances/ID` + `rest`, absolute.
fn instance(node: &Node, id: &str, rest: &str) -> String {
    node.api(&format!("/instances/{}{rest}", enc(id)))
}

/// Starts `name` (under `id` if given) with `input`; checks the 202 and its `Location`;
/// answers the management body.
async fn start(node: &Node, name: &str, id: Option<&str>, input: Value) -> Value {
    let path = match id {
        Some(id) => format!("/orchestrators/{name}/{}", enc(id)),
        None => format!("/orchestrators/{name}"),
    };
    let (s, h, body) = json(node.http.post(node.api(&path)).json(&input)).await;
    assert_eq!(s, 202, "start {name}: {body}");
    assert_eq!(
        h["location"].to_str().unwrap(),
        body["statusQueryGetUri"].as_str().unwrap()
    );
    body
}

/// Polls `url` (a status URL) until it answers 200; answers the status body.
async fn poll(node: &Node, url: &str) -> Value {
    let t = Instant::now();
    loop {
        let (s, h, body) = json(node.http.get(url)).await;
        match s.as_u16() {
            200 => return body,
            202 => {
                assert_eq!(
                    h["location"].to_str().unwrap(),
                    url.split('?').next().unwrap()
                );
                assert!(
                    ["Pending", "Running", "Suspended", "ContinuedAsNew"]
                        .contains(&body["runtimeStatus"].as_str().unwrap()),
                    "{body}"
                );
            }
            other => panic!("GET {url}: {other} {body}"),
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{url} never finished: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts `name` and polls its `Location` until it finished; answers the final status.
async fn run(node: &Node, name: &str, id: Option<&str>, input: Value) -> Value {
    let started = start(node, name, id, input).await;
    poll(node, started["statusQueryGetUri"].as_str().unwrap()).await
}

async fn status_of(node: &Node, id: &str) -> (StatusCode, Value) {
    let (s, _, body) = json(node.http.get(instance(node, id, ""))).await;
    (s, body)
}

/// Waits until instance `id` has `status`.
async fn until_status(node: &Node, id: &str, status: &str) {
    let t = Instant::now();
    loop {
        let (_, body) = status_of(node, id).await;
        if body["runtimeStatus"] == status {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{id} never {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_six_samples_run_over_http() {
    let (node, _dir) = start_node().await;

    // function chaining, under a random id
    let done = run(&node, "HelloSequence", None, Value::Null).await;
    assert_eq!(done["runtimeStatus"], "Completed");
    assert_eq!(
        done["output"],
        json!(["Hello Tokyo!", "Hello Seattle!", "Hello London!"])
    );
    assert_eq!(done["name"], "HelloSequence");
    assert_eq!(done["instanceId"].as_str().unwrap().len(), 36);
    let done = run(&node, "HelloSequence5", Some("hello5"), Value::Null).await;
    assert_eq!(done["output"].as_array().unwrap().len(), 5);

    // fan-out/fan-in
    for n in [1u64, 30] {
        let done = run(&node, "FanOutFanIn", Some(&format!("fan-{n}")), json!(n)).await;
        assert_eq!(done["output"], json!(n * (n - 1) / 2), "{done}");
    }

    // human interaction: approved, rejected, escalated
    for (id, answer, want) in [("yes", true, "approved"), ("no", false, "rejected")] {
        let started = start(&node, "Approval", Some(id), json!({"timeout_ms": 60_000})).await;
        let raise = started["sendEventPostUri"]
            .as_str()
            .unwrap()
            .replace("{eventName}", "Approval");
        let (s, _, body) = json(node.http.post(&raise).json(&answer)).await;
        assert_eq!(s, 202, "{body}");
        let done = poll(&node, started["statusQueryGetUri"].as_str().unwrap()).await;
        assert_eq!(done["output"], want);
    }
    let done = run(&node, "Approval", Some("late"), json!({"timeout_ms": 200})).await;
    assert_eq!(done["output"], "escalated");

    // monitor: reached, expired
    let started = start(
        &node,
        "Monitor",
        Some("mon"),
        json!({"counter": "m", "target": 3, "interval_ms": 50, "expiry_ms": 60_000}),
    )
    .await;
    for _ in 0..3 {
        let (s, _, _) = json(
            node.http
                .post(node.api("/entities/counter/m?op=add"))
                .body("1"),
        )
        .await;
        assert_eq!(s, 202);
    }
    let done = poll(&node, started["statusQueryGetUri"].as_str().unwrap()).await;
    assert_eq!(done["output"], "reached");
    let done = run(
        &node,
        "Monitor",
        Some("mon2"),
        json!({"counter": "never", "target": 1, "interval_ms": 50, "expiry_ms": 300}),
    )
    .await;
    assert_eq!(done["output"], "expired");

    // aggregator
    let done = run(
        &node,
        "CounterAggregation",
        Some("agg"),
        json!({"key": "agg", "adds": 7}),
    )
    .await;
    assert_eq!(done["output"], 7);
    let (_, _, state) = json(node.http.get(node.api("/entities/counter/agg"))).await;
    assert_eq!(state, 7);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_shows_history_input_and_times_as_durable_functions_does() {
    let (node, _dir) = start_node().await;
    let started_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let done = run(&node, "HelloSequence", Some("hist"), json!({"who": "me"})).await;
    assert_eq!(done["input"], json!({"who": "me"}));
    assert_eq!(done["customStatus"], Value::Null);
    assert!(done.get("historyEvents").is_none());
    assert!(done.get("failureDetails").is_none());
    let created = perdure_types::time::parse_rfc3339(done["createdTime"].as_str().unwrap())
        .expect("createdTime is RFC 3339");
    let updated =
        perdure_types::time::parse_rfc3339(done["lastUpdatedTime"].as_str().unwrap()).unwrap();
    assert!(created + 2 >= started_ms && updated >= created, "{done}");
    assert!(done["createdTime"].as_str().unwrap().ends_with('Z'));
    assert!(done["executionId"].is_string());

    // showInput=false leaves the input out
    let (s, _, body) = json(
        node.http
            .get(instance(&node, "hist", ""))
            .query(&[("showInput", "false")]),
    )
    .await;
    assert_eq!(s, 200);
    assert!(body.get("input").is_none(), "{body}");

    // the history, one object per event, with payloads only when asked for
    let (s, _, body) = json(
        node.http
            .get(instance(&node, "hist", ""))
            .query(&[("showHistory", "true"), ("showHistoryOutput", "true")]),
    )
    .await;
    assert_eq!(s, 200);
    let events = body["historyEvents"].as_array().unwrap();
    assert_eq!(
        events.len() as u64,
        body["historyEventCount"].as_u64().unwrap()
    );
    assert!(body["historySizeBytes"].as_u64().unwrap() > 0);
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["EventType"].as_str().unwrap())
        .collect();
    // a turn begins with OrchestratorStarted; the first takes the ExecutionStarted
    assert_eq!(
        types[..2],
        ["OrchestratorStarted", "ExecutionStarted"],
        "{types:?}"
    );
    assert_eq!(
        types[types.len() - 2..],
        ["ExecutionCompleted", "OrchestratorCompleted"],
        "{types:?}"
    );
    assert_eq!(events[1]["Name"], "HelloSequence");
    assert_eq!(events[1]["Input"], json!({"who": "me"}));
    assert!(events[1]["ExecutionId"].is_string());
    let scheduled: Vec<&Value> = events
        .iter()
        .filter(|e| e["EventType"] == "TaskScheduled")
        .collect();
    assert_eq!(scheduled.len(), 3);
    assert_eq!(scheduled[0]["Name"], "SayHello");
    assert_eq!(scheduled[0]["Input"], "Tokyo");
    assert_eq!(scheduled[0]["EventId"], 0);
    let completed: Vec<&Value> = events
        .iter()
        .filter(|e| e["EventType"] == "TaskCompleted")
        .collect();
    assert_eq!(completed[0]["TaskScheduledId"], 0);
    assert_eq!(completed[0]["Result"], "Hello Tokyo!");
    assert_eq!(completed[0]["EventId"], -1);
    let end = &events[events.len() - 2];
    assert_eq!(end["OrchestrationStatus"], "Completed");
    assert_eq!(end["Result"], done["output"]);
    for e in events {
        perdure_types::time::parse_rfc3339(e["Timestamp"].as_str().unwrap()).unwrap();
    }
    // without showHistoryOutput: no inputs and results
    let (_, _, body) = json(
        node.http
            .get(instance(&node, "hist", ""))
            .query(&[("showHistory", "True")]),
    )
    .await;
    let events = body["historyEvents"].as_array().unwrap();
    assert!(events
        .iter()
        .all(|e| e.get("Input").is_none() && e.get("Result").is_none()));
    assert_eq!(events[1]["EventType"], "ExecutionStarted");

    // a failed instance: 200, or 500 when asked; failureDetails and the message as output
    let failed = run(
        &node,
        "FanOutFanIn",
        Some("bad-input"),
        json!("not a number"),
    )
    .await;
    assert_eq!(failed["runtimeStatus"], "Failed");
    let f = &failed["failureDetails"];
    assert!(
        f["errorType"].is_string() && f["errorMessage"].is_string(),
        "{failed}"
    );
    assert_eq!(failed["output"], f["errorMessage"]);
    let (s, _, body) = json(
        node.http
            .get(instance(&node, "bad-input", ""))
            .query(&[("returnInternalServerErrorOnFailure", "true")]),
    )
    .await;
    assert_eq!(s, 500);
    assert_eq!(body["runtimeStatus"], "Failed");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_urls_are_written_as_durable_functions_writes_them() {
    let (node, _dir) = start_node().await;
    let body = start(&node, "HelloSequence", Some("a b/c"), Value::Null).await;
    let at = format!("{}{BASE}/instances/a%20b%2Fc", node.url);
    assert_eq!(
        body,
        json!({
            "id": "a b/c",
            "statusQueryGetUri": at,
            "sendEventPostUri": format!("{at}/raiseEvent/{{eventName}}"),
            "terminatePostUri": format!("{at}/terminate?reason={{text}}"),
            "rewindPostUri": format!("{at}/rewind?reason={{text}}"),
            "purgeHistoryDeleteUri": at,
            "restartPostUri": format!("{at}/restart"),
            "suspendPostUri": format!("{at}/suspend?reason={{text}}"),
            "resumePostUri": format!("{at}/resume?reason={{text}}"),
        })
    );
    // the URLs follow the Host the client used
    let (s, h, body) = json(
        node.http
            .post(node.api("/orchestrators/HelloSequence"))
            .header("host", "localhost:9999"),
    )
    .await;
    assert_eq!(s, 202);
    let id = body["id"].as_str().unwrap();
    let want = format!("http://localhost:9999{BASE}/instances/{id}");
    assert_eq!(body["statusQueryGetUri"], want);
    assert_eq!(h["location"], want.as_str());
    // every URL works as written (the purge once the instance finished)
    poll(&node, &at).await;
    let (s, _, body) = json(node.http.delete(&at)).await;
    assert_eq!((s.as_u16(), body), (200, json!({"instancesDeleted": 1})));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_are_refused_with_the_right_status() {
    let (node, _dir) = start_node().await;
    let h = &node.http;
    // an unknown orchestrator, listing the known ones
    let (s, _, body) = json(h.post(node.api("/orchestrators/Nope"))).await;
    assert_eq!((s.as_u16(), code(&body)), (400, "unknown_orchestrator"));
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("HelloSequence"));
    // bad ids
    for id in ["a%01b", "%40reserved", &"x".repeat(257)] {
        let (s, _, body) =
            json(h.post(node.api(&format!("/orchestrators/HelloSequence/{id}")))).await;
        assert_eq!((s.as_u16(), code(&body)), (400, "bad_instance_id"), "{id}");
    }
    // a body that is not JSON
    let (s, _, body) = json(
        h.post(node.api("/orchestrators/HelloSequence"))
            .body("{nope"),
    )
    .await;
    assert_eq!((s.as_u16(), code(&body)), (400, "bad_json"));
    // over orchestrations.max_payload_bytes (1 KiB here), and over http.max_body_bytes
    let big = json!("x".repeat(2000));
    let (s, _, body) = json(h.post(node.api("/orchestrators/HelloSequence")).json(&big)).await;
    assert_eq!((s.as_u16(), code(&body)), (413, "payload_too_large"));
    let huge = json!("x".repeat(100_000));
    let (s, _, body) = json(h.post(node.api("/orchestrators/HelloSequence")).json(&huge)).await;
    assert_eq!((s.as_u16(), code(&body)), (413, "body_too_large"));
    // bad perdure extensions
    for (k, v) in [
        ("scheduledStartTime", "tomorrow"),
        ("reusePolicy", "Done"),
        ("version", &"v".repeat(300)),
    ] {
        let (s, _, body) = json(
            h.post(node.api("/orchestrators/HelloSequence"))
                .query(&[(k, v)]),
        )
        .await;
        assert_eq!((s.as_u16(), code(&body)), (400, "bad_query"), "{k}");
    }

    // an id that runs: 409; once finished the default policy replaces it, `none` does not
    start(
        &node,
        "Approval",
        Some("dup"),
        json!({"timeout_ms": 60_000}),
    )
    .await;
    let (s, _, body) = json(h.post(node.api("/orchestrators/HelloSequence/dup"))).await;
    assert_eq!((s.as_u16(), code(&body)), (409, "instance_exists"));
    let (s, _, _) = json(h.post(instance(&node, "dup", "/terminate"))).await;
    assert_eq!(s, 202);
    until_status(&node, "dup", "Terminated").await;
    let (s, _, body) = json(
        h.post(node.api("/orchestrators/HelloSequence/dup"))
            .query(&[("reusePolicy", "none")]),
    )
    .await;
    assert_eq!((s.as_u16(), code(&body)), (409, "instance_exists"));
    let (s, _, body) = json(
        h.post(node.api("/orchestrators/HelloSequence/dup"))
            .query(&[("reusePolicy", "Running,Terminated")]),
    )
    .await;
    assert_eq!(s, 202, "{body}");
    let done = poll(&node, &instance(&node, "dup", "")).await;
    assert_eq!(done["name"], "HelloSequence");

    // a scheduled start waits as Pending; a version is kept
    let (s, _, _) = json(
        h.post(node.api("/orchestrators/HelloSequence/later"))
            .query(&[
                ("scheduledStartTime", "2099-01-01T00:00:00Z"),
                ("version", "v2"),
            ]),
    )
    .await;
    assert_eq!(s, 202);
    let (s, body) = status_of(&node, "later").await;
    assert_eq!(
        (s.as_u16(), body["runtimeStatus"].as_str()),
        (202, Some("Pending"))
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_for_an_unknown_or_finished_instance_is_answered_as_such() {
    let (node, _dir) = start_node().await;
    let h = &node.http;
    // unknown: 404 instance_not_found on every instance route
    let unknown = |rest: &str| instance(&node, "never-started", rest);
    for req in [
        h.get(unknown("")),
        h.get(unknown("/wait?timeoutMs=10")),
        h.post(unknown("/raiseEvent/Approval")).body("true"),
        h.post(unknown("/terminate")),
        h.post(unknown("/suspend")),
        h.post(unknown("/resume")),
        h.post(unknown("/rewind")),
        h.post(unknown("/restart")),
        h.delete(unknown("")),
    ] {
        let (s, _, body) = json(req).await;
        assert_eq!(
            (s.as_u16(), code(&body)),
            (404, "instance_not_found"),
            "{body}"
        );
    }
    // finished: 410 instance_finished for events and management
    run(&node, "HelloSequence", Some("over"), Value::Null).await;
    for req in [
        h.post(instance(&node, "over", "/raiseEvent/Approval"))
            .body("true"),
        h.post(instance(&node, "over", "/terminate?reason=late")),
        h.post(instance(&node, "over", "/suspend")),
        h.post(instance(&node, "over", "/resume")),
    ] {
        let (s, _, body) = json(req).await;
        assert_eq!(
            (s.as_u16(), code(&body)),
            (410, "instance_finished"),
            "{body}"
        );
    }
    // nothing was recorded for them
    let (_, _, body) = json(
        h.get(instance(&node, "over", ""))
            .query(&[("showHistory", "true")]),
    )
    .await;
    assert!(body["historyEvents"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["EventType"] != "EventRaised" && e["EventType"] != "ExecutionTerminated"));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_management_over_http() {
    let (node, _dir) = start_node().await;
    let h = &node.http;
    let at = |id: &str, rest: &str| instance(&node, id, rest);

    // raise an event nobody waits for: accepted, the instance runs on
    start(
        &node,
        "Approval",
        Some("m1"),
        json!({"timeout_ms": 600_000}),
    )
    .await;
    let (s, _, body) = json(h.post(at("m1", "/raiseEvent/Other")).body("{\"a\":1}")).await;
    assert_eq!((s.as_u16(), body), (202, Value::Null));
    let (s, _, body) = json(h.post(at("m1", "/raiseEvent/Other")).body("{bad")).await;
    assert_eq!((s.as_u16(), code(&body)), (400, "bad_json"));
    let big = json!("x".repeat(2000));
    let (s, _, body) = json(h.post(at("m1", "/raiseEvent/Other")).json(&big)).await;
    assert_eq!((s.as_u16(), code(&body)), (413, "payload_too_large"));

    // wait: 202 with Location when the timeout passes first
    let (s, hd, body) = json(h.get(at("m1", "/wait")).query(&[("timeoutMs", "100")])).await;
    assert_eq!(
        (s.as_u16(), body["runtimeStatus"].as_str()),
        (202, Some("Running"))
    );
    assert_eq!(hd["location"], at("m1", "").as_str());
    let (s, _, body) = json(h.get(at("m1", "/wait")).query(&[("timeoutMs", "-1")])).await;
    assert_eq!((s.as_u16(), code(&body)), (400, "bad_query"));

    // suspend and resume
    let (s, _, _) = json(h.post(at("m1", "/suspend")).query(&[("reason", "hold")])).await;
    assert_eq!(s, 202);
    until_status(&node, "m1", "Suspended").await;
    let (s, hd, _) = json(h.get(at("m1", ""))).await;
    assert_eq!(s, 202);
    assert!(hd.contains_key("location"));
    let (s, _, _) = json(h.post(at("m1", "/resume")).query(&[("reason", "go")])).await;
    assert_eq!(s, 202);
    until_status(&node, "m1", "Running").await;

    // rewind: only a failed instance (410 otherwise)
    let (s, _, body) = json(h.post(at("m1", "/rewind")).query(&[("reason", "x")])).await;
    assert_eq!((s.as_u16(), code(&body)), (410, "instance_state"));

    // purge of a running instance: 409
    let (s, _, body) = json(h.delete(at("m1", ""))).await;
    assert_eq!((s.as_u16(), code(&body)), (409, "instance_state"));

    // terminate with a reason: the output is the reason; wait answers 200 once finished
    let (s, _, _) = json(
        h.post(at("m1", "/terminate"))
            .query(&[("reason", "enough"), ("recursive", "true")]),
    )
    .await;
    assert_eq!(s, 202);
    let (s, _, body) = json(h.get(at("m1", "/wait")).query(&[("timeoutMs", "20000")])).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["runtimeStatus"], "Terminated");
    assert_eq!(body["output"], "enough");

    // restart: under a new id (the default), or under the same id once finished
    let (s, hd, body) = json(h.post(at("m1", "/restart"))).await;
    assert_eq!(s, 202, "{body}");
    let new_id = body["id"].as_str().unwrap().to_string();
    assert_ne!(new_id, "m1");
    assert_eq!(hd["location"], body["statusQueryGetUri"].as_str().unwrap());
    let (_, again) = status_of(&node, &new_id).await;
    assert_eq!(again["input"], json!({"timeout_ms": 600_000}));
    assert_eq!(again["name"], "Approval");
    let (s, _, body) = json(
        h.post(at("m1", "/restart"))
            .query(&[("restartWithNewInstanceId", "false")]),
    )
    .await;
    assert_eq!((s.as_u16(), body["id"].as_str()), (202, Some("m1")));
    until_status(&node, "m1", "Running").await;
    // a running instance restarted under its own id: 409
    let (s, _, body) = json(
        h.post(at("m1", "/restart"))
            .query(&[("restartWithNewInstanceId", "false")]),
    )
    .await;
    assert_eq!((s.as_u16(), code(&body)), (409, "instance_state"));

    // a failed instance is rewound (here its input is still bad, so it fails again)
    run(&node, "FanOutFanIn", Some("f1"), json!("x")).await;
    let (s, _, body) = json(h.post(at("f1", "/rewind"))).await;
    assert_eq!(s, 202, "{body}");
    let t = std::time::Instant::now();
    loop {
        let (s, _, body) = json(h.get(at("f1", ""))).await;
        if s == 200 {
            assert_eq!(body["runtimeStatus"], "Failed", "{body}");
            break;
        }
        assert!(t.elapsed() < std::time::Duration::from_secs(10), "{body}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // purge one: 200 with the count, then 404
    let (s, _, body) = json(h.delete(at("f1", ""))).await;
    assert_eq!((s.as_u16(), body), (200, json!({"instancesDeleted": 1})));
    let (s, _, body) = json(h.delete(at("f1", "")).query(&[("recursive", "true")])).await;
    assert_eq!((s.as_u16(), code(&body)), (404, "instance_not_found"));

    // bad query values
    for (path, k, v) in [
        ("", "showHistory", "yes"),
        ("/terminate", "recursive", "2"),
        ("/restart", "restartWithNewInstanceId", "maybe"),
    ] {
        let req = if path.is_empty() {
            h.get(at("m1", path))
        } else {
            h.post(at("m1", path))
        };
        let (s, _, body) = json(req.query(&[(k, v)])).await;
        assert_eq!((s.as_u16(), code(&body)), (400, "bad_query"), "{k}={v}");
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_pages_through_the_continuation_header_and_purge_by_filter() {
    let (node, _dir) = start_node().await;
    let h = &node.http;
    let ids: Vec<String> = (0..12).map(|i| format!("q-{i:02}")).collect();
    for id in &ids {
        start(&node, "HelloSequence", Some(id), json!(id)).await;
    }
    start(
        &node,
        "Approval",
        Some("q-running"),
        json!({"timeout_ms": 600_000}),
    )
    .await;
    for id in &ids {
        poll(&node, &instance(&node, id, "")).await;
    }

    // pages of 5 through the header; every completed q- instance once
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut req = h.get(node.api("/instances")).query(&[
            ("instanceIdPrefix", "q-"),
            ("runtimeStatus", "Completed"),
            ("top", "5"),
        ]);
        if let Some(t) = &token {
            req = req.header("x-ms-continuation-token", t);
        }
        let (s, hd, body) = json(req).await;
        assert_eq!(s, 200, "{body}");
        let page = body.as_array().unwrap();
        assert!(page.len() <= 5);
        for st in page {
            assert_eq!(st["runtimeStatus"], "Completed");
            assert_eq!(st["input"], st["instanceId"]);
            assert!(st.get("historyEvents").is_none());
            seen.push(st["instanceId"].as_str().unwrap().to_string());
        }
        pages += 1;
        token = hd
            .get("x-ms-continuation-token")
            .map(|v| v.to_str().unwrap().to_string());
        if token.is_none() {
            break;
        }
        assert!(pages < 20, "paging does not end");
    }
    assert!(pages >= 3);
    seen.sort();
    assert_eq!(seen, ids);

    // other filters
    let (_, _, body) = json(
        h.get(node.api("/instances"))
            .query(&[("runtimeStatus", "running,pending"), ("showInput", "false")]),
    )
    .await;
    let running: Vec<&Value> = body.as_array().unwrap().iter().collect();
    assert_eq!(running.len(), 1, "{body}");
    assert_eq!(running[0]["instanceId"], "q-running");
    assert!(running[0].get("input").is_none());
    let (_, _, body) = json(
        h.get(node.api("/instances"))
            .query(&[("createdTimeFrom", "2099-01-01T00:00:00Z")]),
    )
    .await;
    assert_eq!(body, json!([]));
    let (_, _, body) = json(
        h.get(node.api("/instances"))
            .query(&[("createdTimeTo", "2000-01-01T00:00:00Z")]),
    )
    .await;
    assert_eq!(body, json!([]));
    let (_, _, body) = json(h.get(node.api("/instances")).query(&[("poisoned", "true")])).await;
    assert_eq!(body, json!([]));
    let (s, _, body) = json(h.get(node.api("/instances"))).await;
    assert_eq!((s.as_u16(), body.as_array().unwrap().len()), (200, 13));
    for (k, v) in [
        ("runtimeStatus", "Done"),
        ("top", "0"),
        ("createdTimeFrom", "yesterday"),
    ] {
        let (s, _, body) = json(h.get(node.api("/instances")).query(&[(k, v)])).await;
        assert_eq!((s.as_u16(), code(&body)), (400, "bad_query"), "{k}");
    }
    let (s, _, body) = json(
        h.get(node.api("/instances"))
            .header("x-ms-continuation-token", "zz"),
    )
    .await;
    assert_eq!((s.as_u16(), code(&body)), (400, "bad_request"));

    // purge by filter needs a filter: an empty one purges nothing and says so
    let (s, _, body) = json(h.delete(node.api("/instances"))).await;
    assert_eq!((s.as_u16(), code(&body)), (400, "bad_request"), "{body}");

    // purge by filter: the finished q- instances, never the running one; then 404
    let (s, _, body) = json(
        h.delete(node.api("/instances"))
            .query(&[("instanceIdPrefix", "q-")]),
    )
    .await;
    assert_eq!((s.as_u16(), body), (200, json!({"instancesDeleted": 12})));
    let (s, _, body) = json(
        h.delete(node.api("/instances"))
            .query(&[("instanceIdPrefix", "q-")]),
    )
    .await;
    assert_eq!((s.as_u16(), code(&body)), (404, "instance_not_found"));
    let (_, _, body) = json(h.get(node.api("/instances"))).await;
    let left: BTreeSet<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["instanceId"].as_str().unwrap())
        .collect();
    assert_eq!(left, BTreeSet::from(["q-running"]));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_need_the_read_role_and_everything_else_write() {
    const READ: &str = "reader-token-0123456789";
    const WRITE: &str = "writer-token-0123456789";
    let dir = tempfile::tempdir().unwrap();
    let mut c = samples_config(dir.path());
    let t = |name: &str, token: &str, role| TokenConfig {
        name: name.into(),
        token: token.into(),
        role,
    };
    c.auth.tokens = vec![
        t("reader", READ, Role::Read),
        t("writer", WRITE, Role::Write),
    ];
    let node = Node::start_with(c).await;
    let h = &node.http;
    let start_url = node.api("/orchestrators/HelloSequence/t1");
    let (s, _, _) = json(h.post(&start_url)).await;
    assert_eq!(s, 401);
    let (s, _, body) = json(h.post(&start_url).bearer_auth(READ)).await;
    assert_eq!((s.as_u16(), code(&body)), (403, "forbidden"));
    let (s, _, _) = json(h.post(&start_url).bearer_auth(WRITE)).await;
    assert_eq!(s, 202);
    let status = instance(&node, "t1", "");
    let t0 = Instant::now();
    loop {
        let (s, _, _) = json(h.get(&status).bearer_auth(READ)).await;
        if s == 200 {
            break;
        }
        assert_eq!(s, 202);
        assert!(t0.elapsed() < Duration::from_secs(20));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (s, _, _) = json(h.get(node.api("/instances")).bearer_auth(READ)).await;
    assert_eq!(s, 200);
    for req in [
        h.delete(&status),
        h.delete(node.api("/instances")),
        h.post(instance(&node, "t1", "/terminate")),
        h.post(instance(&node, "t1", "/raiseEvent/x")),
    ] {
        let (s, _, body) = json(req.bearer_auth(READ)).await;
        assert_eq!((s.as_u16(), code(&body)), (403, "forbidden"));
    }
    let (s, _, body) = json(h.delete(&status).bearer_auth(WRITE)).await;
    assert_eq!((s.as_u16(), body), (200, json!({"instancesDeleted": 1})));
    node.stop().await;
}
