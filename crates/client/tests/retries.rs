//! The client against a scripted HTTP server on 127.0.0.1: what is retried, and that a retried
//! signal carries the same idempotency key on every attempt.

use perdure_client::{BatchSignal, Client, Error, RetryPolicy};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    target: String,
    idempotency_key: Option<String>,
    body: String,
}

/// One scripted answer: wait, then status and body.
#[derive(Clone)]
struct Answer {
    delay: Duration,
    status: u16,
    body: String,
}

fn answer(status: u16, body: Value) -> Answer {
    Answer {
        delay: Duration::ZERO,
        status,
        body: body.to_string(),
    }
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// Answers the requests on `listener` with `script`, in the order they arrive (each connection
/// in its own task, so a slow answer does not hold up the next); records every request.
fn serve(listener: TcpListener, script: Vec<Answer>) -> Log {
    let log: Log = Arc::default();
    let seen = log.clone();
    tokio::spawn(async move {
        for a in script {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let Some(req) = read_request(&mut conn).await else {
                continue;
            };
            seen.lock().unwrap().push(req);
            tokio::spawn(async move {
                tokio::time::sleep(a.delay).await;
                let reason = if a.status < 400 { "OK" } else { "Error" };
                let resp = format!(
                    "HTTP/1.1 {} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                    a.status,
                    a.body.len(),
                    a.body
                );
                let _ = conn.write_all(resp.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
        // keep the port open (refusing nothing) until the test ends
        std::future::pending::<()>().await;
    });
    log
}

async fn read_request(conn: &mut TcpStream) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.lines();
    let target = lines.next()?.split(' ').nth(1)?.to_string();
    let mut len = 0;
    let mut idempotency_key = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => len = v.trim().parse().ok()?,
                "idempotency-key" => idempotency_key = Some(v.trim().to_string()),
                _ => {}
            }
        }
    }
    while buf.len() < head_end + len {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(Seen {
        target,
        idempotency_key,
        body: String::from_utf8_lossy(&buf[head_end..]).to_string(),
    })
}

async fn start(script: Vec<Answer>) -> (Client, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let log = serve(listener, script);
    (client(&url), log)
}

/// A client of the scripted server alone (routing off: the script answers every request, so a
/// routing-table fetch would consume one of its answers).
fn client(url: &str) -> Client {
    Client::builder(url)
        .routing(false)
        .timeout(Duration::from_millis(500))
        .retry(RetryPolicy {
            attempts: 4,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(200),
        })
        .build()
        .unwrap()
}

fn unavailable() -> Answer {
    answer(
        503,
        json!({"error": {"code": "unavailable", "message": "no leader"}}),
    )
}

#[tokio::test]
async fn a_signal_is_retried_on_503_with_the_same_idempotency_key() {
    let (c, log) = start(vec![
        unavailable(),
        unavailable(),
        answer(202, json!({"accepted": true, "duplicate": false})),
    ])
    .await;
    let ack = c
        .signal("counter", "a/b", "add", Some(json!(5)))
        .await
        .unwrap();
    assert!(ack.accepted && !ack.duplicate);
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    let key = seen[0].idempotency_key.clone().expect("a key is sent");
    assert_eq!(key.len(), 32);
    for s in &seen {
        assert_eq!(s.idempotency_key.as_deref(), Some(key.as_str()));
        assert_eq!(
            s.target,
            "/runtime/webhooks/durabletask/entities/counter/a%2Fb?op=add"
        );
        assert_eq!(s.body, "5");
    }
    // the next logical signal gets another key
    let (c2, log2) = start(vec![answer(
        202,
        json!({"accepted": true, "duplicate": false}),
    )])
    .await;
    c2.signal("counter", "a", "add", None).await.unwrap();
    let other = log2.lock().unwrap()[0].idempotency_key.clone().unwrap();
    assert_ne!(other, key);
}

#[tokio::test]
async fn a_signal_that_timed_out_is_retried_with_the_same_key() {
    let slow = Answer {
        delay: Duration::from_millis(1500),
        ..answer(202, json!({"accepted": true, "duplicate": false}))
    };
    let (c, log) = start(vec![
        slow,
        answer(202, json!({"accepted": true, "duplicate": true})),
    ])
    .await;
    let ack = c
        .signal_with_key("counter", "a", "add", None, "my-key")
        .await
        .unwrap();
    assert!(ack.duplicate);
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert!(seen
        .iter()
        .all(|s| s.idempotency_key.as_deref() == Some("my-key")));
}

#[tokio::test]
async fn nothing_is_retried_on_4xx() {
    let (c, log) = start(vec![
        answer(
            400,
            json!({"error": {"code": "unknown_operation", "message": "no"}}),
        ),
        answer(202, json!({"accepted": true, "duplicate": false})),
    ])
    .await;
    let e = c.signal("counter", "a", "nope", None).await.unwrap_err();
    assert!(
        matches!(&e, Error::Api { status: 400, code, .. } if code == "unknown_operation"),
        "{e}"
    );
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_call_is_not_retried_on_503() {
    let (c, log) = start(vec![unavailable(), answer(200, json!(1))]).await;
    let e = c
        .call("counter", "a", "add", Some(json!(1)))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(503));
    assert_eq!(e.code(), Some("unavailable"));
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_call_is_retried_when_the_connection_was_refused() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let c = Client::builder(&format!("http://127.0.0.1:{port}"))
        .routing(false)
        .retry(RetryPolicy {
            attempts: 8,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(400),
        })
        .build()
        .unwrap();
    let server = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(120)).await;
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        serve(listener, vec![answer(200, json!(42))])
    });
    let v = c.call("counter", "a", "get", None).await.unwrap();
    assert_eq!(v, json!(42));
    let log = server.await.unwrap();
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn get_maps_a_missing_entity_to_none_but_not_a_missing_route() {
    let (c, _) = start(vec![
        answer(
            404,
            json!({"error": {"code": "entity_not_found", "message": "no"}}),
        ),
        answer(
            404,
            json!({"error": {"code": "not_found", "message": "no route"}}),
        ),
        answer(200, json!({"x": 1})),
    ])
    .await;
    assert_eq!(c.get("counter", "a").await.unwrap(), None);
    assert_eq!(c.get("counter", "a").await.unwrap_err().status(), Some(404));
    assert_eq!(c.get("counter", "a").await.unwrap(), Some(json!({"x": 1})));
}

