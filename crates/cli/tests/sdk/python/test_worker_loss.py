# A worker process killed (SIGKILL) in the middle of an activity: the backend must hand the
# activity to another worker, and record exactly one result.
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from durabletask import history
from durabletask.client import OrchestrationStatus

HERE = Path(__file__).parent


def _spawn(addr: str, runs_dir: Path, sleep: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(HERE / "_worker_proc.py"), addr, str(runs_dir), str(sleep)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _runs(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


@pytest.mark.perdure_only("in-flight work items of a vanished worker are lost for good there "
                          "(reference section 7)")
def test_worker_killed_during_activity(worker_addr, dt_client, uid, tmp_path):
    key = uid("k")
    runs = tmp_path / f"{key}.runs"
    first = _spawn(worker_addr, tmp_path, sleep=300)  # never finishes the activity on its own
    second = None
    try:
        iid = dt_client.schedule_new_orchestration("survive_worker_loss", input=key, instance_id=uid())
        deadline = time.monotonic() + 60
        while not _runs(runs):
            assert first.poll() is None, f"first worker died: {first.stdout.read()}"
            assert time.monotonic() < deadline, "the activity never started on the first worker"
            time.sleep(0.1)
        assert _runs(runs) == [str(first.pid)]

        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        second = _spawn(worker_addr, tmp_path, sleep=0.2)

        state = dt_client.wait_for_orchestration_completion(iid, timeout=120)
        assert state is not None
        assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
        assert state.get_output() == {"result": f"done {key}"}
        executions = _runs(runs)
        assert len(executions) >= 2 and executions[0] == str(first.pid)
        assert str(second.pid) in executions
        events = dt_client.get_orchestration_history(iid)
        assert sum(isinstance(e, history.TaskScheduledEvent) for e in events) == 1
        assert sum(isinstance(e, history.TaskCompletedEvent) for e in events) == 1
        assert not any(isinstance(e, history.TaskFailedEvent) for e in events)
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(timeout=10)
