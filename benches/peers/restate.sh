#!/usr/bin/env bash
# The peer of perdure's benchmarks: a Restate server (prebuilt, from the npm registry, pinned) and
# a counter virtual object (benches/peers/restate-counter, restate-sdk), both on loopback, with
# data under target/peers/restate-data. Durability as shipped (RocksDB WAL fsync on).
#   bash benches/peers/restate.sh start    # install if needed, start, register, smoke-test
#   bash benches/peers/restate.sh stop
# Ingress http://127.0.0.1:${RESTATE_INGRESS_PORT:-18080}/Counter/{key}/add (body: amount),
# one-way: .../add/send, idempotent with an `idempotency-key` header; admin :${RESTATE_ADMIN_PORT:-19070}.
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION=1.7.12
PEERS=target/peers
INGRESS=${RESTATE_INGRESS_PORT:-18080}
ADMIN=${RESTATE_ADMIN_PORT:-19070}
NODE_PORT=${RESTATE_NODE_PORT:-15122}
SERVICE=${RESTATE_SERVICE_PORT:-19080}
SERVER="$PEERS/npm/node_modules/@restatedev/restate-server-linux-x64/bin/restate-server"
COUNTER="$PEERS/release/perdure-peer-restate-counter"

stop() {
  for f in "$PEERS/restate-server.pid" "$PEERS/restate-counter.pid"; do
    if [ -f "$f" ]; then kill -TERM "$(cat "$f")" 2>/dev/null || true; rm -f "$f"; fi
  done
}

case "${1:-start}" in
  stop) stop; echo "restate stopped"; exit 0 ;;
  start) ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac

mkdir -p "$PEERS"
if ! [ -x "$SERVER" ] || ! "$SERVER" --version | grep -q "$VERSION"; then
  command -v npm >/dev/null || { echo "npm is needed (apt-get install -y npm)" >&2; exit 1; }
  echo "installing @restatedev/restate-server@$VERSION into $PEERS/npm"
  npm install --silent --prefix "$PEERS/npm" "@restatedev/restate-server@$VERSION"
fi
echo "building the counter service (restate-sdk)"
cargo build --release --quiet --manifest-path benches/peers/restate-counter/Cargo.toml \
  --target-dir "$PEERS"
stop
rm -rf "$PEERS/restate-data"
RESTATE_BASE_DIR="$PEERS/restate-data" \
RESTATE_INGRESS__BIND_ADDRESS="127.0.0.1:$INGRESS" \
RESTATE_ADMIN__BIND_ADDRESS="127.0.0.1:$ADMIN" \
RESTATE_BIND_ADDRESS="127.0.0.1:$NODE_PORT" \
RESTATE_ADVERTISED_ADDRESS="http://127.0.0.1:$NODE_PORT" \
RESTATE_LISTEN_MODE=tcp RESTATE_DISABLE_TELEMETRY=true \
  "$SERVER" --no-logo > "$PEERS/restate-server.log" 2>&1 &
echo $! > "$PEERS/restate-server.pid"
"$COUNTER" "127.0.0.1:$SERVICE" > "$PEERS/restate-counter.log" 2>&1 &
echo $! > "$PEERS/restate-counter.pid"
for _ in $(seq 150); do
  if curl -fs "http://127.0.0.1:$ADMIN/health" > /dev/null 2>&1; then break; fi
  sleep 0.2
done
curl -fsS -X POST "http://127.0.0.1:$ADMIN/deployments" -H 'content-type: application/json' \
  -d "{\"uri\":\"http://127.0.0.1:$SERVICE\",\"force\":true}" > /dev/null
key="smoke-$RANDOM$RANDOM"
for _ in $(seq 50); do
  if v=$(curl -fs -X POST "http://127.0.0.1:$INGRESS/Counter/$key/add" \
      -H 'content-type: application/json' -d 2); then break; fi
  sleep 0.2
done
[ "${v:-}" = 2 ] || { echo "smoke test failed (got '${v:-}'); see $PEERS/restate-server.log" >&2; stop; exit 1; }
echo "restate $VERSION ready: ingress http://127.0.0.1:$INGRESS, admin http://127.0.0.1:$ADMIN (Counter registered)"
