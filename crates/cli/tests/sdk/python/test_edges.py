# Less common paths of the protocol: recursive terminate and purge, delayed starts, rewinds of
# sub-orchestrations and repeated rewinds, locks released by a failing orchestration, versions,
# several workers sharing the work.
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from durabletask import client, entities, history, task
from durabletask.client import OrchestrationStatus

WAIT = 60


def _completed(c: client.TaskHubGrpcClient, iid: str, timeout: float = WAIT) -> client.OrchestrationState:
    state = c.wait_for_orchestration_completion(iid, timeout=timeout)
    assert state is not None, f"instance {iid} not found"
    return state


def _wait_status(c, iid, status, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while True:
        st = c.get_orchestration_state(iid)
        if st is not None and st.runtime_status == status:
            return st
        assert time.monotonic() < deadline, f"{iid}: still {st and st.runtime_status}, wanted {status}"
        time.sleep(0.1)


def waiting_child(ctx: task.OrchestrationContext, _):
    return (yield ctx.wait_for_external_event("never"))


def parent_of_waiting_child(ctx: task.OrchestrationContext, child_id: str):
    return (yield ctx.call_sub_orchestrator(waiting_child, instance_id=child_id))


@pytest.mark.perdure_only("recursive terminate is not supported there (reference section 6)")
def test_terminate_is_recursive(dt_worker, dt_client, uid):
    dt_worker.add_orchestrator(parent_of_waiting_child)
    dt_worker.add_orchestrator(waiting_child)
    dt_worker.start()

    child = uid("child")
    iid = dt_client.schedule_new_orchestration(parent_of_waiting_child, input=child, instance_id=uid())
    _wait_status(dt_client, child, OrchestrationStatus.RUNNING)
    dt_client.terminate_orchestration(iid, output="stop all")  # recursive by default
    assert _completed(dt_client, iid).runtime_status == OrchestrationStatus.TERMINATED
    st = _completed(dt_client, child, timeout=30)
    assert st.runtime_status == OrchestrationStatus.TERMINATED


def echo_child(ctx: task.OrchestrationContext, x):
    return x


def parent_of_echo(ctx: task.OrchestrationContext, child_id: str):
    return (yield ctx.call_sub_orchestrator(echo_child, input="hi", instance_id=child_id))


@pytest.mark.perdure_only("recursive purge is ignored there (reference section 7)")
def test_purge_is_recursive(dt_worker, dt_client, uid):
    dt_worker.add_orchestrator(parent_of_echo)
    dt_worker.add_orchestrator(echo_child)
    dt_worker.start()

    child = uid("child")
    iid = dt_client.schedule_new_orchestration(parent_of_echo, input=child, instance_id=uid())
    assert _completed(dt_client, iid).get_output() == "hi"
    result = dt_client.purge_orchestration(iid, recursive=True)
    assert result.deleted_instance_count == 2
    assert dt_client.get_orchestration_state(iid) is None
    assert dt_client.get_orchestration_state(child) is None


def stamp(ctx: task.OrchestrationContext, _):
    return "started"


@pytest.mark.perdure_only("scheduledStartTimestamp is ignored there (reference section 7)")
def test_scheduled_start(dt_worker, dt_client, uid):
    dt_worker.add_orchestrator(stamp)
    dt_worker.start()

    t0 = time.monotonic()
    iid = dt_client.schedule_new_orchestration(
        stamp, instance_id=uid(), start_at=datetime.now(timezone.utc) + timedelta(seconds=3))
    time.sleep(1)
    assert dt_client.get_orchestration_state(iid).runtime_status == OrchestrationStatus.PENDING
    state = _completed(dt_client, iid)
    assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
    assert time.monotonic() - t0 >= 2.5


# --- rewinds --------------------------------------------------------------------------------

_fails_left: dict[str, int] = {}
_fails_lock = threading.Lock()


def fail_n_times(_: task.ActivityContext, key: str) -> str:
    with _fails_lock:
        left = _fails_left.get(key, 0)
        _fails_left[key] = left - 1
    if left > 0:
        raise RuntimeError(f"failing, {left - 1} failures left")
    return "recovered"


def rewindable_child(ctx: task.OrchestrationContext, key: str):
    return (yield ctx.call_activity(fail_n_times, input=key))


def parent_of_rewindable(ctx: task.OrchestrationContext, key: str):
    inner = yield ctx.call_sub_orchestrator(rewindable_child, input=key)
    return f"parent saw {inner}"


def test_rewind_twice(dt_worker, dt_client, uid):
    dt_worker.add_orchestrator(rewindable_child)
    dt_worker.add_activity(fail_n_times)
    dt_worker.start()

    key = uid("k")
    _fails_left[key] = 2
    iid = dt_client.schedule_new_orchestration(rewindable_child, input=key, instance_id=uid())
    assert _completed(dt_client, iid).runtime_status == OrchestrationStatus.FAILED
    dt_client.rewind_orchestration(iid)
    st = _completed(dt_client, iid)
    assert st.runtime_status == OrchestrationStatus.FAILED
    assert "0 failures left" in st.failure_details.message
    dt_client.rewind_orchestration(iid)
    st = _completed(dt_client, iid)
    assert st.runtime_status == OrchestrationStatus.COMPLETED, st.failure_details
    assert st.get_output() == "recovered"


def test_rewind_failed_sub_orchestration(dt_worker, dt_client, uid):
    dt_worker.add_orchestrator(parent_of_rewindable)
    dt_worker.add_orchestrator(rewindable_child)
    dt_worker.add_activity(fail_n_times)
    dt_worker.start()

    key = uid("k")
    _fails_left[key] = 1
    iid = dt_client.schedule_new_orchestration(parent_of_rewindable, input=key, instance_id=uid())
    failed = _completed(dt_client, iid)
    assert failed.runtime_status == OrchestrationStatus.FAILED
    child_id = _events_of(dt_client, iid, history.SubOrchestrationInstanceCreatedEvent)[0].instance_id
    assert dt_client.get_orchestration_state(child_id).runtime_status == OrchestrationStatus.FAILED

    dt_client.rewind_orchestration(iid)
    st = _completed(dt_client, iid)
    assert st.runtime_status == OrchestrationStatus.COMPLETED, st.failure_details
    assert st.get_output() == "parent saw recovered"
    child = dt_client.get_orchestration_state(child_id)
    assert child.runtime_status == OrchestrationStatus.COMPLETED
    assert child.get_output() == "recovered"


def _events_of(c, iid, kind):
    return [e for e in c.get_orchestration_history(iid) if isinstance(e, kind)]


# --- locks, versions, several workers -------------------------------------------------------

def box(ctx: entities.EntityContext, value):
    if ctx.operation == "put":
        ctx.set_state(value)
    return ctx.get_state(int, 0)


def lock_then_fail(ctx: task.OrchestrationContext, key: str):
    eid = entities.EntityInstanceId("box", key)
    with (yield ctx.lock_entities([eid])):
        yield ctx.call_entity(eid, "put", 1)
        raise RuntimeError("failed inside the critical section")


def lock_and_put(ctx: task.OrchestrationContext, key: str):
    eid = entities.EntityInstanceId("box", key)
    with (yield ctx.lock_entities([eid])):
        yield ctx.call_entity(eid, "put", 2)
        return (yield ctx.call_entity(eid, "get"))


def test_failing_orchestration_releases_its_locks(dt_worker, dt_client, uid):
    dt_worker.add_entity(box)
    dt_worker.add_orchestrator(lock_then_fail)
    dt_worker.add_orchestrator(lock_and_put)
    dt_worker.start()

    key = uid("k")
    first = dt_client.schedule_new_orchestration(lock_then_fail, input=key, instance_id=uid("a"))
    st = _completed(dt_client, first)
    assert st.runtime_status == OrchestrationStatus.FAILED
    assert "failed inside the critical section" in st.failure_details.message
    second = dt_client.schedule_new_orchestration(lock_and_put, input=key, instance_id=uid("b"))
    st = _completed(dt_client, second, timeout=30)
    assert st.runtime_status == OrchestrationStatus.COMPLETED, st.failure_details
    assert st.get_output() == 2


def versioned(ctx: task.OrchestrationContext, _):
    return {"version": ctx.version}


def test_version_reaches_the_orchestration(dt_worker, dt_client, uid):
    dt_worker.add_orchestrator(versioned)
    dt_worker.start()

    iid = dt_client.schedule_new_orchestration(versioned, instance_id=uid(), version="2.1")
    st = _completed(dt_client, iid)
    assert st.runtime_status == OrchestrationStatus.COMPLETED, st.failure_details
    assert st.get_output() == {"version": "2.1"}
    started = _events_of(dt_client, iid, history.ExecutionStartedEvent)
    assert started[0].version == "2.1"


_who: dict[str, set[str]] = {}
_who_lock = threading.Lock()


def make_tagged_activity(tag: str):
    def labelled(_: task.ActivityContext, key: str) -> str:
        time.sleep(0.05)
        with _who_lock:
            _who.setdefault(key, set()).add(tag)
        return tag
    return labelled


def spread(ctx: task.OrchestrationContext, key: str):
    tags = yield task.when_all([ctx.call_activity("labelled", input=key) for _ in range(40)])
    return sorted(set(tags))


def test_two_workers_share_the_work(make_worker, dt_client, uid):
    for tag in ("w1", "w2"):
        w = make_worker()
        w.add_orchestrator(spread)
        w.add_activity(make_tagged_activity(tag))
        w.start()
    time.sleep(1)  # both connected

    key = uid("k")
    iid = dt_client.schedule_new_orchestration(spread, input=key, instance_id=uid())
    st = _completed(dt_client, iid)
    assert st.runtime_status == OrchestrationStatus.COMPLETED, st.failure_details
    assert set(st.get_output()) <= {"w1", "w2"} and len(_events_of(
        dt_client, iid, history.TaskCompletedEvent)) == 40
    # not asserted: that both took some (a backend may fill one worker first)
    print(f"activities ran on {sorted(_who[key])}")
