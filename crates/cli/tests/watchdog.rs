//! The watchdog (Hardening case 14): a node whose async runtime stops making progress fails stop
//! with its threads in the log, instead of answering nothing forever.

mod common;

use common::cluster::{member, test_bin, test_config, Node};
use perdure_harness::StartOptions;
use std::time::{Duration, Instant};

#[test]
fn a_node_whose_runtime_stalls_exits_with_code_70_and_its_threads_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let m = member(1, dir.path());
    let mut c = test_config(&m, &[], "watchdog", "", 4);
    c.watchdog.stall_after_ms = 2000;
    m.write_config(&c).unwrap();
    let mut node = Node::new(m.clone(), test_bin());
    node.start(&StartOptions {
        env: vec![("PERDURE_TEST_STALL_RUNTIME_MS".into(), "1500".into())],
        ..Default::default()
    })
    .unwrap();
    node.wait_ready(Duration::from_secs(30)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = node.exit_status() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the stalled node still runs after 60 s; log:\n{}",
            node.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(70), "log:\n{}", node.log_tail(20));
    let log = node.log();
    assert!(log.contains("made no progress"), "log:\n{log}");
    // the thread list names the runtime's workers
    assert!(log.contains("tokio-rt-worker"), "log:\n{log}");
}

#[test]
fn a_node_stopped_for_longer_than_the_stall_bound_is_not_failed_when_it_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let m = member(2, dir.path());
    let mut c = test_config(&m, &[], "watchdog", "", 4);
    c.watchdog.stall_after_ms = 1000;
    m.write_config(&c).unwrap();
    let mut node = Node::new(m.clone(), test_bin());
    node.start(&StartOptions::default()).unwrap();
    node.wait_ready(Duration::from_secs(30)).unwrap();
    node.pause().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    node.resume().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert!(node.running(), "log:\n{}", node.log_tail(20));
    assert_eq!(
        perdure_harness::http_status(&m.http_addr(), "/readyz", Duration::from_secs(5)),
        Some(200)
    );
}
