#!/usr/bin/env bash
# Starts a local 3-node perdure cluster on 127.0.0.1-3 (HTTP :7071, peers :7171, Durable Task gRPC :4001), data under
# ./perdure-cluster/, logs in ./perdure-cluster/nodeN.log. Ctrl-C stops all three.
#   bash deploy/local-cluster.sh            # build (release) and start
#   NODE_BIN=target/debug/perdure bash deploy/local-cluster.sh   (an existing binary)
#   CHANNEL=secret bash deploy/local-cluster.sh                   (no TLS: a shared secret)
# The node channel is secured per cluster, made once and kept across restarts; the example
# configs carry no secret and no certificates:
# - CHANNEL=tls (the default): `perdure cert` makes a CA and node certificates in
#   perdure-cluster/tls/ ([cluster.tls], passed as PERDURE_CLUSTER__TLS__*);
# - CHANNEL=secret: 32 random bytes in perdure-cluster/secret (readable by you only), passed as
#   PERDURE_CLUSTER__SECRET.
# A node started by hand (config/node4.toml) needs the same: see README "The node channel".
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${NODE_BIN:-target/release/perdure}
CHANNEL=${CHANNEL:-tls}
if [ -z "${NODE_BIN:-}" ]; then
  cargo build --release --bin perdure
fi
mkdir -p perdure-cluster
case "$CHANNEL" in
  tls)
    if [ ! -s perdure-cluster/tls/ca.pem ]; then
      "$BIN" cert --dir perdure-cluster/tls --nodes 1,2,3 > /dev/null
    fi
    export PERDURE_CLUSTER__TLS__CA=perdure-cluster/tls/ca.pem
    ;;
  secret)
    if [ ! -s perdure-cluster/secret ]; then
      (umask 077 && head -c 32 /dev/urandom | od -An -v -tx1 | tr -d ' \n' > perdure-cluster/secret)
    fi
    PERDURE_CLUSTER__SECRET=$(cat perdure-cluster/secret)
    export PERDURE_CLUSTER__SECRET
    ;;
  *) echo "CHANNEL must be tls or secret, not $CHANNEL" >&2; exit 2 ;;
esac
pids=()
cleanup() {
  echo "stopping the cluster"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait
}
trap cleanup INT TERM EXIT
for n in 1 2 3; do
  if [ "$CHANNEL" = tls ]; then
    export PERDURE_CLUSTER__TLS__CERT=perdure-cluster/tls/node-$n.pem
    export PERDURE_CLUSTER__TLS__KEY=perdure-cluster/tls/node-$n.key
  fi
  "$BIN" serve --config "config/node$n.toml" > "perdure-cluster/node$n.log" 2>&1 &
  pids+=($!)
  echo "node $n: http://127.0.0.$n:7071, gRPC 127.0.0.$n:4001 (pid $!, log perdure-cluster/node$n.log)"
done
for n in 1 2 3; do
  for _ in $(seq 300); do
    if curl -fs "http://127.0.0.$n:7071/readyz" > /dev/null 2>&1; then echo "node $n ready"; break; fi
    sleep 0.1
  done
done
echo "cluster status: curl http://127.0.0.1:7071/cluster   (Ctrl-C stops the cluster)"
wait
