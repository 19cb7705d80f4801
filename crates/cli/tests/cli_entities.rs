//! The client subcommands end to end against the real binary: signal, call, get, list (one page
//! and `--all`), idempotency keys. These need the entity runtime to serve requests.

mod common;

use common::{stderr, stdout_json, Server};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

#[test]
fn signal_call_get_and_list_through_the_cli() {
    let mut server = Server::start();
    for _ in 0..3 {
        let out = server.run(&["signal", "counter/a", "add", "5"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(
            stdout_json(&out),
            json!({"accepted": true, "duplicate": false})
        );
    }
    let out = server.run(&["call", "counter/a", "get"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout_json(&out), json!(15));
    let out = server.run(&["get", "counter/a"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout_json(&out), json!(15));

    // a string input that is not JSON is sent as a JSON string
    let out = server.run(&["call", "register/r", "set", "hello world"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = server.run(&["get", "register/r"]);
    assert_eq!(stdout_json(&out), json!("hello world"));

    // the same idempotency key twice: applied once
    for dup in [false, true] {
        let out = server.run(&[
            "signal",
            "counter/k",
            "add",
            "2",
            "--idempotency-key",
            "once",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout_json(&out)["duplicate"], json!(dup));
    }
    let out = server.run(&["get", "counter/k"]);
    assert_eq!(stdout_json(&out), json!(2));

    // a missing entity
    let out = server.run(&["get", "counter/never"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    assert!(out.stdout.is_empty());

    // one page, then every page
    let out = server.run(&["list", "counter", "--top", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let page = stdout_json(&out);
    assert_eq!(page["entities"].as_array().unwrap().len(), 1);
    assert!(page["continuation"].is_string());
    let out = server.run(&["list", "counter", "--top", "1", "--all"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let all = stdout_json(&out);
    let keys: BTreeSet<&str> = all["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, BTreeSet::from(["a", "k"]));
    assert_eq!(all["continuation"], json!(null));

    assert!(server.terminate(Duration::from_secs(15)).success());
}
