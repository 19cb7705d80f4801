//! A 3-node cluster of real `perdure` processes whose node channel is TLS (`[cluster.tls]`),
//! with a CA and node certificates made by `perdure cert`: it forms and serves entity requests
//! through every node (forwarded over TLS); a node given another node's certificate refuses to
//! start, naming the key.

mod common;

use common::cluster::{http_client, ready, test_bin, test_config, three_members, NodeSpec, Nodes};
use perdure_types::config::TlsConfig;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const PARTITIONS: usize = 8;

/// `perdure cert --dir DIR --nodes 1,2,3`.
fn make_certs(dir: &Path) {
    let out = Command::new(test_bin())
        .args(["cert", "--dir"])
        .arg(dir)
        .args(["--nodes", "1,2,3"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("[cluster.tls]"), "{shown}");
}

/// Member `m`'s config over TLS with node `cert_of`'s certificate, and no secret.
fn write_tls_config(m: &NodeSpec, all: &[NodeSpec], certs: &Path, cert_of: u64) {
    let mut c = test_config(m, all, "tls", "", PARTITIONS);
    c.cluster.tls = Some(TlsConfig {
        ca: certs.join("ca.pem"),
        cert: certs.join(format!("node-{cert_of}.pem")),
        key: certs.join(format!("node-{cert_of}.key")),
    });
    m.write_config(&c).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_over_tls_forms_and_serves_through_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    make_certs(&certs);
    let members = three_members(dir.path());
    for m in &members {
        write_tls_config(m, &members, &certs, m.id);
    }
    let nodes = Nodes::start(&members);
    for m in &members {
        assert!(
            ready(&m.url(), Duration::from_secs(60)).await,
            "node {} not ready",
            m.id
        );
    }
    let http = http_client();
    // adds through every node: most are forwarded to a leader on another node, over TLS
    for (i, m) in members.iter().cycle().take(30).enumerate() {
        let url = format!(
            "{}/runtime/webhooks/durabletask/entities/counter/k{}?op=add",
            m.url(),
            i % 5
        );
        let r = http.post(url).body("5").send().await.unwrap();
        assert_eq!(r.status(), 202, "add {i} through node {}", m.id);
    }
    for m in &members {
        for k in 0..5 {
            let url = format!(
                "{}/runtime/webhooks/durabletask/entities/counter/k{k}/call?op=get",
                m.url()
            );
            let t = Instant::now();
            loop {
                let r = http.post(&url).send().await.unwrap();
                let v: serde_json::Value = r.json().await.unwrap_or_default();
                if v == 30 {
                    break;
                }
                assert!(
                    t.elapsed() < Duration::from_secs(20),
                    "counter/k{k} through node {}: {v}",
                    m.id
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    drop(nodes);
}

#[test]
fn a_node_given_another_nodes_certificate_refuses_to_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    make_certs(&certs);
    let members = three_members(dir.path());
    // node 3 with node 2's certificate and key
    write_tls_config(&members[2], &members, &certs, 2);
    let out = Command::new(test_bin())
        .args(["serve", "--config"])
        .arg(&members[2].config)
        .env_remove("PERDURE_CLUSTER__SECRET")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cluster.tls.cert") && stderr.contains("node-3.perdure"),
        "{stderr}"
    );
}
