//! Shared by the SDK suite runners (`sdk_python.rs`, `sdk_js.rs`): a real `perdure serve` with
//! its gRPC listener (the Durable Task sidecar protocol) on a free local port, the tools made
//! by `.ci/sdk-env.sh`, and running a suite as a child process with `PERDURE_GRPC_ADDR` set.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{free_port, Server};

/// The repository's root (the workspace).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// `path` (made by `.ci/sdk-env.sh`) if it exists. Otherwise `None` after printing a skip
/// message, or a panic naming `.ci/sdk-env.sh` when `PERDURE_TEST_REQUIRE_TOOLS=1` (CI).
pub fn tool(path: PathBuf, what: &str) -> Option<PathBuf> {
    if path.exists() {
        return Some(path);
    }
    let required = std::env::var("PERDURE_TEST_REQUIRE_TOOLS").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{what} ({}) is missing and PERDURE_TEST_REQUIRE_TOOLS=1: run `bash .ci/sdk-env.sh` first",
        path.display()
    );
    eprintln!(
        "SKIPPED: {what} ({}) is missing: run `bash .ci/sdk-env.sh` to set it up",
        path.display()
    );
    None
}

/// A node serving the Durable Task gRPC protocol at `grpc_addr` (`127.0.0.1:PORT`).
pub struct GrpcNode {
    pub server: Server,
    pub grpc_addr: String,
}

/// Whether `addr` accepts a TCP connection.
pub fn accepts(addr: &str) -> bool {
    let sock: SocketAddr = addr.parse().unwrap();
    TcpStream::connect_timeout(&sock, Duration::from_millis(500)).is_ok()
}

/// Starts `perdure serve` with `PERDURE_GRPC__ADDR=127.0.0.1:PORT` (a free port) and waits
/// until the gRPC port accepts connections.
pub fn start_node() -> GrpcNode {
    let mut last = String::new();
    for _ in 0..3 {
        let grpc_addr = format!("127.0.0.1:{}", free_port());
        let mut server = Server::start_with_env(&[("PERDURE_GRPC__ADDR", grpc_addr.as_str())]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.running() {
            if accepts(&grpc_addr) {
                return GrpcNode { server, grpc_addr };
            }
            assert!(
                Instant::now() < deadline,
                "the node runs but its gRPC listener ({grpc_addr}) never accepted connections \
                 within 30 s; its log:\n{}",
                server.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // the node exited: the port may have been taken meanwhile, try another
        last = server.stderr();
    }
    panic!("the node exited at start three times; its last log:\n{last}");
}

/// Runs `cmd` (from the repository root) to the end, prints its output, and panics (with
/// `logs()`, the nodes' log tails) unless it exits 0.
pub fn run_suite(what: &str, mut cmd: Command, logs: &dyn Fn() -> String) {
    let started = Instant::now();
    let out = cmd
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|e| panic!("run {what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("--- {what} stdout ---\n{stdout}");
    println!("--- {what} stderr ---\n{stderr}");
    println!("--- {what}: {} after {:.0?}", out.status, started.elapsed());
    if !out.status.success() {
        panic!(
            "{what} failed ({}); the nodes' last log lines:\n{}",
            out.status,
            logs()
        );
    }
}

/// The last `n` lines of `log`.
pub fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
