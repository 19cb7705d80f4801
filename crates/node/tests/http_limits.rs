//! The HTTP server's limits, in process (Hardening case 5): an idle connection is closed after
//! the idle timeout, a client that sends its head slowly (slowloris) is cut off after the
//! header timeout, a slow body gets 408, a connection over the cap gets 503; and readiness turns
//! false when a group stops on a storage failure.

mod common;

use common::{test_config, Node};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A node with short connection timeouts and a small connection cap.
async fn node() -> (Node, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = test_config(dir.path());
    c.http.idle_timeout_ms = 800;
    c.http.header_read_timeout_ms = 400;
    c.http.body_read_timeout_ms = 400;
    c.http.max_connections = Some(8);
    (Node::start_with(c).await, dir)
}

/// A metric's value from `GET /metrics`.
async fn metric(node: &Node, name: &str) -> f64 {
    let text = node
        .http
        .get(format!("{}/metrics", node.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in the metrics"))
        .trim()
        .parse()
        .unwrap()
}

fn addr(node: &Node) -> String {
    node.url.trim_start_matches("http://").to_string()
}

/// Reads until the peer closes (or 10 s pass); answers what was read and when it closed.
async fn read_until_closed(s: &mut TcpStream) -> (String, Option<Duration>) {
    let t = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while t.elapsed() < Duration::from_secs(10) {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (
                    String::from_utf8_lossy(&got).into_owned(),
                    Some(t.elapsed()),
                )
            }
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let (node, _dir) = node().await;
    // never sends a byte
    let mut s = TcpStream::connect(addr(&node)).await.unwrap();
    let (_, closed) = read_until_closed(&mut s).await;
    let closed = closed.expect("an idle connection stayed open for 10 s");
    assert!(
        closed >= Duration::from_millis(700),
        "closed after {closed:?}"
    );
    // idle after a request (keep-alive)
    let mut s = TcpStream::connect(addr(&node)).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let (text, closed) = read_until_closed(&mut s).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        closed.is_some(),
        "an idle keep-alive connection stayed open for 10 s"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_header_client_is_cut_off() {
    let (node, _dir) = node().await;
    let mut s = TcpStream::connect(addr(&node)).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    // one header byte every 100 ms: never idle, never a complete head
    let t = Instant::now();
    let mut cut = None;
    for i in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if s.write_all(format!("x-{i}: y\r\n").as_bytes())
            .await
            .is_err()
        {
            cut = Some(t.elapsed());
            break;
        }
        let mut b = [0u8; 1];
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(1), s.read(&mut b)).await {
            if matches!(r, Ok(0) | Err(_)) {
                cut = Some(t.elapsed());
                break;
            }
        }
    }
    let cut = cut.expect("a client sending one header every 100 ms was served for 10 s");
    assert!(cut < Duration::from_secs(3), "cut after {cut:?}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_gets_408() {
    let (node, _dir) = node().await;
    let mut s = TcpStream::connect(addr(&node)).await.unwrap();
    s.write_all(
        format!(
            "POST {}/entities/counter/a?op=add HTTP/1.1\r\nhost: localhost\r\ncontent-length: 100\r\n\r\n12",
            common::BASE
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let (text, closed) = read_until_closed(&mut s).await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("body_timeout"), "{text}");
    assert!(closed.is_some());
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_over_the_cap_gets_503() {
    let (node, _dir) = node().await;
    // fill the 8 slots (with the test client's pooled connection, if it kept one)
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(TcpStream::connect(addr(&node)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut s = TcpStream::connect(addr(&node)).await.unwrap();
    let (text, closed) = read_until_closed(&mut s).await;
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("too_many_connections"), "{text}");
    assert!(closed.expect("not closed") < Duration::from_secs(2));
    // once they go, new connections are served again
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // the 9th raw connection at least (the test client may hold a pooled one too)
    assert!(metric(&node, "perdure_http_connections_refused_total").await >= 1.0);
    // the scrape's own connections are the ones open
    let open = metric(&node, "perdure_http_connections").await;
    assert!((1.0..=2.0).contains(&open), "{open} connections open");
    let r = node
        .http
        .get(format!("{}/healthz", node.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_turns_false_when_a_group_storage_fails() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let partitions =
        std::sync::Arc::new(perdure_cluster::Partitions::start(&config).await.unwrap());
    partitions
        .wait_ready(Duration::from_secs(30))
        .await
        .unwrap();
    let runtime = perdure_runtime::Runtime::start(
        partitions.clone(),
        perdure_runtime::Registry::for_config(&config.entities),
        config.entities.clone(),
    )
    .await
    .unwrap();
    let t = Instant::now();
    while perdure_node::health::readiness(&partitions, runtime.host())
        .await
        .is_err()
    {
        assert!(t.elapsed() < Duration::from_secs(30), "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    partitions.inject_storage_failure();
    let entity = perdure_types::EntityId::new("counter", "a").unwrap();
    let r = runtime
        .entities()
        .call(entity, "add", Some(serde_json::json!(1)))
        .await;
    assert!(r.is_err(), "a write went through a failed log");
    let fatal = tokio::time::timeout(
        Duration::from_secs(10),
        perdure_node::health::fatal_storage_error(&partitions),
    )
    .await
    .expect("no group stopped on the storage failure");
    assert!(fatal.fatal);
    let why = perdure_node::health::readiness(&partitions, runtime.host())
        .await
        .expect_err("ready while a group's storage failed");
    assert!(why.contains("raft stopped on an error"), "{why}");
    runtime.shutdown().await;
}
