#!/usr/bin/env bash
# The orchestration peer of perdure's benchmarks: duroxide 0.1.32 (crates.io) with its bundled
# SQLite provider, in process (benches/peers/duroxide, its own Cargo project: the workspace and CI
# never compile it). Builds it (release, into target/peers; the first build takes several
# minutes: sqlx and a bundled SQLite) and runs the scenarios, passing the options on:
#   bash benches/peers/duroxide.sh build
#   bash benches/peers/duroxide.sh run [--instances 1000] [--concurrency 64] [--latency-instances 200]
#        [--poll-ms 2] [--slots 2,8] [--fan-out 1000] [--db-dir DIR] [--json OUT]
# Durability: SQLite in WAL mode with synchronous=NORMAL (duroxide's "WAL"): commits are not
# fsynced one by one.
set -euo pipefail
cd "$(dirname "$0")/../.."
PEERS=target/peers
BIN="$PEERS/release/perdure-peer-duroxide"
build() {
  echo "building the duroxide peer (duroxide 0.1.32, sqlite)" >&2
  cargo build --release --quiet --manifest-path benches/peers/duroxide/Cargo.toml --target-dir "$PEERS"
}
case "${1:-run}" in
  build) build ;;
  # its own warnings (SQLite "database is locked" retries) only as errors
  run) shift || true; build; RUST_LOG="${RUST_LOG:-error}" "$BIN" "$@" ;;
  *) echo "usage: $0 build|run [options]" >&2; exit 2 ;;
esac
