//! The node-to-node transport over real TCP on 127.0.0.1: round trips, authentication, errors,
//! timeouts, reconnects, and hostile input.

use perdure_cluster::transport::{
    handler_fn, serve, Handler, Peers, RemoteError, RemoteErrorCode, TransportConfig,
    TransportError,
};
use perdure_types::codec::{self, frame};
use rand::RngCore;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

const ECHO: u16 = 1;
const FAIL: u16 = 2;
const SLEEP: u16 = 3;
const PANIC: u16 = 4;

const SECRET: &str = "a-cluster-secret-of-some-length";

fn config(node_id: u64) -> TransportConfig {
    TransportConfig {
        cluster_id: "test-cluster".into(),
        node_id,
        partitions: 8,
        secret: SECRET.into(),
        tls: None,
        rpc_timeout: Duration::from_secs(5),
        stats: Default::default(),
    }
}

/// Echo, fail, sleep-then-echo (body: codec u64 milliseconds), panic; counts its calls.
fn test_handler(calls: Arc<AtomicUsize>) -> Arc<dyn Handler> {
    Arc::new(handler_fn(move |from, kind, body| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            match kind {
                ECHO => Ok(body),
                FAIL => Err(RemoteError::handler(format!("boom for node {from}"))),
                SLEEP => {
                    let ms: u64 = codec::decode(&body).expect("a u64");
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Ok(body)
                }
                PANIC => panic!("a handler panic on purpose"),
                other => Err(RemoteError::unknown_kind(other)),
            }
        }
    }))
}

/// A listener that may rebind a port just released (`SO_REUSEADDR`).
fn bind(addr: SocketAddr) -> TcpListener {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket.bind(addr).unwrap();
    socket.listen(1024).unwrap()
}

struct Server {
    addr: SocketAddr,
    calls: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
}

impl Server {
    fn start(config: TransportConfig, at: SocketAddr) -> Server {
        let listener = bind(at);
        let addr = listener.local_addr().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(
            listener,
            Arc::new(config),
            test_handler(calls.clone()),
            async {
                let _ = stopped.await;
            },
        ));
        Server {
            addr,
            calls,
            stop: Some(stop),
            task,
        }
    }

    fn any_port(config: TransportConfig) -> Server {
        Server::start(config, "127.0.0.1:0".parse().unwrap())
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .expect("serve stops promptly")
            .unwrap()
            .unwrap();
    }
}

/// A TCP relay in front of a server that counts the connections it relays.
struct Proxy {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
}

async fn proxy(target: SocketAddr) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let open = Arc::new(AtomicUsize::new(0));
    let (a, o) = (accepted.clone(), open.clone());
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            o.fetch_add(1, Ordering::SeqCst);
            let o = o.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(target).await {
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
                o.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    Proxy {
        addr,
        accepted,
        open,
    }
}

