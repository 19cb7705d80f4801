//! A wide fan-out with the real binary stays within bounded memory: `FanOutFanIn` of 20,000
//! activities on one node whose turns commit at most 500 decisions (and run at most 500 of the
//! instance's activities at once: `orchestrations.max_actions_per_turn`), its output checked, and
//! the node's peak resident memory (`VmHWM`) under a stated bound. The 100,000-wide run is a
//! benchmark (`perdure-bench fanout`, docs/PERFORMANCE.md "Orchestrations"): too slow for a test.
//!
//! What bounds the memory: a turn hands out its decisions in commands of at most
//! `max_actions_per_turn` (and 8 MiB), so no Raft entry, WAL record or apply batch holds the
//! whole fan-out; activities run at most `max_actions_per_turn` per instance and
//! `max_concurrent_activities` per node, the rest waiting as work items; results are recorded
//! `max_actions_per_turn` per turn. What grows with N is the orchestrator's own state (a task and
//! a decision per activity, each result once known), the decisions not committed yet, the Raft
//! log held until a snapshot (bounded by bytes, `raft.snapshot_every_log_bytes`) and the history
//! (in the partition's state file): measured, about 4 KiB per activity in a debug build (2.5 KiB
//! in release) on top of the node's 50-60 MiB.

mod common;

use common::cluster;
use perdure_harness::{Node, NodeSpec};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const BASE: &str = common::BASE;

/// Activities of the fan-out.
const N: u64 = 20_000;

/// The node's peak resident memory may not pass this (measured: about 126 MiB in a debug
/// build, 60 MiB of it before the start; twice that is the bound).
const MAX_PEAK_RSS: u64 = 256 << 20;

/// `VmHWM` (peak resident memory) of process `pid`, bytes.
fn peak_rss(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20000_wide_fan_out_completes_within_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let spec = NodeSpec::new(1, 0, dir.path()).unwrap();
    let mut config = spec.config(&[]);
    config.partitions = 4;
    config.samples.enabled = true;
    config.orchestrations.max_actions_per_turn = 500;
    spec.write_config(&config).unwrap();
    let mut node = Node::new(spec.clone(), cluster::test_bin());
    node.start(&Default::default()).unwrap();
    node.wait_ready(Duration::from_secs(30)).unwrap();
    let pid = node.pid().unwrap();
    let url = spec.url();
    let http = reqwest::Client::new();

    let t = Instant::now();
    let r = http
        .post(format!("{url}{BASE}/orchestrators/FanOutFanIn/wide"))
        .json(&json!(N))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let status: Value = loop {
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "not done in 600 s; node log:\n{}",
            node.log_tail(40)
        );
        let r = http
            .get(format!("{url}{BASE}/instances/wide/wait?timeoutMs=5000"))
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            break r.json().await.unwrap();
        }
        assert_eq!(r.status(), 202);
    };
    let took = t.elapsed();
    let peak = peak_rss(pid);
    assert_eq!(status["runtimeStatus"], "Completed", "{status}");
    assert_eq!(status["output"], json!(N * (N - 1) / 2), "{status}");
    // OrchestratorStarted + ExecutionStarted, a scheduling event and a result per activity,
    // the turns' OrchestratorStarted/Completed markers, the end
    let events = status["historyEventCount"].as_u64().unwrap();
    assert!(events > 2 * N && events < 3 * N, "{events} history events");
    eprintln!(
        "FanOutFanIn({N}), max_actions_per_turn 500: {:.1} s, node peak RSS {} MiB, {events} history events",
        took.as_secs_f64(),
        peak >> 20
    );
    assert!(
        peak < MAX_PEAK_RSS,
        "the node's peak RSS was {} MiB, over the bound of {} MiB",
        peak >> 20,
        MAX_PEAK_RSS >> 20
    );
    node.stop(Duration::from_secs(10)).unwrap();
}
