# The node itself killed (SIGKILL) and restarted on its data directory while an SDK worker is
# connected and one of its activities runs: the worker reconnects, and the instance completes
# with each result recorded once.
#
# Starts its own node: needs PERDURE_BIN (the runner sdk_python.rs sets it); skipped without.
from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

import grpc
import pytest

from durabletask import client, history, task, worker
from durabletask.client import OrchestrationStatus

_runs: dict[str, int] = {}
_runs_lock = threading.Lock()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OwnNode:
    def __init__(self, binary: str, workdir: Path):
        self.binary = binary
        self.workdir = workdir
        self.grpc = f"127.0.0.1:{_free_port()}"
        self.http = f"127.0.0.1:{_free_port()}"
        self.proc: subprocess.Popen | None = None
        self.log = open(workdir / "node.log", "ab")

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PERDURE_")}
        env.update(PERDURE_GRPC__ADDR=self.grpc, PERDURE_LOG="info")
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--data-dir", str(self.workdir / "data"),
             "--http-addr", self.http, "--partitions", "4"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 30
        host, port = self.grpc.rsplit(":", 1)
        while True:
            assert self.proc.poll() is None, f"node exited: {self.tail()}"
            try:
                with socket.create_connection((host, int(port)), timeout=0.5):
                    return
            except OSError:
                assert time.monotonic() < deadline, f"gRPC never opened: {self.tail()}"
                time.sleep(0.05)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def tail(self) -> str:
        self.log.flush()
        return "".join((self.workdir / "node.log").read_text(errors="replace").splitlines(True)[-40:])


def quick(_: task.ActivityContext, key: str) -> str:
    return f"quick {key}"


def slow(_: task.ActivityContext, key: str) -> str:
    with _runs_lock:
        _runs[key] = _runs.get(key, 0) + 1
    time.sleep(3)
    return f"slow {key}"


def through_restart(ctx: task.OrchestrationContext, key: str):
    a = yield ctx.call_activity(quick, input=key)
    b = yield ctx.call_activity(slow, input=key)
    yield ctx.create_timer(timedelta(seconds=1))
    c = yield ctx.call_activity(quick, input=key + "!")
    return [a, b, c]


@pytest.mark.perdure_only("restarts a perdure node")
def test_node_killed_and_restarted_under_a_connected_worker(backend_kind, uid):
    binary = os.environ.get("PERDURE_BIN")
    if not binary:
        pytest.skip("PERDURE_BIN (a perdure binary) is not set")
    workdir = Path(tempfile.mkdtemp(prefix="perdure-sdk-restart-"))
    node = OwnNode(binary, workdir)
    node.start()
    quiet = logging.getLogger("perdure-sdk-tests")
    w = worker.TaskHubGrpcWorker(host_address=node.grpc, logger=quiet)
    c = client.TaskHubGrpcClient(host_address=node.grpc, logger=quiet)
    try:
        w.add_orchestrator(through_restart)
        w.add_activity(quick)
        w.add_activity(slow)
        w.start()
        key = uid("k")
        iid = c.schedule_new_orchestration(through_restart, input=key, instance_id=uid())
        deadline = time.monotonic() + 30
        while _runs.get(key, 0) == 0:
            assert time.monotonic() < deadline, "the slow activity never started"
            time.sleep(0.05)

        node.kill9()  # the slow activity is running: its completion will find no node
        time.sleep(1)
        node.start()

        # gRPC shares subchannels between channels: until the one to this address has left its
        # reconnect back-off (after the refused connections), calls fail at once UNAVAILABLE
        grpc.channel_ready_future(grpc.insecure_channel(node.grpc)).result(timeout=60)
        state = c.wait_for_orchestration_completion(iid, timeout=120)
        assert state is not None, node.tail()
        assert state.runtime_status == OrchestrationStatus.COMPLETED, (state.failure_details, node.tail())
        assert state.get_output() == [f"quick {key}", f"slow {key}", f"quick {key}!"]
        # the result sent to the dead node was lost and produced again, or its completion
        # reached the restarted node and was accepted: either way it is recorded once
        print(f"slow activity ran {_runs[key]} time(s)")
        events = c.get_orchestration_history(iid)
        assert sum(isinstance(e, history.TaskScheduledEvent) for e in events) == 3
        assert sum(isinstance(e, history.TaskCompletedEvent) for e in events) == 3
        assert sum(isinstance(e, history.TimerFiredEvent) for e in events) == 1
    finally:
        w.stop()
        c.close()
        node.stop()
