//! Crash test over HTTP with the real binary: concurrent clients signal `add` to counters, each
//! signal with its own idempotency key, retrying the same key on any error until acknowledged,
//! while the server is `kill -9`ed and restarted 20 times. Every client finishes its last signal
//! before the end, so every add is acknowledged, and each counter must end exactly at the sum of
//! its acknowledged adds: no add lost, none applied twice. `PERDURE_TEST_SEED=N` replays a run.

mod common;

use common::{free_port, BASE};

use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    let base = format!("http://127.0.0.1:{port}{BASE}");
    let server = Arc::new(Mutex::new(start(&data, port)));
    let http = common::cluster::http_client();

    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<HashMap<usize, i64>>> = Arc::default();
    let retries = Arc::new(AtomicU64::new(0));
    let duplicates = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (http, base, stop, acked, retries, duplicates) = (
            http.clone(),
            base.clone(),
            stop.clone(),
            acked.clone(),
            retries.clone(),
            duplicates.clone(),
        );
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ (c as u64 + 1));
        clients.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let counter = rng.gen_range(0..COUNTERS);
                let amount: i64 = rng.gen_range(1..=9);
                let key = format!("c{c}-{n}");
                n += 1;
                // the same key on every retry, until acknowledged
                loop {
                    let r = http
                        .post(format!("{base}/entities/counter/k{counter}?op=add"))
                        .header("Idempotency-Key", &key)
                        .json(&amount)
                        .send()
                        .await;
                    match r {
                        Ok(resp) if resp.status() == 202 => {
                            let body: serde_json::Value = resp.json().await.unwrap_or_default();
                            if body["duplicate"] == true {
                                duplicates.fetch_add(1, Ordering::Relaxed);
                            }
                            *acked.lock().unwrap().entry(counter).or_default() += amount;
                            break;
                        }
                        Ok(resp) if resp.status().is_client_error() => {
                            panic!("client error {}: {:?}", resp.status(), resp.text().await)
                        }
                        _ => {
                            retries.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(25)).await;
                        }
                    }
                }
            }
            n
        }));
    }

    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let started = Instant::now();
    for k in 0..KILLS {
        let wait = rng.gen_range(300..1200);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let mut s = server.lock().unwrap();
        s.kill().expect("kill -9");
        s.wait().unwrap();
        *s = start(&data, port);
        let sum: i64 = acked.lock().unwrap().values().sum();
        eprintln!("kill {k} after {wait} ms; acknowledged adds so far sum to {sum}");
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, Ordering::Relaxed);
    let mut signals = 0;
    for c in clients {
        signals += c.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let mut checked = 0;
    for (counter, sum) in &acked {
        let v: serde_json::Value = http
            .get(format!("{base}/entities/counter/k{counter}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            v.as_i64(),
            Some(*sum),
            "counter k{counter}: acknowledged adds sum to {sum}, state is {v}"
        );
        checked += 1;
    }
    assert!(
        checked >= COUNTERS / 2,
        "too few counters were written to prove anything"
    );
    assert!(
        retries.load(Ordering::Relaxed) > 0,
        "no request ever failed: the kills did not bite"
    );
    eprintln!(
        "{signals} signals over {KILLS} kills in {:?}: {} retries, {} acknowledged as duplicates, {checked} counters exact",
        started.elapsed(),
        retries.load(Ordering::Relaxed),
        duplicates.load(Ordering::Relaxed)
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
