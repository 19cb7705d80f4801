//! Hardening case 5: a node started at the usual default open-files soft limit (1 024) while a
//! client holds 1,100 idle HTTP connections. Before, accept failed with EMFILE (new clients,
//! probes included, hung), snapshot writes failed and stopped every Raft group while `/readyz`
//! said 200. Now the node raises its soft limit to the hard limit at start and caps its
//! connections below it: new clients are served, writes (with snapshots) commit, and SIGTERM
//! stops it within a few seconds.

mod common;

use common::BIN;
use perdure_harness::{Node, NodeSpec, StartOptions};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

/// A script that starts `bin` with an open-files soft limit of 1 024.
fn low_limit_wrapper(dir: &std::path::Path, bin: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("perdure-at-1024-files");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nulimit -S -n 1024 || exit 97\nexec '{}' \"$@\"\n",
            bin.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_at_1024_open_files_serves_and_stops_while_1100_connections_idle() {
    // this test process holds the connections: it needs the files too
    perdure_node::limits::raise_open_files_limit();
    let dir = tempfile::tempdir().unwrap();
    let spec = NodeSpec::new(1, 0, dir.path()).unwrap();
    let mut config = spec.config(&[]);
    config.partitions = 4;
    // snapshots open files: the path that failed with EMFILE
    config.raft.snapshot_every_entries = 50;
    spec.write_config(&config).unwrap();
    let bin: std::path::PathBuf =
        std::env::var_os("PERDURE_TEST_BIN").map_or_else(|| BIN.into(), Into::into);
    let mut node = Node::new(spec.clone(), low_limit_wrapper(dir.path(), &bin));
    node.start(&StartOptions {
        log: Some("info".into()),
        ..Default::default()
    })
    .unwrap();
    node.wait_ready(Duration::from_secs(30)).unwrap();

    let idle: Vec<std::net::TcpStream> = (0..1100)
        .map(|_| std::net::TcpStream::connect(spec.http_addr()).unwrap())
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // a new client (a readiness probe) is still served
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let r = http
        .get(format!("{}/readyz", spec.url()))
        .send()
        .await
        .expect("a new client was not served while 1,100 connections idle");
    assert_eq!(r.status(), 200);
    // writes commit, across several snapshots per partition
    for i in 0..400 {
        let r = http
            .post(format!(
                "{}{}/entities/counter/c{}/call?op=add",
                spec.url(),
                common::BASE,
                i % 16
            ))
            .json(&1)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            200,
            "write {i}: {}",
            r.text().await.unwrap_or_default()
        );
    }
    let r = http
        .get(format!("{}/readyz", spec.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let log = node.log();
    assert!(
        log.contains("open-files limit"),
        "the limits are not logged"
    );

    // SIGTERM stops it promptly, the connections still open
    let t = Instant::now();
    let status = node
        .stop(Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "{status}");
    eprintln!("stopped in {:?} with 1,100 idle connections", t.elapsed());
    drop(idle);
}
