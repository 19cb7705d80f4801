//! The official Durable Task Python SDK (`durabletask` 1.12.0) as client and worker against the
//! real binary: starts `perdure serve` with its gRPC listener on a free port, then runs our
//! pytest suite (`crates/cli/tests/sdk/python`, see `crates/cli/tests/sdk/README.md`) with
//! `PERDURE_GRPC_ADDR` set, and asserts that pytest exits 0.
//!
//! Needs the venv made by `bash .ci/sdk-env.sh` (`target/sdk-venv`). Without it the test prints
//! a skip message and passes, unless `PERDURE_TEST_REQUIRE_TOOLS=1` (CI), where it fails.

mod common;
#[path = "sdk/runner.rs"]
mod sdk;

use std::process::Command;

#[test]
fn python_sdk_suite() {
    let root = sdk::repo_root();
    let Some(python) = sdk::tool(
        root.join("target/sdk-venv/bin/python"),
        "the Python SDK venv",
    ) else {
        return;
    };
    let node = sdk::start_node();
    let mut cmd = Command::new(python);
    cmd.args(["-m", "pytest", "crates/cli/tests/sdk/python", "-q", "-rsxX"])
        .env("PERDURE_SDK_BACKEND", "perdure")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    sdk::run_suite("pytest crates/cli/tests/sdk/python", cmd, &node);
}
