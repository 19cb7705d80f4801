#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60); fails on the first crash, leak, timeout
# or out-of-memory. Installs the nightly toolchain and cargo-fuzz when missing.
#
#   bash fuzz/run.sh            # CI-sized: 60 s per target
#   bash fuzz/run.sh 3600       # an hour per target
#   TARGETS="wal_segment" bash fuzz/run.sh 600
#   FUZZ_TARGET_DIR=/var/cache/perdure-fuzz bash fuzz/run.sh   # keep the build between clones
#
# Findings: fuzz/artifacts/TARGET/crash-* (replay one with
# `cargo +nightly fuzz run TARGET fuzz/artifacts/TARGET/crash-...`). The corpus grows in
# fuzz/corpus/TARGET (not committed), seeded from fuzz/seeds/TARGET.
set -euo pipefail

SECONDS_PER_TARGET="${1:-60}"
TARGETS="${TARGETS:-codec wal_segment transport_frames}"
CARGO_FUZZ_VERSION=0.13.1

cd "$(dirname "$0")/.."

if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

dir_args=()
if [ -n "${FUZZ_TARGET_DIR:-}" ]; then
    dir_args=(--target-dir "$FUZZ_TARGET_DIR")
fi

start=$(date +%s)
for target in $TARGETS; do
    cargo +nightly fuzz build "${dir_args[@]}" "$target"
done
echo "fuzz: built in $(($(date +%s) - start)) s"

mkdir -p fuzz/logs
for target in $TARGETS; do
    corpus="fuzz/corpus/$target"
    log="fuzz/logs/$target.log"
    mkdir -p "$corpus"
    dirs=("$corpus")
    if [ -d "fuzz/seeds/$target" ]; then
        dirs+=("fuzz/seeds/$target")
    fi
    echo "fuzz: $target for $SECONDS_PER_TARGET s (log: $log)"
    status=0
    cargo +nightly fuzz run "${dir_args[@]}" "$target" "${dirs[@]}" -- \
        -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 >"$log" 2>&1 || status=$?
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|stat::new_units_added)' "$log" || true
    grep -E '^#[0-9]+' "$log" | tail -n 1 || true
    if [ "$status" -ne 0 ]; then
        tail -n 60 "$log" >&2
        echo "fuzz: $target FAILED (exit $status); the input is in fuzz/artifacts/$target/" >&2
        exit 1
    fi
done
echo "fuzz: every target ran $SECONDS_PER_TARGET s without a finding ($(($(date +%s) - start)) s in all)"
