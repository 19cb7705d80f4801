//! `perdure orch ...` end to end against the real binary with the samples on
//! (`PERDURE_SAMPLES__ENABLED=true`): start, status (with history), wait (progress, exit status
//! of a failed or unfinished instance), list (filters, every page), raise, terminate, suspend,
//! resume, restart, purge (one, by filter).

mod common;

use common::{stderr, stdout_json, Server};
use serde_json::json;
use std::collections::BTreeSet;
use std::process::Output;
use std::time::Duration;

fn ok(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        stderr(out)
    );
    stdout_json(out)
}

#[test]
fn orchestrations_through_the_cli() {
    let mut server = Server::start_with_env(&[("PERDURE_SAMPLES__ENABLED", "true")]);

    // start (a random id), wait, status with its history
    let started = ok(&server.run(&["orch", "start", "HelloSequence"]));
    let id = started["id"].as_str().unwrap().to_string();
    assert_eq!(
        started["statusQueryGetUri"],
        format!("{}/runtime/webhooks/durabletask/instances/{id}", server.url)
    );
    let done = ok(&server.run(&["orch", "wait", &id, "--timeout", "30"]));
    assert_eq!(done["runtimeStatus"], "Completed");
    assert_eq!(
        done["output"],
        json!(["Hello Tokyo!", "Hello Seattle!", "Hello London!"])
    );
    let status = ok(&server.run(&["orch", "status", &id, "--history"]));
    let events = status["historyEvents"].as_array().unwrap();
    assert!(events
        .iter()
        .any(|e| e["EventType"] == "TaskCompleted" && e["Result"] == "Hello London!"));
    let status = ok(&server.run(&["orch", "status", &id]));
    assert!(status.get("historyEvents").is_none());

    // human interaction: start under an id, raise the event, wait
    let input = r#"{"timeout_ms": 60000}"#;
    let started = ok(&server.run(&["orch", "start", "Approval", input, "--id", "appr"]));
    assert_eq!(started["id"], "appr");
    let status = ok(&server.run(&["orch", "status", "appr"]));
    assert_eq!(status["input"], json!({"timeout_ms": 60000}));
    // starting it again while it runs is refused
    let out = server.run(&["orch", "start", "Approval", input, "--id", "appr"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    let raised = ok(&server.run(&["orch", "raise", "appr", "Approval", "true"]));
    assert_eq!(raised, json!({"instanceId": "appr", "accepted": true}));
    let done = ok(&server.run(&["orch", "wait", "appr"]));
    assert_eq!(done["output"], "approved");
    // an event for a finished instance, a status of an unknown one: said, exit 1
    let out = server.run(&["orch", "raise", "appr", "Approval", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("has finished"), "{}", stderr(&out));
    let out = server.run(&["orch", "status", "never-started"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no orchestration instance"),
        "{}",
        stderr(&out)
    );

    // wait prints progress while waiting and fails when the instance is still going
    ok(&server.run(&["orch", "start", "Approval", input, "--id", "slow"]));
    let out = server.run(&["orch", "wait", "slow", "--timeout", "6"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("waiting for slow: Running"), "{err}");
    assert!(err.contains("did not finish within 6 s"), "{err}");
    assert_eq!(stdout_json(&out)["runtimeStatus"], "Running");

    // suspend, resume, terminate; wait on a terminated instance succeeds
    ok(&server.run(&["orch", "suspend", "slow", "--reason", "hold"]));
    ok(&server.run(&["orch", "resume", "slow"]));
    ok(&server.run(&["orch", "terminate", "slow", "--reason", "enough"]));
    let done = ok(&server.run(&["orch", "wait", "slow"]));
    assert_eq!(
        (done["runtimeStatus"].clone(), done["output"].clone()),
        (json!("Terminated"), json!("enough"))
    );
    // restart under a new id
    let again = ok(&server.run(&["orch", "restart", "slow"]));
    assert_ne!(again["id"], "slow");
    ok(&server.run(&["orch", "terminate", again["id"].as_str().unwrap()]));

    // a failed instance: wait exits non-zero, naming the failure
    ok(&server.run(&[
        "orch",
        "start",
        "FanOutFanIn",
        "not a number",
        "--id",
        "bad",
    ]));
    let out = server.run(&["orch", "wait", "bad", "--timeout", "30"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("instance bad failed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stdout_json(&out)["runtimeStatus"], "Failed");

    // list: filters, one page, every page
    for i in 0..3 {
        ok(&server.run(&[
            "orch",
            "start",
            "FanOutFanIn",
            "3",
            "--id",
            &format!("l-{i}"),
        ]));
        ok(&server.run(&["orch", "wait", &format!("l-{i}")]));
    }
    let page = ok(&server.run(&["orch", "list", "--prefix", "l-", "--top", "1"]));
    assert_eq!(page["instances"].as_array().unwrap().len(), 1);
    assert!(page["continuation"].is_string());
    let all = ok(&server.run(&[
        "orch",
        "list",
        "--prefix",
        "l-",
        "--top",
        "1",
        "--all",
        "--status",
        "completed",
    ]));
    let ids: BTreeSet<&str> = all["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["instanceId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, BTreeSet::from(["l-0", "l-1", "l-2"]));
    assert_eq!(all["continuation"], json!(null));
    let failed = ok(&server.run(&["orch", "list", "--status", "Failed"]));
    assert_eq!(failed["instances"][0]["instanceId"], "bad");
    let out = server.run(&["orch", "list", "--status", "Done"]);
    assert_eq!(out.status.code(), Some(1));

    // purge one, then by filter; nothing left is 0
    assert_eq!(
        ok(&server.run(&["orch", "purge", "appr"])),
        json!({"instancesDeleted": 1})
    );
    assert_eq!(
        ok(&server.run(&["orch", "purge", "--prefix", "l-"])),
        json!({"instancesDeleted": 3})
    );
    assert_eq!(
        ok(&server.run(&["orch", "purge", "--prefix", "l-"])),
        json!({"instancesDeleted": 0})
    );
    let out = server.run(&["orch", "purge", "bad", "--prefix", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not both"), "{}", stderr(&out));

    assert!(server.terminate(Duration::from_secs(15)).success());
}
