#!/usr/bin/env bash
# The message brokers of the ingestion tests (crates/ingest/tests/sources.rs, through
# crates/harness/src/brokers.rs), on a fresh Debian machine; idempotent (installs only what is
# missing):
# - nats-server (Debian's, with JetStream) for the NATS JetStream source;
# - what tools/kafka-mock needs to build librdkafka from its bundled source (rdkafka-sys without
#   cmake: a C compiler, make, and the shell tools its configure script runs).
set -euo pipefail

missing=""
command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || missing="$missing nats-server"
command -v cc >/dev/null || missing="$missing gcc"
command -v c++ >/dev/null || missing="$missing g++"
command -v make >/dev/null || missing="$missing make"
command -v perl >/dev/null || missing="$missing perl"
command -v pkg-config >/dev/null || missing="$missing pkg-config"

if [ -n "$missing" ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -qq $missing >/dev/null
fi

{ command -v nats-server || echo /usr/sbin/nats-server; } | head -1
"$(command -v nats-server || echo /usr/sbin/nats-server)" --version
