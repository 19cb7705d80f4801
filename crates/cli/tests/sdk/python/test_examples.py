# The README's Python example (examples/durabletask-python/hello.py), run as a user would.
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HELLO = Path(__file__).resolve().parents[5] / "examples" / "durabletask-python" / "hello.py"


def test_readme_hello_example(grpc_addr):
    assert HELLO.exists(), HELLO
    env = dict(os.environ, PERDURE_GRPC_ADDR=grpc_addr)
    proc = subprocess.run([sys.executable, str(HELLO)], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    last = proc.stdout.strip().splitlines()[-1]
    assert last.endswith(': ["Hello, Tokyo!", "Hello, London!", "Hello, Seattle!"]'), proc.stdout
