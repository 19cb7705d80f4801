//! Stream subscriptions over HTTP and through `perdure sub ...`, against the real binary: put
//! (201 created, 200 unchanged), get with progress, list, pause and resume, dead letters, the
//! 400s naming the field, 404s, delete, a subscription of the config file present at start, and
//! on three nodes a put on one seen on another. No broker runs: the sources point at a closed
//! port, so every consumer reports an error (which `GET .../{name}` shows).

mod common;

use common::cluster::{
    free_port, http_client, member, ready, start, test_config, three_members, write_config_with,
    Nodes,
};
use common::{run_with_url, stderr, stdout_json, BASE};
use perdure_types::config::ingest::ConfiguredSubscription;
use serde_json::{json, Value};
use std::process::Output;
use std::time::{Duration, Instant};

/// A NATS definition whose server is a closed local port.
fn nats_spec(port: u16) -> Value {
    json!({
        "source": {"nats": {"url": format!("nats://127.0.0.1:{port}"), "stream": "events", "subject": "events.>"}},
        "mapping": {"entity": "counter", "key": "/user", "operation": "add", "input": "/amount"}
    })
}

/// `(status, body)` of a request.
async fn send(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<&str>,
) -> (u16, Value) {
    let mut b = http.request(method, url);
    if let Some(body) = body {
        b = b
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let r = b.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Asserts a 400 `code` whose message names `field`.
fn refused(got: &(u16, Value), code: &str, field: &str) {
    assert_eq!(got.0, 400, "{:?}", got.1);
    assert_eq!(got.1["error"]["code"], code, "{:?}", got.1);
    let m = got.1["error"]["message"].as_str().unwrap_or_default();
    assert!(m.contains(field), "{field:?} not in {m:?}");
}

fn ok(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        stderr(out)
    );
    stdout_json(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_over_http_and_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let closed = free_port("127.0.0.1");
    let m = member(1, dir.path());
    let mut c = test_config(&m, &[], "subs", "", 4);
    c.ingest.subscriptions.push(ConfiguredSubscription {
        name: "from-config".into(),
        spec: serde_json::from_value(nats_spec(closed)).unwrap(),
    });
    m.write_config(&c).unwrap();
    let mut node = start(&m);
    node.wait_ready(Duration::from_secs(30)).unwrap();
    let url = m.url();
    let http = http_client();
    let subs = format!("{url}{BASE}/subscriptions");
    use reqwest::Method as M;

    // the config file's subscription is there at start (put right after the node is ready)
    let t = Instant::now();
    loop {
        let (s, list) = send(&http, M::GET, &subs, None).await;
        assert_eq!(s, 200, "{list}");
        let names: Vec<&str> = list["subscriptions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        if names == ["from-config"] {
            break;
        }
        assert!(
            names.is_empty() && t.elapsed() < Duration::from_secs(10),
            "{names:?} after {:?}",
            t.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // create, then the same again: unchanged
    let spec = nats_spec(closed).to_string();
    let one = format!("{subs}/orders");
    let (s, created) = send(&http, M::PUT, &one, Some(&spec)).await;
    assert_eq!(s, 201, "{created}");
    assert_eq!(created["name"], "orders");
    assert_eq!(created["paused"], false);
    assert_eq!(created["spec"]["mapping"]["entity"], "counter");
    assert_eq!(created["spec"]["start"], "earliest");
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));
    let (s, again) = send(&http, M::PUT, &one, Some(&spec)).await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["version"], created["version"], "unchanged");

    // get: the progress fields; the consumer reports the source error within a few seconds
    let (s, got) = send(&http, M::GET, &one, None).await;
    assert_eq!(s, 200, "{got}");
    for f in ["applied", "failed", "dead_lettered", "lag"] {
        assert_eq!(got[f], 0, "{f}: {got}");
    }
    assert!(got["partitions"].is_array(), "{got}");
    let t = Instant::now();
    let got = loop {
        let (_, got) = send(&http, M::GET, &one, None).await;
        if !got["error"].is_null() || t.elapsed() > Duration::from_secs(20) {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        got["error"].is_string(),
        "no source error after {:?}: {got}",
        t.elapsed()
    );

    // list
    let (_, list) = send(&http, M::GET, &subs, None).await;
    assert_eq!(list["subscriptions"].as_array().unwrap().len(), 2, "{list}");

    // pause, resume
    let (s, p) = send(&http, M::POST, &format!("{one}/pause"), None).await;
    assert_eq!((s, &p["paused"]), (200, &json!(true)), "{p}");
    let (_, got) = send(&http, M::GET, &one, None).await;
    assert_eq!(got["paused"], true);
    let (s, p) = send(&http, M::POST, &format!("{one}/resume"), None).await;
    assert_eq!((s, &p["paused"]), (200, &json!(false)), "{p}");

    // dead letters: none
    let (s, d) = send(&http, M::GET, &format!("{one}/dead-letters?limit=5"), None).await;
    assert_eq!((s, d), (200, json!({"dead_letters": []})));
    let (s, _) = send(&http, M::GET, &format!("{one}/dead-letters?limit=0"), None).await;
    assert_eq!(s, 400);

    // 400s naming the field
    let mut bad = nats_spec(closed);
    bad["mapping"]["entity"] = json!("nosuchtype");
    refused(
        &send(&http, M::PUT, &one, Some(&bad.to_string())).await,
        "invalid_subscription",
        "mapping.entity",
    );
    let mut bad = nats_spec(closed);
    bad["mapping"]["operation"] = json!("nosuchop");
    refused(
        &send(&http, M::PUT, &one, Some(&bad.to_string())).await,
        "invalid_subscription",
        "mapping.operation",
    );
    let mut bad = nats_spec(closed);
    bad["mapping"]["key"] = json!("user");
    refused(
        &send(&http, M::PUT, &one, Some(&bad.to_string())).await,
        "invalid_subscription",
        "mapping.key",
    );
    let mut bad = nats_spec(closed);
    bad["source"]["nats"]["extra"] = json!(1);
    refused(
        &send(&http, M::PUT, &one, Some(&bad.to_string())).await,
        "invalid_subscription",
        "extra",
    );
    refused(
        &send(&http, M::PUT, &format!("{subs}/a%20b"), Some(&spec)).await,
        "invalid_subscription",
        "name",
    );
    refused(
        &send(&http, M::PUT, &one, Some("{\"source\":")).await,
        "bad_json",
        "JSON",
    );

    // 404s
    let missing = format!("{subs}/missing");
    for (m, u) in [
        (M::GET, missing.clone()),
        (M::DELETE, missing.clone()),
        (M::POST, format!("{missing}/pause")),
        (M::POST, format!("{missing}/resume")),
        (M::GET, format!("{missing}/dead-letters")),
    ] {
        let (s, e) = send(&http, m.clone(), &u, None).await;
        assert_eq!(s, 404, "{m} {u}: {e}");
        assert_eq!(e["error"]["code"], "subscription_not_found", "{m} {u}");
    }

    // /cluster lists the consumers (possibly none while they retry)
    let (_, cluster) = send(&http, M::GET, &format!("{url}/cluster"), None).await;
    assert!(cluster["consumers"].is_array(), "{cluster}");

    // delete: 204, then 404
    let (s, _) = send(&http, M::DELETE, &one, None).await;
    assert_eq!(s, 204);
    let (s, _) = send(&http, M::DELETE, &one, None).await;
    assert_eq!(s, 404);

    // the CLI
    let file = dir.path().join("clicks.json");
    std::fs::write(&file, nats_spec(closed).to_string()).unwrap();
    let file = file.to_str().unwrap();
    let put = ok(&run_with_url(
        &url,
        &["sub", "put", "clicks", "--file", file],
    ));
    assert_eq!(
        (&put["name"], &put["created"]),
        (&json!("clicks"), &json!(true))
    );
    let put = ok(&run_with_url(
        &url,
        &["sub", "put", "clicks", "--json", &spec],
    ));
    assert_eq!(put["created"], false);
    let got = ok(&run_with_url(&url, &["sub", "get", "clicks"]));
    assert_eq!(got["name"], "clicks");
    assert!(got["partitions"].is_array());
    let list = ok(&run_with_url(&url, &["sub", "list"]));
    assert_eq!(list["subscriptions"].as_array().unwrap().len(), 2);
    assert_eq!(
        ok(&run_with_url(&url, &["sub", "pause", "clicks"]))["paused"],
        true
    );
    assert_eq!(
        ok(&run_with_url(&url, &["sub", "resume", "clicks"]))["paused"],
        false
    );
    let d = ok(&run_with_url(
        &url,
        &["sub", "dead-letters", "clicks", "--limit", "3"],
    ));
    assert_eq!(d, json!({"dead_letters": []}));
    ok(&run_with_url(&url, &["sub", "delete", "clicks"]));
    // errors: non-zero, the server's message
    let out = run_with_url(&url, &["sub", "get", "clicks"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("subscription_not_found"),
        "{}",
        stderr(&out)
    );
    let mut bad = nats_spec(closed);
    bad["mapping"]["entity"] = json!("nosuchtype");
    let out = run_with_url(&url, &["sub", "put", "x", "--json", &bad.to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("mapping.entity"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_put_on_one_node_is_seen_on_another() {
    let dir = tempfile::tempdir().unwrap();
    let members = three_members(dir.path());
    for m in &members {
        write_config_with(m, &members, "subs3", "a-test-secret-of-enough-length", 4);
    }
    let _nodes = Nodes::start(&members);
    for m in &members {
        assert!(
            ready(&m.url(), Duration::from_secs(30)).await,
            "node {} never ready",
            m.id
        );
    }
    let http = http_client();
    let spec = nats_spec(free_port("127.0.0.1")).to_string();
    let put = format!("{}{BASE}/subscriptions/shared", members[0].url());
    let (s, body) = send(&http, reqwest::Method::PUT, &put, Some(&spec)).await;
    assert_eq!(s, 201, "{body}");
    let get = format!("{}{BASE}/subscriptions/shared", members[2].url());
    let t = Instant::now();
    loop {
        let (s, body) = send(&http, reqwest::Method::GET, &get, None).await;
        if s == 200 {
            assert_eq!(body["name"], "shared");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "node 3 does not see it after {:?}: {s} {body}",
            t.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
