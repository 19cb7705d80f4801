//! The official Durable Task Python SDK (`durabletask` 1.12.0) as client and worker against the
//! real binary: our pytest suite (`crates/cli/tests/sdk/python`, see
//! `crates/cli/tests/sdk/README.md`) with `PERDURE_GRPC_ADDR` set, asserting that pytest exits 0:
//! - against one `perdure serve` with its gRPC listener on a free port;
//! - against a 3-node cluster, the workers connected to node 1 and the clients to node 2
//!   (`PERDURE_GRPC_WORKER_ADDR`), so work crosses nodes.
//!
//! `PERDURE_SDK_PYTEST_ARGS` adds pytest arguments (e.g. `-k entity`).
//!
//! Needs the venv made by `bash .ci/sdk-env.sh` (`target/sdk-venv`). Without it the tests print
//! a skip message and pass, unless `PERDURE_TEST_REQUIRE_TOOLS=1` (CI), where they fail.

mod common;
#[path = "sdk/runner.rs"]
mod sdk;

use common::cluster::{self, Nodes};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn venv_python() -> Option<PathBuf> {
    sdk::tool(
        sdk::repo_root().join("target/sdk-venv/bin/python"),
        "the Python SDK venv",
    )
}

fn pytest(python: PathBuf, client_addr: &str, worker_addr: &str) -> Command {
    let mut cmd = Command::new(python);
    cmd.args(["-m", "pytest", "crates/cli/tests/sdk/python", "-q", "-rsxX"])
        .env("PERDURE_SDK_BACKEND", "perdure")
        .env("PERDURE_GRPC_ADDR", client_addr)
        .env("PERDURE_GRPC_WORKER_ADDR", worker_addr)
        // for the tests that start (and kill) a node of their own
        .env("PERDURE_BIN", common::BIN)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    // e.g. PERDURE_SDK_PYTEST_ARGS="-k entity -x" to run part of the suite
    if let Ok(more) = std::env::var("PERDURE_SDK_PYTEST_ARGS") {
        cmd.args(more.split_whitespace());
    }
    cmd
}

#[test]
fn python_sdk_suite() {
    let Some(python) = venv_python() else {
        return;
    };
    let node = sdk::start_node();
    println!("node: gRPC {}", node.grpc_addr);
    let cmd = pytest(python, &node.grpc_addr, &node.grpc_addr);
    sdk::run_suite("pytest crates/cli/tests/sdk/python", cmd, &|| {
        sdk::tail(&node.server.stderr(), 200)
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_suite_on_a_3_node_cluster() {
    let Some(python) = venv_python() else {
        return;
    };
    const PARTITIONS: usize = 6;
    let dir = tempfile::tempdir().unwrap();
    let specs: Vec<_> = cluster::three_members(dir.path())
        .into_iter()
        .map(|m| m.with_grpc_port().unwrap())
        .collect();
    for m in &specs {
        let c = cluster::test_config(
            m,
            &specs,
            "sdk-python",
            "sdk-python-secret-0123456789abcdef",
            PARTITIONS,
        );
        m.write_config(&c).unwrap();
    }
    let mut nodes = Nodes::start(&specs);
    for n in nodes.0.iter_mut() {
        n.wait_ready(Duration::from_secs(60)).unwrap();
    }
    // every partition led, every gRPC listener up
    let http = cluster::http_client();
    let t = Instant::now();
    loop {
        let led = cluster::leaders(&http, &specs[0].url())
            .await
            .is_some_and(|l| l.values().sum::<usize>() == PARTITIONS);
        if led && specs.iter().all(|m| sdk::accepts(&m.grpc_addr())) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the cluster never settled"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (workers, clients) = (specs[0].grpc_addr(), specs[1].grpc_addr());
    println!("workers on node 1 (gRPC {workers}), clients on node 2 (gRPC {clients})");
    let cmd = pytest(python, &clients, &workers);
    let logs = || {
        nodes
            .0
            .iter()
            .enumerate()
            .map(|(i, n)| format!("--- node {} ---\n{}", i + 1, n.log_tail(80)))
            .collect::<Vec<_>>()
            .join("\n")
    };
    tokio::task::block_in_place(|| {
        sdk::run_suite("pytest crates/cli/tests/sdk/python (3 nodes)", cmd, &logs)
    });
}
