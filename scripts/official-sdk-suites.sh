#!/usr/bin/env bash
# Runs the official Durable Task Python SDK's own end-to-end suites, unmodified, against a
# perdure node: tests/durabletask/test_orchestration_e2e.py and test_orchestration_async_e2e.py
# of microsoft/durabletask-python at tag v1.9.0, with the pinned durabletask SDK of
# target/sdk-venv (`bash .ci/sdk-env.sh`).
#
#   scripts/official-sdk-suites.sh [--backend perdure|inmemory] [--keep] [PYTEST ARGS...]
#
# Their tests build an in-memory backend per test (an autouse fixture calling
# durabletask.testing.create_test_backend(port=PORT), with PORT a module-level free port and
# the clients at localhost:PORT). Our conftest.py (written into a temp dir, beside copies of
# their test files; nothing of theirs is edited or committed) replaces that function with one
# that starts a fresh `perdure serve` (temp data dir, gRPC on 127.0.0.1:PORT) and returns a
# handle whose stop() ends the node. So every test gets a fresh node, as they assume.
# --backend inmemory leaves their in-memory backend in place: the baseline.
#
# Environment:
#   PERDURE_BIN             the binary (default: target/debug/perdure)
#   DURABLETASK_PYTHON_SRC  a local clone or mirror (git dir) to use when github is unreachable
#   DURABLETASK_PYTHON_REF  the tag (default: v1.9.0)
#   SDK_VENV                the venv (default: target/sdk-venv)
# Prints per-test outcomes and "official suites (BACKEND): N passed, N failed, N skipped";
# exits with pytest's status.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

BACKEND=perdure
KEEP=0
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --backend) BACKEND=$2; shift 2 ;;
    --backend=*) BACKEND=${1#--backend=}; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
case "$BACKEND" in perdure|inmemory) ;; *) echo "unknown backend $BACKEND" >&2; exit 2 ;; esac

REF=${DURABLETASK_PYTHON_REF:-v1.9.0}
VENV=${SDK_VENV:-$ROOT/target/sdk-venv}
PERDURE_BIN=${PERDURE_BIN:-$ROOT/target/debug/perdure}
PY="$VENV/bin/python"
[ -x "$PY" ] || { echo "no venv at $VENV: run bash .ci/sdk-env.sh" >&2; exit 1; }
"$PY" -c 'import pytest_asyncio' 2>/dev/null || { echo "pytest-asyncio missing in $VENV: run bash .ci/sdk-env.sh" >&2; exit 1; }
if [ "$BACKEND" = perdure ]; then
  [ -x "$PERDURE_BIN" ] || { echo "no perdure binary at $PERDURE_BIN (set PERDURE_BIN or cargo build -p perdure-cli --bin perdure)" >&2; exit 1; }
  PERDURE_BIN=$(cd "$(dirname "$PERDURE_BIN")" && pwd)/$(basename "$PERDURE_BIN")
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/official-sdk-suites.XXXXXX")
cleanup() { if [ "$KEEP" = 1 ]; then echo "kept $TMP"; else rm -rf "$TMP"; fi; }
trap cleanup EXIT

# --- their sources --------------------------------------------------------------------------
SRC="$TMP/durabletask-python"
if git clone --quiet --depth 1 --branch "$REF" https://github.com/microsoft/durabletask-python "$SRC" 2>"$TMP/clone.err"; then
  echo "official suites: cloned microsoft/durabletask-python $REF"
elif [ -n "${DURABLETASK_PYTHON_SRC:-}" ]; then
  rm -rf "$SRC"
  git clone --quiet --branch "$REF" "$DURABLETASK_PYTHON_SRC" "$SRC"
  echo "official suites: github unreachable ($(head -c 200 "$TMP/clone.err")); cloned $REF from $DURABLETASK_PYTHON_SRC"
else
  cat "$TMP/clone.err" >&2
  echo "cannot clone microsoft/durabletask-python; set DURABLETASK_PYTHON_SRC to a local clone" >&2
  exit 1
fi
echo "official suites: $(git -C "$SRC" rev-parse --short HEAD) ($REF)"

# Their test files, byte for byte, in a tree of their own (so that `import durabletask` is the
# pinned SDK of the venv, not their source tree at this tag).
RUN="$TMP/run"
mkdir -p "$RUN/tests/durabletask"
for f in tests/__init__.py tests/durabletask/__init__.py tests/durabletask/_port_utils.py \
         tests/durabletask/test_orchestration_e2e.py tests/durabletask/test_orchestration_async_e2e.py; do
  cp "$SRC/$f" "$RUN/$f"
