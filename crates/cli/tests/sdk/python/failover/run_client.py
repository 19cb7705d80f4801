"""The client of one phase of sdk_failover.rs (run as a script).

    python run_client.py HOST:PORT PHASE N SPREAD_SECONDS TIMEOUT_SECONDS

Starts N instances of failover_orchestration (spread over SPREAD_SECONDS), waits for each (one
thread per instance, so each completion is timed), then checks every instance: COMPLETED with
the expected output, one result per scheduled activity in its history, no failed task, its own
entity's state; and the phase's shared entity: exactly N adds. Prints progress lines on stderr
and one JSON summary line on stdout (the test asserts on it).
"""
from __future__ import annotations

import json
import logging
import sys
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import grpc
from durabletask import client, entities, history

import workload

LOGGER = logging.getLogger("failover-client")
LOGGER.setLevel(logging.WARNING)

ADDR, PHASE, N = sys.argv[1], sys.argv[2], int(sys.argv[3])
SPREAD, TIMEOUT = float(sys.argv[4]), float(sys.argv[5])


def say(msg: str) -> None:
    print(f"{time.time():.3f} client {PHASE}: {msg}", file=sys.stderr, flush=True)


RETRYABLE = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL", "UNKNOWN"}
client_retries = 0


def retried(what: str, call, accept_exists: bool = False):
    """call(), retried for 30 s on errors a failover causes (a request forwarded to a leader
    that just died answers UNAVAILABLE): the client side of failover is the caller's retry.
    With accept_exists, an "already exists" answer to a retry counts as done (the first try
    had started the instance)."""
    global client_retries
    deadline = time.time() + 30
    tried = False
    while True:
        try:
            return call()
        except grpc.RpcError as e:
            code = e.code().name if e.code() is not None else "?"
            if accept_exists and tried and code == "ALREADY_EXISTS":
                say(f"{what}: already exists after a retry: taken as started")
                return None
            if code not in RETRYABLE or time.time() > deadline:
                raise
            client_retries += 1
            tried = True
            say(f"{what}: {code} {e.details()}: retrying")
            time.sleep(0.2)


def entity_value(c: client.TaskHubGrpcClient, key: str):
    eid = entities.EntityInstanceId("tally", key)
    meta = retried(f"get entity {key}", lambda: c.get_entity(eid, include_state=True))
    raw = meta.get_state() if meta is not None else None  # raw JSON, "" or None: no state
    return json.loads(raw) if raw else None


def main() -> None:
    c = client.TaskHubGrpcClient(host_address=ADDR, logger=LOGGER)
    tag = uuid.uuid4().hex[:8]
    shared = f"shared-{PHASE}-{tag}"
    ids = [f"fo-{PHASE}-{tag}-{i:03d}" for i in range(N)]
    t0 = time.time()
    for i, iid in enumerate(ids):
        retried(f"start {iid}", lambda: c.schedule_new_orchestration(
            workload.failover_orchestration, input={"k": i + 1, "shared": shared},
            instance_id=iid), accept_exists=True)
        time.sleep(SPREAD / N)
    started = time.time()
    say(f"started {N} instances in {started - t0:.1f} s")

    def wait(iid: str):
        w = client.TaskHubGrpcClient(host_address=ADDR, logger=LOGGER)
        try:
            while True:
                left = TIMEOUT - (time.time() - t0)
                try:
                    state = retried(f"wait {iid}", lambda: w.wait_for_orchestration_completion(
                        iid, timeout=max(1, int(left))))
                    return iid, time.time(), state
                except TimeoutError:
                    raise
                except grpc.RpcError as e:
                    if time.time() - t0 > TIMEOUT:
                        raise
                    say(f"wait {iid}: {e.code()} {e.details()}: again")
                    time.sleep(0.5)
        except Exception as e:  # a timeout, or an RPC error: reported as a failure
            return iid, time.time(), e
        finally:
            w.close()

    with ThreadPoolExecutor(max_workers=N) as pool:
        results = list(pool.map(wait, ids))
    done = {}
    failures = []
    for i, (iid, at, state) in enumerate(results):
        if isinstance(state, Exception) or state is None:
            failures.append(f"{iid}: not finished: {state!r}")
            continue
        done[iid] = at - t0
        if state.runtime_status != client.OrchestrationStatus.COMPLETED:
            failures.append(f"{iid}: {state.runtime_status} {state.failure_details}")
            continue
        out, want = state.get_output(), workload.expected_output(i + 1)
        if out != want:
            failures.append(f"{iid}: output {out} != expected {want}")
    say(f"{len(done)} finished; checking histories and entities")

    # histories: every scheduled activity has exactly one result, none failed
    duplicate_results = 0
    event_kinds = Counter()
    for iid in ids:
        events = retried(f"history {iid}", lambda: c.get_orchestration_history(iid))
        event_kinds.update(type(e).__name__ for e in events)
        scheduled = [e.event_id for e in events if isinstance(e, history.TaskScheduledEvent)]
        completed = Counter(e.task_scheduled_id for e in events
                            if isinstance(e, history.TaskCompletedEvent))
        failed = [e for e in events if isinstance(e, history.TaskFailedEvent)]
        if len(scheduled) != workload.CHAIN + workload.FAN:
            failures.append(f"{iid}: {len(scheduled)} activities scheduled")
        if len(set(scheduled)) != len(scheduled):
            failures.append(f"{iid}: scheduled ids repeat: {scheduled}")
        for sid in scheduled:
            if completed[sid] != 1:
                failures.append(f"{iid}: task {sid} has {completed[sid]} results")
        extra = set(completed) - set(scheduled)
        if extra:
            failures.append(f"{iid}: results of unscheduled tasks {sorted(extra)}")
        duplicate_results += sum(max(0, n - 1) for n in completed.values())
        if failed:
            failures.append(f"{iid}: {len(failed)} failed tasks")
        ent = Counter(e.request_id for e in events
                      if isinstance(e, history.EntityOperationCompletedEvent))
        if any(n > 1 for n in ent.values()):
            failures.append(f"{iid}: an entity operation completed twice: {dict(ent)}")

    # entities: each instance's own tally got exactly its one add; the shared one N adds
    for i, iid in enumerate(ids):
        v = entity_value(c, iid)
        if v != i + 1:
            failures.append(f"entity tally@{iid}: {v} != {i + 1}")
    shared_value = entity_value(c, shared)
    if shared_value != N:
        failures.append(f"entity tally@{shared}: {shared_value} != {N} (adds)")

    times = sorted(done.values())
    summary = {
        "phase": PHASE,
        "instances": N,
        "completed": len(done),
        "start_wall": t0,
        "started_after_s": round(started - t0, 3),
        "first_done_s": round(times[0], 3) if times else None,
        "all_done_s": round(times[-1], 3) if times else None,
        "done_s": [round(t, 3) for t in times],
        "shared_entity": shared_value,
        "duplicate_results": duplicate_results,
        "event_kinds": dict(event_kinds),
        "client_retries": client_retries,
        "failures": failures,
    }
    print(json.dumps(summary), flush=True)
    c.close()


if __name__ == "__main__":
    main()
