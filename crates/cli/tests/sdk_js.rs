//! The official Durable Task JavaScript SDK (`@microsoft/durabletask-js`) against the real
//! binary: starts `perdure serve` with its gRPC listener on a free port, then runs the sample
//! `examples/durabletask-js/chaining.js` (a worker and a client: a 3-activity chaining
//! orchestration) with `PERDURE_GRPC_ADDR` set, and asserts that it exits 0.
//!
//! Needs `node` and the sample's `node_modules` (`bash .ci/sdk-env.sh` runs `npm ci`). Without
//! them the test prints a skip message and passes, unless `PERDURE_TEST_REQUIRE_TOOLS=1` (CI),
//! where it fails.

mod common;
#[path = "sdk/runner.rs"]
mod sdk;

use std::process::Command;

#[test]
fn js_sdk_chaining_sample() {
    let root = sdk::repo_root();
    let sample = root.join("examples/durabletask-js");
    let Some(_) = sdk::tool(
        sample.join("node_modules/@microsoft/durabletask-js"),
        "the JavaScript sample's npm packages",
    ) else {
        return;
    };
    let node_bin = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("node"))
            .find(|p| p.is_file())
    });
    let Some(node_bin) = sdk::tool(node_bin.unwrap_or_else(|| "node".into()), "node") else {
        return;
    };
    let node = sdk::start_node();
    let mut cmd = Command::new(node_bin);
    cmd.arg(sample.join("chaining.js"));
    cmd.env("PERDURE_GRPC_ADDR", &node.grpc_addr);
    sdk::run_suite("node examples/durabletask-js/chaining.js", cmd, &|| {
        sdk::tail(&node.server.stderr(), 200)
    });
}
