"""The failover workload of sdk_failover.rs: an orchestration that chains 3 activities, fans out
to 5, and calls a function entity; imported by run_worker.py and run_client.py (not a test).

Every activity execution appends one line `TIME PID KEY` to the file named by
PERDURE_FAILOVER_RUNS (append + fsync), so the test can count executions.
"""
from __future__ import annotations

import os
import time

from durabletask import entities, task

RUNS = os.environ.get("PERDURE_FAILOVER_RUNS", "")
SLEEP = float(os.environ.get("PERDURE_FAILOVER_SLEEP", "0.2"))
CHAIN, FAN = 3, 5


def _record(key: str) -> None:
    fd = os.open(RUNS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{time.time():.3f} {os.getpid()} {key}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def chain_step(_: task.ActivityContext, inp: dict) -> int:
    _record(f"{inp['id']}/c{inp['i']}")
    time.sleep(SLEEP)
    return inp["x"] * 2 + inp["i"]


def fan_step(_: task.ActivityContext, inp: dict) -> int:
    _record(f"{inp['id']}/f{inp['j']}")
    time.sleep(SLEEP)
    return inp["x"] * 10 + inp["j"]


# a function entity (not named "counter": perdure's built-in Rust types take precedence)
def tally(ctx: entities.EntityContext, value):
    current = ctx.get_state(int, 0)
    if ctx.operation == "add":
        ctx.set_state(current + value)
        return current + value
    if ctx.operation == "get":
        return current
    raise ValueError(f"unknown operation {ctx.operation}")


def failover_orchestration(ctx: task.OrchestrationContext, inp: dict):
    k, iid = inp["k"], ctx.instance_id
    x = k
    for i in range(CHAIN):
        x = yield ctx.call_activity(chain_step, input={"id": iid, "i": i, "x": x})
    fan = yield task.when_all(
        [ctx.call_activity(fan_step, input={"id": iid, "j": j, "x": x}) for j in range(FAN)])
    own = entities.EntityInstanceId("tally", iid)
    yield ctx.call_entity(own, "add", k)
    got = yield ctx.call_entity(own, "get")
    # every instance of the phase adds 1 to one shared entity too (its result is not in the
    # output: it depends on the order of the instances)
    yield ctx.call_entity(entities.EntityInstanceId("tally", inp["shared"]), "add", 1)
    return {"k": k, "chain": x, "fan": sum(fan), "tally": got}


def expected_output(k: int) -> dict:
    x = k
    for i in range(CHAIN):
        x = x * 2 + i
    return {"k": k, "chain": x, "fan": sum(x * 10 + j for j in range(FAN)), "tally": k}
