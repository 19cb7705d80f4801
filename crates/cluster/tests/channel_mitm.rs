//! A man in the middle of the node channel (Hardening cases 1 and 2): a relay on the path
//! between two transport endpoints that never knew the cluster secret. It sees every frame
//! (`[len u32][crc32 u32][body]`), and may change, inject, replay or reorder them, fixing the
//! CRC each time; or, sitting at a stopped node's address, it relays another node's handshake
//! while claiming to be the stopped node. Every such attempt must be refused, the connection
//! closed, and no request it forged, repeated or misattributed may reach a handler.

use perdure_cluster::transport::{
    handler_fn, serve, ChannelStats, Handler, Peers, TransportConfig, TransportError,
};
use perdure_types::codec::{self, frame};
use perdure_types::NodeId;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const SECRET: &str = "a-cluster-secret-of-32-bytes-or-more!";
const ECHO: u16 = 1;

fn config(node_id: NodeId) -> TransportConfig {
    TransportConfig {
        cluster_id: "mitm-test".into(),
        node_id,
        partitions: 8,
        secret: SECRET.into(),
        tls: None,
        rpc_timeout: Duration::from_secs(2),
        stats: Default::default(),
    }
}

/// Every request body a server's handler received, with the node it came from.
type Seen = Arc<Mutex<Vec<(NodeId, Vec<u8>)>>>;

fn recording_handler(seen: Seen) -> Arc<dyn Handler> {
    Arc::new(handler_fn(move |from, _kind, body: Vec<u8>| {
        seen.lock().unwrap().push((from, body.clone()));
        async move { Ok(body) }
    }))
}

/// A transport server (node `node_id`) on a random port; its handler records what it ran.
async fn server(node_id: NodeId) -> (SocketAddr, Seen, ChannelStats, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Seen::default();
    let (stop, stopped) = oneshot::channel::<()>();
    let config = config(node_id);
    let stats = config.stats.clone();
    tokio::spawn(serve(
        listener,
        Arc::new(config),
        recording_handler(seen.clone()),
        async {
            let _ = stopped.await;
        },
    ));
    (addr, seen, stats, stop)
}

/// Which way a frame travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    ToServer,
    ToClient,
}

/// What the relay does with frame number `index` (counted per direction from 0) of `body`:
/// the frames to send in its place (empty: drop it).
type Tamper = Arc<dyn Fn(Dir, usize, &[u8]) -> Vec<Vec<u8>> + Send + Sync>;

/// What the relay saw: when each side's connection ended.
#[derive(Default)]
struct Watch {
    /// The server closed its side (it refused the connection, or the client went away).
    server_closed: bool,
    /// The client closed its side.
    client_closed: bool,
}

/// A frame-aware TCP relay in front of `target`: each frame read from one side is passed to
/// `tamper`, and what it returns is written (re-framed with a correct CRC) to the other side.
async fn relay(target: SocketAddr, tamper: Tamper) -> (SocketAddr, Arc<Mutex<Watch>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let watch = Arc::new(Mutex::new(Watch::default()));
    let w = watch.clone();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let Ok(outbound) = TcpStream::connect(target).await else {
                continue;
            };
            let (crd, cwr) = inbound.into_split();
            let (srd, swr) = outbound.into_split();
            let (t1, t2) = (tamper.clone(), tamper.clone());
            let (w1, w2) = (w.clone(), w.clone());
            tokio::spawn(async move {
                pump(crd, swr, Dir::ToServer, t1).await;
                w1.lock().unwrap().client_closed = true;
            });
            tokio::spawn(async move {
                pump(srd, cwr, Dir::ToClient, t2).await;
                w2.lock().unwrap().server_closed = true;
            });
        }
    });
    (addr, watch)
}