done

cat > "$RUN/pytest.ini" <<'INI'
[pytest]
# as their pyproject.toml's [tool.pytest.ini_options]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
timeout = 300
addopts = -p no:cacheprovider
INI

# Ours: swaps their in-memory backend for a fresh perdure node per test.
cat > "$RUN/conftest.py" <<'PY'
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import durabletask.testing
import durabletask.testing.in_memory_backend

BACKEND = os.environ["OFFICIAL_SUITES_BACKEND"]
PERDURE_BIN = os.environ.get("PERDURE_BIN", "")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PerdureNode:
    """What their fixture does with the backend: stop() and reset()."""

    def __init__(self, port: int):
        self.port = port
        self.dir = tempfile.mkdtemp(prefix="perdure-official-")
        self.log_path = os.path.join(self.dir, "node.log")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PERDURE_")}
        env["PERDURE_GRPC__ADDR"] = f"127.0.0.1:{port}"
        env["PERDURE_LOG"] = os.environ.get("OFFICIAL_SUITES_NODE_LOG", "warn")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [PERDURE_BIN, "serve", "--data-dir", os.path.join(self.dir, "data"),
             "--http-addr", f"127.0.0.1:{_free_port()}", "--partitions", "4"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"perdure serve exited ({self.proc.returncode}):\n{self._tail()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"gRPC port {port} never opened:\n{self._tail()}")
            time.sleep(0.05)

    def _tail(self) -> str:
        self.log.flush()
        with open(self.log_path, errors="replace") as f:
            return "".join(f.readlines()[-40:])

    def stop(self, grace=None):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        keep = os.environ.get("OFFICIAL_SUITES_KEEP_NODES")
        if keep:
            dest = os.path.join(keep, f"node-{self.port}-{int(time.time() * 1000)}")
            shutil.copytree(self.dir, dest, ignore=shutil.ignore_patterns("data"))
        shutil.rmtree(self.dir, ignore_errors=True)

    def reset(self):
        pass


def create_perdure_backend(port: int = 50051, max_history_size: int = 10000):
    return PerdureNode(port)


if BACKEND == "perdure":
    # their modules do `from durabletask.testing import create_test_backend` when imported,
    # which happens after this conftest is loaded
    durabletask.testing.create_test_backend = create_perdure_backend
    durabletask.testing.in_memory_backend.create_test_backend = create_perdure_backend
PY

# --- run ------------------------------------------------------------------------------------
[ "$BACKEND" = perdure ] && NODE_DESC=" ($PERDURE_BIN)" || NODE_DESC=""
echo "official suites: backend $BACKEND$NODE_DESC, SDK $("$PY" -m pip show durabletask 2>/dev/null | sed -n 's/^Version: //p')"
set +e
(cd "$RUN" && OFFICIAL_SUITES_BACKEND=$BACKEND PERDURE_BIN=$PERDURE_BIN PYTHONDONTWRITEBYTECODE=1 \
  "$PY" -m pytest tests/durabletask/test_orchestration_e2e.py tests/durabletask/test_orchestration_async_e2e.py \
  -q -rfE --junitxml="$TMP/junit.xml" ${ARGS[@]+"${ARGS[@]}"})
STATUS=$?
set -e

"$PY" - "$TMP/junit.xml" "$BACKEND" <<'PY'
import sys
import xml.etree.ElementTree as ET

path, backend = sys.argv[1], sys.argv[2]
try:
    root = ET.parse(path).getroot()
except Exception as e:  # pytest died before writing it
    print(f"official suites ({backend}): no report ({e})")
    sys.exit(0)
counts = {"passed": 0, "failed": 0, "skipped": 0}
print(f"--- official suites ({backend}): per test")
for case in root.iter("testcase"):
    name = f"{case.get('classname', '').split('.')[-1]}::{case.get('name')}"
    if case.find("failure") is not None or case.find("error") is not None:
        outcome = "failed"
    elif case.find("skipped") is not None:
        outcome = "skipped"
    else:
        outcome = "passed"
    counts[outcome] += 1
    print(f"{outcome.upper():8} {name}")
print(f"official suites ({backend}): {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")
PY
exit $STATUS
