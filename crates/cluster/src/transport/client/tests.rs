//! Tests of the client side against fake peers: dead-peer detection by ping, slow peers and
//! connections, backoff.

use super::*;
use tokio::net::TcpListener;

fn config(node_id: NodeId, rpc_timeout_ms: u64) -> Arc<TransportConfig> {
    Arc::new(TransportConfig {
        cluster_id: "c".into(),
        node_id,
        partitions: 4,
        secret: "the-secret-of-the-cluster".into(),
        tls: None,
        rpc_timeout: Duration::from_millis(rpc_timeout_ms),
        stats: Default::default(),
    })
}

/// A peer that completes the handshake, then answers each request after `answer_after`
/// (never if `None`) and answers pings only if `pongs`.
async fn fake_peer(answer_after: Option<Duration>, pongs: bool) -> std::net::SocketAddr {
    fake_peer_after(Duration::ZERO, answer_after, pongs).await
}

/// A peer that accepts one connection, answers the handshake after `handshake_after`, then
/// answers requests after `answer_after` (never if `None`) and pings if `pongs`.
async fn fake_peer_after(
    handshake_after: Duration,
    answer_after: Option<Duration>,
    pongs: bool,
) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        tokio::time::sleep(handshake_after).await;
        let (mut rd, mut wr) = stream.into_split();
        let mut reader = FrameReader::new();
        let config = config(2, 100);
        let handshake =
            super::super::server::handshake(&mut reader, &mut rd, &mut wr, &config, None);
        let Ok((_, seal)) = handshake.await else {
            panic!("handshake failed");
        };
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(wire::write_loop(rx, wr, seal));
        while let Ok(Some(m)) = reader.next(&mut rd, FRAME_LIMIT).await {
            match m {
                Message::Request { id, body, .. } => {
                    if let Some(after) = answer_after {
                        let tx = tx.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(after).await;
                            let _ = tx.send(Message::Response { id, body });
                        });
                    }
                }
                Message::Ping if pongs => {
                    let _ = tx.send(Message::Pong);
                }
                _ => {}
            }
        }
    });
    addr
}

#[tokio::test]
async fn a_silent_peer_is_taken_as_dead_before_the_request_times_out() {
    let addr = fake_peer(None, false).await;
    let peers = Peers::new(config(1, 100));
    peers.set_address(2, addr.to_string());
    let start = Instant::now();
    match peers
        .request(2, 1, vec![1], Some(Duration::from_secs(10)))
        .await
    {
        Err(TransportError::Unreachable { node: 2, reason }) => {
            assert!(reason.contains("no data from the peer"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // three silent periods of 100 ms, give or take a tick
    let took = start.elapsed();
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[tokio::test]
async fn a_slow_peer_that_answers_pings_keeps_its_connection() {
    // answers after 5 periods of 200 ms: kept alive by pings
    let addr = fake_peer(Some(Duration::from_millis(1000)), true).await;
    let peers = Peers::new(config(1, 200));
    peers.set_address(2, addr.to_string());
    let answer = peers
        .request(2, 1, vec![7], Some(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(answer, [7]);
}

#[tokio::test]
async fn a_connection_slower_than_the_request_that_started_it_serves_the_next_one() {
    // the handshake takes 300 ms; the peer accepts one connection only
    let addr = fake_peer_after(Duration::from_millis(300), Some(Duration::ZERO), true).await;
    let peers = Peers::new(config(1, 100));
    peers.set_address(2, addr.to_string());
    let first = peers
        .request(2, 1, vec![1], Some(Duration::from_millis(100)))
        .await;
    assert!(
        matches!(first, Err(TransportError::Timeout { node: 2, .. })),
        "{first:?}"
    );
    // the attempt went on without the request that gave up: the next one finds it made
    tokio::time::sleep(Duration::from_millis(500)).await;
    let answer = peers
        .request(2, 1, vec![9], Some(Duration::from_millis(100)))
        .await
        .unwrap();
    assert_eq!(answer, [9]);
}

#[test]
fn backoff_doubles_from_50_ms_to_2_s() {
    let slot = Slot {
        node: 2,
        state: Mutex::new(SlotState::default()),
        connecting: Default::default(),
    };
    for expected_ms in [50, 100, 200, 400, 800, 1600, 2000, 2000] {
        let before = Instant::now();
        slot.failed(Failure::Unreachable("down".into()));
        let wait = lock(&slot.state).retry_at.unwrap() - before;
        let expected = Duration::from_millis(expected_ms);
        assert!(
            wait >= expected && wait < expected + Duration::from_millis(100),
            "{wait:?} instead of {expected:?}"
        );
    }
    match slot.ready() {
        Err(TransportError::Unreachable { node: 2, reason }) => {
            assert!(reason.starts_with("down (next attempt in "), "{reason}")
        }
        other => panic!("{:?}", other.map(|c| c.is_some())),
    }
}
