//! Bounded commands (Hardening case 3): operations whose combined changes would exceed what one
//! log entry may hold never reach the log; they fail as operations, and the partition serves on.

mod common;

use common::cluster::{http_client, member, start, test_config};
use common::scrape::{metrics, sample};
use std::time::Duration;

const BASE: &str = "runtime/webhooks/durabletask";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_appends_fail_as_operations_and_the_partition_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let m = member(1, dir.path());
    // one partition: the list and the counter below share its Raft group
    let mut c = test_config(&m, &[], "bounds", "", 1);
    c.http.max_body_bytes = 100 << 20;
    // a debug build takes seconds per 90 MiB operation: the answers, not the deadline, are tested
    c.entities.request_timeout_ms = 120_000;
    m.write_config(&c).unwrap();
    let mut node = start(&m);
    node.wait_ready(Duration::from_secs(30)).unwrap();
    let url = m.url();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    // three appends of 90 MiB each, at once: together over the 256 MiB a log entry may hold
    let item = serde_json::Value::String("x".repeat(90 << 20));
    let body = serde_json::to_vec(&item).unwrap();
    let mut sent = Vec::new();
    for _ in 0..3 {
        let (http, url, body) = (http.clone(), url.clone(), body.clone());
        sent.push(tokio::spawn(async move {
            http.post(format!("{url}/{BASE}/entities/list/big/call?op=append"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
    }
    for s in sent {
        let status = s.await.unwrap().expect("every append is answered");
        assert_eq!(
            status, 422,
            "an append over the state limit fails as an operation"
        );
    }
    drop(body);
    // the partition still commits: a small append to the same list, a counter add
    let http = http_client();
    let r = http
        .post(format!("{url}/{BASE}/entities/list/big/call?op=append"))
        .json(&serde_json::json!("small"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", node.log_tail(20));
    let r = http
        .post(format!("{url}/{BASE}/entities/counter/c/call?op=add"))
        .json(&serde_json::json!(5))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", node.log_tail(20));
    let state: serde_json::Value = http
        .get(format!("{url}/{BASE}/entities/list/big"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state, serde_json::json!(["small"]));
    assert_eq!(
        perdure_harness::http_status(&m.http_addr(), "/readyz", Duration::from_secs(5)),
        Some(200)
    );
}

/// Case 9: a burst of new entity ids keeps at most `entities.max_active` actors active (the one
/// idle the longest is passivated to make room), and every operation is still applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_entity_actors_stay_within_max_active_and_every_operation_applies() {
    const MAX: u64 = 100;
    const ENTITIES: usize = 3000;
    let dir = tempfile::tempdir().unwrap();
    let m = member(1, dir.path());
    let mut c = test_config(&m, &[], "bounds", "", 1);
    c.entities.max_active = MAX;
    // nothing is idle long enough to be passivated for it: only the bound stops actors
    c.entities.passivate_after_ms = 600_000;
    m.write_config(&c).unwrap();
    let mut node = start(&m);
    node.wait_ready(Duration::from_secs(30)).unwrap();
    let url = m.url();
    let http = http_client();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // the gauge, sampled while the load runs
    let poll = {
        let (http, url, done) = (http.clone(), url.clone(), done.clone());
        tokio::spawn(async move {
            let mut highest = 0.0f64;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let text = metrics(&http, &url).await;
                let active = sample(&text, "perdure_actors_active", "");
                highest = highest.max(active.expect("the node exports perdure_actors_active"));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            highest
        })
    };
    // 3 000 distinct counters, 32 at a time: signals and calls
    let mut workers = Vec::new();
    for w in 0..32 {
        let (http, url) = (http.clone(), url.clone());
        workers.push(tokio::spawn(async move {
            for i in (w..ENTITIES).step_by(32) {
                let base = format!("{url}/{BASE}/entities/counter/n{i}");
                let target = if i % 2 == 0 {
                    format!("{base}?op=add")
                } else {
                    format!("{base}/call?op=add")
                };
                let r = http.post(target).json(&1).send().await.unwrap();
                assert!(r.status().is_success(), "{i}: {}", r.status());
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let highest = poll.await.unwrap();
    let text = metrics(&http, &url).await;
    assert!(
        highest <= MAX as f64,
        "{highest} actors were active at once, over entities.max_active = {MAX}"
    );
    assert!(sample(&text, "perdure_actors_active", "").unwrap() <= MAX as f64);
    let pressure = sample(
        &text,
        "perdure_actor_passivations_total",
        "reason=\"pressure\"",
    )
    .unwrap_or(0.0);
    assert!(
        pressure >= (ENTITIES as u64 - MAX) as f64,
        "{pressure} passivations under pressure"
    );
    // every operation applied, once
    for i in 0..ENTITIES {
        let v: serde_json::Value = http
            .get(format!("{url}/{BASE}/entities/counter/n{i}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v, serde_json::json!(1), "counter n{i}");
    }
    assert!(node.log_tail(200).lines().all(|l| !l.contains("panicked")));
}

/// Case 12: a partition remembers at most `entities.max_idempotency_keys` keys; a signal with a
/// new key past it is refused with 429 `too_many_idempotency_keys` (nothing applied), a retry
/// of a remembered key is still acknowledged as a duplicate, and nothing applies twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_past_the_bound_are_refused_and_retries_still_acknowledged() {
    const MAX: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let m = member(1, dir.path());
    let mut c = test_config(&m, &[], "bounds", "", 1);
    c.entities.max_idempotency_keys = MAX as u64;
    m.write_config(&c).unwrap();
    let mut node = start(&m);
    node.wait_ready(Duration::from_secs(30)).unwrap();
    let url = m.url();
    let http = http_client();
    let signal = |key: Option<String>| {
        let mut r = http
            .post(format!("{url}/{BASE}/entities/counter/keyed?op=add"))
            .json(&1);
        if let Some(k) = key {
            r = r.header("idempotency-key", k);
        }
        r.send()
    };
    // MAX + 5 new keys, one after the other, to entities of the one partition
    for i in 0..MAX + 5 {
        let r = signal(Some(format!("key-{i}"))).await.unwrap();
        let status = r.status().as_u16();
        let retry_after = r.headers().get("retry-after").cloned();
        let body: serde_json::Value = r.json().await.unwrap();
        if i < MAX {
            assert_eq!(status, 202, "key {i}: {body}");
            assert_eq!(body["duplicate"], false);
        } else {
            assert_eq!(status, 429, "key {i} is over the bound: {body}");
            assert_eq!(body["error"]["code"], "too_many_idempotency_keys");
            assert!(retry_after.is_some(), "429 says when to retry");
        }
    }
    // a retry of a remembered key: acknowledged as before, not applied again
    let r = signal(Some("key-0".into())).await.unwrap();
    assert_eq!(r.status().as_u16(), 202);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["duplicate"],
        true
    );
    // a refused key stays refused (it was not remembered), a signal without a key runs
    let r = signal(Some(format!("key-{MAX}"))).await.unwrap();
    assert_eq!(r.status().as_u16(), 429);
    let r = signal(None).await.unwrap();
    assert_eq!(r.status().as_u16(), 202);
    // the batch endpoint answers the same error per item
    let r = http
        .post(format!("{url}/{BASE}/entities:batch"))
        .json(&serde_json::json!({"signals": [
            {"name": "counter", "key": "keyed", "op": "add", "input": 1, "idempotencyKey": "key-1"},
            {"name": "counter", "key": "keyed", "op": "add", "input": 1, "idempotencyKey": "batch-new"},
        ]}))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["results"][0]["duplicate"], true, "{body}");
    assert_eq!(
        body["results"][1]["error"]["code"], "too_many_idempotency_keys",
        "{body}"
    );
    // applied: the MAX keyed signals once each, and the one without a key
    let v: serde_json::Value = http
        .get(format!("{url}/{BASE}/entities/counter/keyed"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v, serde_json::json!(MAX + 1), "{}", node.log_tail(20));
}

/// Case 10: a list appended to does not log its whole self per append: each batch writes a
/// delta on the stored state, so 6 MB of appends write about 6 MB of WAL (the old build: the
/// sum of every intermediate list, about 300 MB here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_to_a_growing_list_write_about_what_was_appended_to_the_wal() {
    const ITEM: usize = 128 << 10;
    const APPENDS: usize = 48; // 6 MiB in all
    let dir = tempfile::tempdir().unwrap();
    let m = member(1, dir.path());
    let mut c = test_config(&m, &[], "bounds", "", 1);
    c.entities.request_timeout_ms = 60_000;
    m.write_config(&c).unwrap();
    let mut node = start(&m);
    node.wait_ready(Duration::from_secs(30)).unwrap();
    let url = m.url();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let wal = |text: &str| {
        sample(text, "perdure_wal_written_bytes_total", "").expect("the node exports WAL bytes")
    };
    let before = wal(&metrics(&http, &url).await);
    for i in 0..APPENDS {
        let item = format!("{i:04}{}", "x".repeat(ITEM - 4));
        let r = http
            .post(format!("{url}/{BASE}/entities/list/grows/call?op=append"))
            .json(&item)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{}", node.log_tail(20));
        assert_eq!(r.json::<serde_json::Value>().await.unwrap(), i + 1);
    }
    let written = wal(&metrics(&http, &url).await) - before;
    let appended = (ITEM * APPENDS) as f64;
    assert!(
        written < 2.0 * appended,
        "{APPENDS} appends of {ITEM} bytes wrote {written} bytes of WAL"
    );
    // the list is whole, in order
    let list: Vec<String> = http
        .get(format!("{url}/{BASE}/entities/list/grows"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.len(), APPENDS);
    for (i, item) in list.iter().enumerate() {
        assert!(item.starts_with(&format!("{i:04}x")) && item.len() == ITEM);
    }
    // and it is the same after a restart (rebuilt from the log and state file)
    node.kill9().unwrap();
    node.restart().unwrap();
    node.wait_ready(Duration::from_secs(30)).unwrap();
    let again: Vec<String> = http
        .get(format!("{url}/{BASE}/entities/list/grows"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again, list);
    println!("{APPENDS} appends of {ITEM} bytes: {written} bytes of WAL");
}
