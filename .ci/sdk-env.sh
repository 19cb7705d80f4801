#!/usr/bin/env bash
# The tools of perdure's Durable Task SDK suites (crates/cli/tests/sdk/README.md):
#  - a Python venv at target/sdk-venv with the pinned durabletask SDK and pytest
#    (crates/cli/tests/sdk/python/requirements.txt);
#  - the npm packages of the JavaScript sample (examples/durabletask-js, `npm ci` from its
#    committed package-lock.json) when node/npm exist (installed from Debian when missing and root).
# Idempotent: a venv whose pins are already installed is kept. Exits non-zero on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV="$ROOT/target/sdk-venv"
REQ="$ROOT/crates/cli/tests/sdk/python/requirements.txt"
JS="$ROOT/examples/durabletask-js"

say() { printf 'sdk-env: %s\n' "$*"; }

# --- Python ---------------------------------------------------------------------------------
PY=""
for c in python3 python; do
  if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
    PY=$(command -v "$c"); break
  fi
done
if [ -z "$PY" ] || ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing python3 and python3-venv from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq python3 python3-venv >/dev/null
    PY=$(command -v python3)
  else
    echo "sdk-env: needs Python >= 3.10 with the venv module (Debian: python3 python3-venv)" >&2
    exit 1
  fi
fi
say "python: $PY ($("$PY" --version 2>&1))"

stamp="$VENV/.perdure-requirements"
if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && cmp -s "$stamp" "$REQ" \
  && "$VENV/bin/python" -c 'import durabletask, pytest, pytest_timeout' 2>/dev/null; then
  say "venv $VENV is up to date"
else
  mkdir -p "$ROOT/target"
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating venv $VENV"
    "$PY" -m venv "$VENV"
  fi
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQ"
  cp "$REQ" "$stamp"
fi
say "installed in $VENV:"
"$VENV/bin/python" -m pip freeze --disable-pip-version-check | sed 's/^/  /'

# --- Node.js (the JavaScript sample) --------------------------------------------------------
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing nodejs and npm from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq nodejs npm >/dev/null
  fi
fi
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  say "node $(node --version), npm $(npm --version)"
  lock="$JS/package-lock.json"
  jstamp="$JS/node_modules/.perdure-lock"
  if [ -d "$JS/node_modules" ] && [ -f "$jstamp" ] && cmp -s "$jstamp" "$lock"; then
    say "$JS/node_modules is up to date"
  else
    (cd "$JS" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$lock" "$jstamp"
  fi
  say "installed in $JS/node_modules:"
  (cd "$JS" && npm ls --depth=0 2>/dev/null | sed 's/^/  /') || true
else
  say "node/npm not found (and not root to install them): the JavaScript sample is not set up"
fi
say "done"