#[tokio::test]
async fn bad_ids_are_refused_before_sending() {
    let (c, log) = start(vec![]).await;
    assert!(matches!(
        c.get("bad name", "a").await,
        Err(Error::InvalidEntityId(_))
    ));
    assert!(matches!(
        c.signal("counter", "", "add", None).await,
        Err(Error::InvalidEntityId(_))
    ));
    assert!(matches!(
        c.call("counter", "a", "", None).await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(log.lock().unwrap().is_empty());
}

#[tokio::test]
async fn list_passes_top_and_continuation_and_reads_the_next_token() {
    let (c, log) = start(vec![answer(
        200,
        json!({"entities": [{"key": "a", "state": 1}], "continuation": "t2"}),
    )])
    .await;
    let page = c.list("counter", Some("t 1"), Some(5)).await.unwrap();
    assert_eq!(page.entities.len(), 1);
    assert_eq!(page.entities[0].key, "a");
    assert_eq!(page.continuation.as_deref(), Some("t2"));
    assert_eq!(
        log.lock().unwrap()[0].target,
        "/runtime/webhooks/durabletask/entities/counter?top=5&continuation=t+1"
    );
}

#[tokio::test]
async fn batch_items_answered_unavailable_are_retried_alone_with_their_keys() {
    let (c, log) = start(vec![
        answer(
            200,
            json!({"results": [
                {"accepted": true, "duplicate": false},
                {"error": {"code": "unavailable", "message": "no leader"}},
                {"error": {"code": "bad_input", "message": "no"}},
            ]}),
        ),
        answer(
            200,
            json!({"results": [{"accepted": true, "duplicate": false}]}),
        ),
    ])
    .await;
    let results = c
        .signal_batch(vec![
            BatchSignal::new("counter", "a", "add", Some(json!(1))),
            BatchSignal::new("counter", "b", "add", Some(json!(2))).with_idempotency_key("kb"),
            BatchSignal::new("counter", "c", "add", Some(json!("x"))),
        ])
        .await
        .unwrap();
    assert!(results[0].is_ok());
    assert!(results[1].is_ok());
    assert_eq!(results[2].as_ref().unwrap_err().code, "bad_input");
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    let first: Value = serde_json::from_str(&seen[0].body).unwrap();
    let second: Value = serde_json::from_str(&seen[1].body).unwrap();
    let signals = first["signals"].as_array().unwrap();
    assert_eq!(signals.len(), 3);
    assert!(signals.iter().all(|s| s["idempotencyKey"].is_string()));
    assert_eq!(signals[1]["idempotencyKey"], "kb");
    assert_eq!(
        second,
        json!({"signals": [{"name": "counter", "key": "b", "op": "add", "input": 2, "idempotencyKey": "kb"}]})
    );
}

fn instance_exists() -> Answer {
    answer(
        409,
        json!({"error": {"code": "instance_exists", "message": "it runs"}}),
    )
}

#[tokio::test]
async fn a_retried_start_keeps_its_id_replaces_nothing_and_recognizes_its_instance() {
    // the first attempt may have been served (503); the repeat finds the instance: ours
    let (c, log) = start(vec![unavailable(), instance_exists()]).await;
    let started = c
        .start_orchestration("HelloSequence", None, Some(json!(1)))
        .await
        .unwrap();
    assert_eq!(started.id.len(), 36);
    assert!(started.status_query_get_uri.ends_with(&format!(
        "/runtime/webhooks/durabletask/instances/{}",
        started.id
    )));
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    let path = format!(
        "/runtime/webhooks/durabletask/orchestrators/HelloSequence/{}",
        started.id
    );
    assert_eq!(seen[0].target, path);
    assert_eq!(seen[1].target, format!("{path}?reusePolicy=none"));
    assert!(seen.iter().all(|s| s.body == "1"));

    // a given id: reported as already started, perhaps by the earlier attempt
    let (c, _) = start(vec![unavailable(), instance_exists()]).await;
    let e = c
        .start_orchestration("HelloSequence", Some("mine"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::AlreadyStarted { instance_id, retried: true, .. } if instance_id == "mine"),
        "{e}"
    );
    // an id that existed before: not retried, not ours
    let (c, log) = start(vec![instance_exists(), instance_exists()]).await;
    let e = c
        .start_orchestration("HelloSequence", Some("mine"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::AlreadyStarted { retried: false, .. }),
        "{e}"
    );
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn raising_an_event_is_not_retried_on_503_but_a_terminate_is() {
    let (c, log) = start(vec![unavailable(), answer(202, Value::Null)]).await;
    let e = c
        .raise_event("i-1", "Go", Some(json!(1)))
        .await
        .unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(503), Some("unavailable")));
    assert_eq!(log.lock().unwrap().len(), 1);
    assert_eq!(
        log.lock().unwrap()[0].target,
        "/runtime/webhooks/durabletask/instances/i-1/raiseEvent/Go"
    );
    let (c, log) = start(vec![
        unavailable(),
        Answer {
            body: String::new(),
            ..answer(202, Value::Null)
        },
    ])
    .await;
    c.terminate("i 1", Some("enough"), true).await.unwrap();
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[1].target,
        "/runtime/webhooks/durabletask/instances/i%201/terminate?reason=enough&recursive=true"
    );
}

#[tokio::test]
async fn a_purge_by_filter_that_finds_nothing_is_zero() {
    let (c, log) = start(vec![answer(
        404,
        json!({"error": {"code": "instance_not_found", "message": "none"}}),
    )])
    .await;
    let n = c
        .purge_orchestrations(&perdure_client::OrchestrationFilter {
            runtime_status: vec![perdure_client::RuntimeStatus::Failed],
            instance_id_prefix: Some("x".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(n, 0);
    assert_eq!(
        log.lock().unwrap()[0].target,
        "/runtime/webhooks/durabletask/instances?runtimeStatus=Failed&instanceIdPrefix=x"
    );
}