/// Relays frames from `rd` to `wr` through `tamper` until `rd` ends or a write fails.
async fn pump(mut rd: OwnedReadHalf, mut wr: OwnedWriteHalf, dir: Dir, tamper: Tamper) {
    let mut index = 0;
    loop {
        let mut header = [0u8; frame::HEADER_LEN];
        if rd.read_exact(&mut header).await.is_err() {
            break;
        }
        let len = u32::from_le_bytes(header[..4].try_into().unwrap()) as usize;
        let mut body = vec![0u8; len];
        if rd.read_exact(&mut body).await.is_err() {
            break;
        }
        let mut out = Vec::new();
        for b in tamper(dir, index, &body) {
            frame::encode(&b, &mut out);
        }
        index += 1;
        if wr.write_all(&out).await.is_err() {
            break;
        }
    }
    let _ = wr.shutdown().await;
}

/// `haystack` with the first `from` replaced by `to` (same length).
fn replace(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut out = haystack.to_vec();
    let at = haystack
        .windows(from.len())
        .position(|w| w == from)
        .expect("the relay reads the request in clear text");
    out[at..at + to.len()].copy_from_slice(to);
    out
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(10), "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The first request's frame to the server (after the two handshake frames each way).
const FIRST_REQUEST: usize = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_changes_or_injects_a_frame_is_refused_and_nothing_it_sent_runs() {
    for inject in [false, true] {
        let (addr, seen, stats, stop) = server(2).await;
        // The relay turns `add 5` into `add 9` (and fixes the CRC); with `inject`, it also sends
        // its own `add 1000000` first, made from the captured frame.
        let tamper: Tamper = Arc::new(move |dir, i, body| {
            if dir == Dir::ToServer && i == FIRST_REQUEST {
                let changed = replace(body, b"add 5", b"add 9");
                if inject {
                    let own = replace(body, b"add 5      ", b"add 1000000");
                    return vec![own, changed];
                }
                return vec![changed];
            }
            vec![body.to_vec()]
        });
        let (relay_addr, watch) = relay(addr, tamper).await;
        let peers = Peers::new(Arc::new(config(1)));
        peers.set_address(2, relay_addr.to_string());
        let answer = peers.request(2, ECHO, b"add 5      ".to_vec(), None).await;
        assert!(
            answer.is_err(),
            "inject {inject}: a changed request was answered: {answer:?}"
        );
        eventually("the server closes the tampered connection", || {
            watch.lock().unwrap().server_closed
        })
        .await;
        let seen = seen.lock().unwrap().clone();
        assert!(
            seen.is_empty(),
            "inject {inject}: the handler ran requests the client never sent: {seen:?}"
        );
        assert_eq!(stats.frames_refused(), 1, "inject {inject}: counted");
        let _ = stop.send(());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_replays_or_reorders_frames_is_refused() {
    // Replay: the captured request again, 3 times. Reorder: the second request before the
    // first. Drop then replay: the first request held back, sent after the second.
    for case in ["replay", "reorder", "drop-then-replay"] {
        let (addr, seen, stats, stop) = server(2).await;
        let held: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
        let tamper: Tamper = Arc::new(move |dir, i, body| {
            if dir != Dir::ToServer || i < FIRST_REQUEST {
                return vec![body.to_vec()];
            }
            let mut held = held.lock().unwrap();
            match (case, i - FIRST_REQUEST) {
                ("replay", 0) => vec![body.to_vec(); 4],
                ("reorder", 0) | ("drop-then-replay", 0) => {
                    *held = Some(body.to_vec());
                    vec![]
                }
                ("reorder", 1) => vec![body.to_vec(), held.take().unwrap()],
                ("drop-then-replay", 1) => vec![body.to_vec()],
                ("drop-then-replay", 2) => vec![held.take().unwrap(), body.to_vec()],
                _ => vec![body.to_vec()],
            }
        });
        let (relay_addr, watch) = relay(addr, tamper).await;
        let peers = Peers::new(Arc::new(config(1)));
        peers.set_address(2, relay_addr.to_string());
        let timeout = Some(Duration::from_millis(300));
        let mut sent = Vec::new();
        for n in 0..3u8 {
            let body = vec![b'r', n];
            sent.push(body.clone());
            let _ = peers.request(2, ECHO, body, timeout).await;
            if watch.lock().unwrap().server_closed {
                break;
            }
        }
        eventually(&format!("{case}: the server closes the connection"), || {
            watch.lock().unwrap().server_closed
        })
        .await;
        let seen: Vec<Vec<u8>> = seen.lock().unwrap().iter().map(|s| s.1.clone()).collect();
        // What ran is what the client sent, each once, in order: a prefix of `sent` at most,
        // and never one of them twice or out of order.
        let prefix = &sent[..seen.len().min(sent.len())];
        assert!(
            seen.len() <= 1 && seen == prefix,
            "{case}: the handler ran {seen:?} for {sent:?}"
        );
        assert_eq!(stats.frames_refused(), 1, "{case}: counted");
        let _ = stop.send(());
    }
}

/// The transport's handshake messages as far as the relay needs them (the first two variants of
/// its `Message` enum, same fields), to rewrite the node ids they carry.
#[derive(Debug, Serialize, Deserialize)]
enum Handshake {
    Hello {
        version: u32,
        cluster_id: String,
        node_id: NodeId,
        partitions: u32,
        nonce: [u8; 32],
    },
    Challenge {
        node_id: NodeId,
        nonce: [u8; 32],
        proof: [u8; 32],
    },
}

/// `body` with the node id of a Hello or Challenge set to `id` (other frames unchanged).
fn claim(body: &[u8], id: NodeId) -> Vec<u8> {
    match codec::decode::<Handshake>(body) {
        Ok(Handshake::Hello {
            version,
            cluster_id,
            partitions,
            nonce,
            ..
        }) => codec::encode(&Handshake::Hello {
            version,
            cluster_id,
            node_id: id,
            partitions,
            nonce,
        })
        .unwrap(),
        Ok(Handshake::Challenge { nonce, proof, .. }) => codec::encode(&Handshake::Challenge {
            node_id: id,
            nonce,
            proof,
        })
        .unwrap(),
        Err(_) => body.to_vec(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_at_a_stopped_nodes_address_cannot_pass_for_that_node() {
    // Node 3 is stopped; the relay took its address. Node 1 connects to "node 3"; the relay
    // hands the connection to node 2 and rewrites node 2's Challenge to say node 3, and (second
    // round) also node 1's Hello, so that node 2 takes the connection for one from node 3.
    for rewrite_hello in [false, true] {
        let (addr, seen, _, stop) = server(2).await;
        let tamper: Tamper = Arc::new(move |dir, i, body| match (dir, i) {
            (Dir::ToClient, 0) => vec![claim(body, 3)],
            (Dir::ToServer, 0) if rewrite_hello => vec![claim(body, 3)],
            _ => vec![body.to_vec()],
        });
        let (relay_addr, watch) = relay(addr, tamper).await;
        let node1 = config(1);
        let stats = node1.stats.clone();
        let peers = Peers::new(Arc::new(node1));
        peers.set_address(3, relay_addr.to_string());
        let answer = peers.request(3, ECHO, b"signal".to_vec(), None).await;
        match &answer {
            Err(TransportError::Refused { node: 3, reason }) => {
                assert!(reason.contains("a relay"), "{reason}")
            }
            other => panic!("node 1 took the relay for node 3: {other:?}"),
        }
        assert_eq!(stats.handshakes_refused(), 1);
        eventually("the relayed connection closes", || {
            let w = watch.lock().unwrap();
            w.server_closed || w.client_closed
        })
        .await;
        let seen = seen.lock().unwrap().clone();
        assert!(
            seen.is_empty(),
            "node 2 ran requests relayed from a session node 1 opened with node 3: {seen:?}"
        );
        let _ = stop.send(());
    }
}