fn peers(config: TransportConfig, node: u64, addr: SocketAddr) -> Peers {
    let peers = Peers::new(Arc::new(config));
    peers.set_address(node, addr.to_string());
    peers
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(5), "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_share_one_connection() {
    let server = Server::any_port(config(2));
    let proxy = proxy(server.addr).await;
    let peers = peers(config(1), 2, proxy.addr);

    let start = Instant::now();
    let mut requests = JoinSet::new();
    for i in 0..1000u64 {
        let peers = peers.clone();
        requests.spawn(async move {
            if i % 2 == 0 {
                let answer: (u64, String) = peers
                    .call(2, ECHO, &(i, format!("request {i}")), None)
                    .await
                    .unwrap();
                assert_eq!(answer, (i, format!("request {i}")));
            } else {
                let body = i.to_le_bytes().repeat(1 + (i as usize % 50));
                let answer = peers.request(2, ECHO, body.clone(), None).await.unwrap();
                assert_eq!(answer, body);
            }
        });
    }
    while let Some(done) = requests.join_next().await {
        done.unwrap();
    }
    println!(
        "1000 concurrent echo requests (cold start, through a relay): {:?}",
        start.elapsed()
    );
    assert_eq!(server.calls(), 1000);
    assert_eq!(proxy.accepted.load(Ordering::SeqCst), 1, "one connection");

    // Dropping the last clone of Peers closes the connection.
    drop(peers);
    eventually("the connection closes once Peers is dropped", || {
        proxy.open.load(Ordering::SeqCst) == 0
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_latency_and_throughput() {
    let server = Server::any_port(config(2));
    let peers = peers(config(1), 2, server.addr);
    peers.request(2, ECHO, vec![0], None).await.unwrap();

    let n = 2000;
    let start = Instant::now();
    for i in 0..n as u64 {
        let answer = peers
            .request(2, ECHO, i.to_le_bytes().to_vec(), None)
            .await
            .unwrap();
        assert_eq!(answer, i.to_le_bytes());
    }
    let sequential = start.elapsed();

    let rounds = 10;
    let start = Instant::now();
    for _ in 0..rounds {
        let mut requests = JoinSet::new();
        for i in 0..1000u64 {
            let peers = peers.clone();
            requests.spawn(async move {
                let body = i.to_le_bytes().to_vec();
                assert_eq!(
                    peers.request(2, ECHO, body.clone(), None).await.unwrap(),
                    body
                );
            });
        }
        while let Some(done) = requests.join_next().await {
            done.unwrap();
        }
    }
    let concurrent = start.elapsed();
    println!(
        "echo: sequential round trip {:?} mean ({n} requests); \
         1000 concurrent: {:.0} requests/s ({rounds} rounds in {concurrent:?})",
        sequential / n,
        (rounds * 1000) as f64 / concurrent.as_secs_f64(),
    );
    server.stop().await;
}

async fn refused(client: TransportConfig, server: TransportConfig, expected: &str) {
    let server = Server::any_port(server);
    let peers = peers(client, 2, server.addr);
    for attempt in 0..2 {
        match peers.request(2, ECHO, vec![1], None).await {
            Err(TransportError::Refused { node: 2, reason }) => {
                assert!(
                    reason.contains(expected),
                    "attempt {attempt}: {reason:?} does not say {expected:?}"
                );
            }
            other => panic!("attempt {attempt}: expected a refusal, got {other:?}"),
        }
    }
    let e = peers.request(2, ECHO, vec![1], None).await.unwrap_err();
    assert!(e.to_string().contains("node 2"), "{e}");
    assert_eq!(server.calls(), 0, "the handler never ran");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_refused() {
    let mut wrong = config(1);
    wrong.secret = "another-secret-entirely".into();
    // The client checks the server's proof first: with different secrets it is the one to tell.
    refused(
        wrong,
        config(2),
        "the peer does not know the cluster secret",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_the_secret_is_refused_by_the_client() {
    let mut wrong = config(2);
    wrong.secret = "another-secret-entirely".into();
    refused(
        config(1),
        wrong,
        "the peer does not know the cluster secret",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_cluster_id_is_refused() {
    let mut other = config(1);
    other.cluster_id = "other-cluster".into();
    refused(
        other,
        config(2),
        "cluster id \"other-cluster\" (node 1) != \"test-cluster\" (node 2)",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_partition_count_is_refused() {
    let mut other = config(1);
    other.partitions = 16;
    refused(
        other,
        config(2),
        "partition count 16 (node 1) != 8 (node 2)",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_answering_at_another_nodes_address_is_refused() {
    let server = Server::any_port(config(2));
    let peers = peers(config(1), 3, server.addr);
    match peers.request(3, ECHO, vec![1], None).await {
        Err(TransportError::Refused { node: 3, reason }) => {
            assert!(reason.contains("is node 2, not node 3"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.calls(), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_errors_and_panics_come_back_as_remote_errors() {
    let server = Server::any_port(config(2));
    let peers = peers(config(1), 2, server.addr);
    match peers.request(2, FAIL, vec![], None).await {
        Err(TransportError::Remote { node: 2, error }) => {
            assert_eq!(error, RemoteError::handler("boom for node 1"));
        }
        other => panic!("{other:?}"),
    }
    match peers.request(2, 999, vec![], None).await {
        Err(TransportError::Remote { error, .. }) => {
            assert_eq!(error.code, RemoteErrorCode::NotFound);
            assert!(error.message.contains("999"), "{}", error.message);
        }
        other => panic!("{other:?}"),
    }
    match peers.request(2, PANIC, vec![], None).await {
        Err(TransportError::Remote { error, .. }) => {
            assert_eq!(error.code, RemoteErrorCode::Panicked);
            assert!(error.message.contains("on purpose"), "{}", error.message);
        }
        other => panic!("{other:?}"),
    }
    // A typed answer that does not decode is a codec error, not a panic.
    let e = peers
        .call::<_, (u64, u64, String)>(2, ECHO, &7u8, None)
        .await
        .unwrap_err();
    assert!(matches!(e, TransportError::Codec { node: 2, .. }), "{e}");
    // The connection still serves.
    assert_eq!(peers.request(2, ECHO, vec![5], None).await.unwrap(), [5]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_answer_times_out_and_the_connection_keeps_serving() {
    let server = Server::any_port(config(2));
    let proxy = proxy(server.addr).await;
    let peers = peers(config(1), 2, proxy.addr);
    peers.request(2, ECHO, vec![1], None).await.unwrap();

    let timeout = Duration::from_millis(200);
    let start = Instant::now();
    let slow = codec::encode(&2000u64).unwrap();
    match peers.request(2, SLEEP, slow, Some(timeout)).await {
        Err(TransportError::Timeout { node: 2, after }) => assert_eq!(after, timeout),
        other => panic!("{other:?}"),
    }
    let took = start.elapsed();
    assert!(took >= timeout && took < Duration::from_secs(1), "{took:?}");

    // The same connection answers the next requests, including a short sleep.
    let quick = codec::encode(&10u64).unwrap();
    let answer = peers.request(2, SLEEP, quick.clone(), None).await.unwrap();
    assert_eq!(answer, quick);
    assert_eq!(peers.request(2, ECHO, vec![2], None).await.unwrap(), [2]);
    assert_eq!(proxy.accepted.load(Ordering::SeqCst), 1, "one connection");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_fail_fast_while_the_peer_is_down_and_work_again_after_it_returns() {
    let server = Server::any_port(config(2));
    let addr = server.addr;
    let peers = peers(config(1), 2, addr);
    assert_eq!(peers.request(2, ECHO, vec![1], None).await.unwrap(), [1]);

    // A request in flight when the server stops fails as unreachable, not by its timeout.
    let in_flight = {
        let peers = peers.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            let body = codec::encode(&30_000u64).unwrap();
            let result = peers
                .request(2, SLEEP, body, Some(Duration::from_secs(30)))
                .await;
            (result, start.elapsed())
        })
    };
    eventually("the slow request reaches the handler", || {
        server.calls() == 2
    })
    .await;
    server.stop().await;
    let (result, took) = in_flight.await.unwrap();
    assert!(
        matches!(result, Err(TransportError::Unreachable { node: 2, .. })),
        "{result:?}"
    );
    assert!(took < Duration::from_secs(2), "{took:?}");

    // While it is down, every request fails quickly (the timeout is 5 s).
    for i in 0..20 {
        let start = Instant::now();
        match peers.request(2, ECHO, vec![1], None).await {
            Err(TransportError::Unreachable { node: 2, reason }) => {
                assert!(!reason.is_empty())
            }
            other => panic!("request {i}: {other:?}"),
        }
        assert!(start.elapsed() < Duration::from_millis(500), "request {i}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Back on the same port: requests succeed again once the backoff (at most 2 s) has passed.
    let server = Server::start(config(2), addr);
    let start = Instant::now();
    loop {
        match peers.request(2, ECHO, vec![3], None).await {
            Ok(answer) => {
                assert_eq!(answer, [3]);
                break;
            }
            Err(TransportError::Unreachable { .. }) => {
                assert!(start.elapsed() < Duration::from_secs(5), "no reconnect");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        start.elapsed() <= Duration::from_millis(2500),
        "{:?}",
        start.elapsed()
    );
    server.stop().await;
}

/// Writes `bytes` (the server may hang up before all are written), then expects the server to
/// close the connection without answering.
async fn expect_hang_up(addr: SocketAddr, bytes: &[u8], what: &str) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(bytes).await;
    let mut buf = [0u8; 1024];
    match tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf)).await {
        Ok(Ok(0) | Err(_)) => {}
        Ok(Ok(n)) => panic!("{what}: the server answered {n} bytes"),
        Err(_) => panic!("{what}: the server did not hang up"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_disconnected_and_the_server_keeps_serving() {
    let server = Server::any_port(config(2));
    let mut rng = rand::thread_rng();

    let mut random = vec![0u8; 100_000];
    rng.fill_bytes(&mut random);
    expect_hang_up(server.addr, &random, "random bytes").await;

    let mut small_bad_crc = vec![0u8; 300];
    rng.fill_bytes(&mut small_bad_crc);
    small_bad_crc[..4].copy_from_slice(&100u32.to_le_bytes());
    expect_hang_up(server.addr, &small_bad_crc, "a damaged frame").await;

    let mut oversized = (u32::MAX - 8).to_le_bytes().to_vec();
    oversized.extend_from_slice(&[0; 64]);
    expect_hang_up(server.addr, &oversized, "an impossible length").await;

    // Within the frame limit but over the handshake's 64 KiB.
    let mut large = 1_000_000u32.to_le_bytes().to_vec();
    large.extend_from_slice(&[0; 64]);
    expect_hang_up(server.addr, &large, "a large frame before the handshake").await;

    // Intact frames whose bodies are not messages.
    let mut body = vec![0u8; 200];
    rng.fill_bytes(&mut body);
    body[0] = codec::FORMAT_VERSION;
    let mut framed = Vec::new();
    frame::encode(&body, &mut framed);
    expect_hang_up(server.addr, &framed, "an undecodable message").await;
    let mut framed = Vec::new();
    frame::encode(&codec::encode(&"hello?").unwrap(), &mut framed);
    expect_hang_up(server.addr, &framed, "a message of another type").await;

    // Still serving, and still running.
    let peers = peers(config(1), 2, server.addr);
    assert_eq!(peers.request(2, ECHO, vec![9], None).await.unwrap(), [9]);
    assert_eq!(server.calls(), 1);
    assert!(!server.task.is_finished());
    server.stop().await;
}
