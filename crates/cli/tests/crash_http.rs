//! Crash test over HTTP with the real binary: concurrent clients signal `add` to counters, each
//! signal with its own idempotency key, retrying the same key on any error until acknowledged,
//! while the server is `kill -9`ed and restarted 20 times. Every client finishes its last signal
//! before the end, so every add is acknowledged, and each counter must end exactly at the sum of
//! its acknowledged adds: no add lost, none applied twice. `PERDURE_TEST_SEED=N` replays a run.

mod common;

use common::cluster::{assert_counters_exact, Adders};
use common::free_port;

use rand::{Rng, SeedableRng};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CLIENTS: usize = 8;
const COUNTERS: usize = 12;
const KILLS: usize = 20;

fn start(data: &std::path::Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_perdure"))
        .args([
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--partitions",
            "4",
        ])
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .args(["--grpc-addr", "127.0.0.1:0"])
        .args(["--snapshot-every", "500"])
        .env("PERDURE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start perdure serve")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_add_counts_once_across_kill_9() {
    let seed = common::test_seed("http crash test");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let server = Arc::new(Mutex::new(start(&data, port)));
    let http = common::cluster::http_client();

    let adders = Adders::start(&http, vec![url.clone()], CLIENTS as u64, COUNTERS, seed);

    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let started = Instant::now();
    for k in 0..KILLS {
        let wait = rng.gen_range(300..1200);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let mut s = server.lock().unwrap();
        s.kill().expect("kill -9");
        s.wait().unwrap();
        *s = start(&data, port);
        eprintln!("kill {k} after {wait} ms");
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let added = adders.stop().await;
    assert_counters_exact(&http, &url, &added.sums).await;
    let checked = added.sums.len();
    assert!(
        checked >= COUNTERS / 2,
        "too few counters were written to prove anything"
    );
    assert!(
        added.retries > 0,
        "no request ever failed: the kills did not bite"
    );
    eprintln!(
        "{} signals over {KILLS} kills in {:?}: {} retries, {} acknowledged as duplicates, {checked} counters exact",
        added.adds,
        started.elapsed(),
        added.retries,
        added.duplicates
    );
    let mut s = server.lock().unwrap();
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(s.id().to_string())
        .status();
    let status = s.wait().unwrap();
    assert!(
        status.success(),
        "graceful shutdown after SIGTERM: {status}"
    );
}
