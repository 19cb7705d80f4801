# Orchestrations through the official Python SDK: activities, sub-orchestrations, retries,
# timers, external events, continue-as-new, custom status, new_uuid.
from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import timedelta

import pytest

from durabletask import client, history, task
from durabletask.client import OrchestrationStatus

WAIT = 60  # seconds for one instance to finish

# Activities' side tables (the worker runs in this process): key -> calls seen
_calls: dict[str, int] = {}
_calls_lock = threading.Lock()


def _count(key: str) -> int:
    with _calls_lock:
        _calls[key] = _calls.get(key, 0) + 1
        return _calls[key]


def _completed(c: client.TaskHubGrpcClient, iid: str) -> client.OrchestrationState:
    state = c.wait_for_orchestration_completion(iid, timeout=WAIT)
    assert state is not None, f"instance {iid} not found"
    return state


def _events(c: client.TaskHubGrpcClient, iid: str, kind: type) -> list:
    return [e for e in c.get_orchestration_history(iid) if isinstance(e, kind)]


# --- activities -----------------------------------------------------------------------------

def double(_: task.ActivityContext, x: int) -> int:
    return x * 2


def add_ten(_: task.ActivityContext, x: int) -> int:
    return x + 10


def to_text(_: task.ActivityContext, x: int) -> str:
    return f"value={x}"


def chain(ctx: task.OrchestrationContext, x: int):
    a = yield ctx.call_activity(double, input=x)
    b = yield ctx.call_activity(add_ten, input=a)
    c = yield ctx.call_activity(to_text, input=b)
    return [a, b, c]


def test_activity_chaining(dt_worker, dt_client, uid):
    dt_worker.add_orchestrator(chain)
    for fn in (double, add_ten, to_text):
        dt_worker.add_activity(fn)
    dt_worker.start()

    iid = dt_client.schedule_new_orchestration(chain, input=5, instance_id=uid())
    state = _completed(dt_client, iid)

    assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
    assert state.name == "chain"
    assert state.instance_id == iid
    assert state.get_input() == 5
    assert state.get_output() == [10, 20, "value=20"]
    assert state.failure_details is None
    scheduled = _events(dt_client, iid, history.TaskScheduledEvent)
    completed = _events(dt_client, iid, history.TaskCompletedEvent)
    assert [e.name for e in scheduled] == ["double", "add_ten", "to_text"]
    assert [json.loads(e.input) for e in scheduled] == [5, 10, 20]
    assert [json.loads(e.result) for e in completed] == [10, 20, "value=20"]
    # each completion points back at its schedule event
    assert [e.task_scheduled_id for e in completed] == [e.event_id for e in scheduled]
    started = _events(dt_client, iid, history.ExecutionStartedEvent)
    assert len(started) == 1 and started[0].name == "chain"
    assert len(_events(dt_client, iid, history.ExecutionCompletedEvent)) == 1


def square(_: task.ActivityContext, x: int) -> int:
    return x * x


def fan_out_fan_in(ctx: task.OrchestrationContext, n: int):
    results = yield task.when_all([ctx.call_activity(square, input=i) for i in range(n)])
    return {"count": len(results), "sum": sum(results), "first": results[:3]}


def test_fan_out_fan_in_50(dt_worker, dt_client, uid):
    dt_worker.add_orchestrator(fan_out_fan_in)
    dt_worker.add_activity(square)
    dt_worker.start()

    iid = dt_client.schedule_new_orchestration(fan_out_fan_in, input=50, instance_id=uid())
    state = _completed(dt_client, iid)

    assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
    assert state.get_output() == {"count": 50, "sum": sum(i * i for i in range(50)), "first": [0, 1, 4]}
    assert len(_events(dt_client, iid, history.TaskScheduledEvent)) == 50
    assert len(_events(dt_client, iid, history.TaskCompletedEvent)) == 50


# --- sub-orchestrations ---------------------------------------------------------------------

def child_sum(ctx: task.OrchestrationContext, xs: list[int]):
    doubled = yield task.when_all([ctx.call_activity(double, input=x) for x in xs])
    return {"child": ctx.instance_id, "parent": ctx.parent_instance_id, "sum": sum(doubled)}


def parent_of_two(ctx: task.OrchestrationContext, _):
    first = yield ctx.call_sub_orchestrator(child_sum, input=[1, 2, 3])
    second = yield ctx.call_sub_orchestrator(
        child_sum, input=[10], instance_id=f"{ctx.instance_id}-named-child")
    return [first, second]


def test_sub_orchestrations(dt_worker, dt_client, uid, backend_kind):
    dt_worker.add_orchestrator(parent_of_two)
    dt_worker.add_orchestrator(child_sum)
    dt_worker.add_activity(double)
    dt_worker.start()

    iid = dt_client.schedule_new_orchestration(parent_of_two, instance_id=uid())
    state = _completed(dt_client, iid)

    assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
    first, second = state.get_output()
    assert first["sum"] == 12 and first["child"] != iid
    assert second["child"] == f"{iid}-named-child" and second["sum"] == 20
    if backend_kind != "inmemory":
        # ctx.parent_instance_id comes from executionStarted.parentInstance, which the
        # in-memory backend leaves out
        assert first["parent"] == iid and second["parent"] == iid
    created = _events(dt_client, iid, history.SubOrchestrationInstanceCreatedEvent)
    assert [e.name for e in created] == ["child_sum", "child_sum"]
    assert created[1].instance_id == f"{iid}-named-child"
    # the children are instances of their own, completed
    for child_id in (first["child"], second["child"]):
        child = dt_client.get_orchestration_state(child_id)
        assert child is not None and child.runtime_status == OrchestrationStatus.COMPLETED


def explode(_: task.ActivityContext, tag: str) -> None:
    raise ValueError(f"kaboom {tag}")


def failing_child(ctx: task.OrchestrationContext, tag: str):
    yield ctx.call_activity(explode, input=tag)
    return "unreachable"


def parent_of_failing(ctx: task.OrchestrationContext, tag: str):
    result = yield ctx.call_sub_orchestrator(failing_child, input=tag)
    return result


def parent_catching(ctx: task.OrchestrationContext, tag: str):
    try:
        yield ctx.call_sub_orchestrator(failing_child, input=tag)
    except task.TaskFailedError as e:
        return {"caught": str(e), "type": e.details.error_type, "message": e.details.message}
    return "not caught"


def test_failing_sub_orchestration_propagates_details(dt_worker, dt_client, uid):
    for fn in (parent_of_failing, parent_catching, failing_child):
        dt_worker.add_orchestrator(fn)
    dt_worker.add_activity(explode)
    dt_worker.start()

    tag = uuid.uuid4().hex[:8]
    iid = dt_client.schedule_new_orchestration(parent_of_failing, input=tag, instance_id=uid("a"))
    state = _completed(dt_client, iid)
    assert state.runtime_status == OrchestrationStatus.FAILED
    assert state.failure_details is not None
    assert f"kaboom {tag}" in state.failure_details.message
    assert "Sub-orchestration task" in state.failure_details.message
    assert state.get_output() is None
    with pytest.raises(client.OrchestrationFailedError):
        state.raise_if_failed()
    failed = _events(dt_client, iid, history.SubOrchestrationInstanceFailedEvent)
    assert len(failed) == 1 and f"kaboom {tag}" in failed[0].failure_details.message

    # a parent that catches the failure sees the activity's error inside it
    iid2 = dt_client.schedule_new_orchestration(parent_catching, input=tag, instance_id=uid("b"))
    state2 = _completed(dt_client, iid2)
    assert state2.runtime_status == OrchestrationStatus.COMPLETED, state2.failure_details
    out = state2.get_output()
    assert f"kaboom {tag}" in out["caught"]
    assert f"kaboom {tag}" in out["message"]


def flaky(_: task.ActivityContext, key: str) -> str:
    n = _count(key)
    if n < 3:
        raise RuntimeError(f"flaky attempt {n}")
    return f"ok after {n}"


def retrying_activity(ctx: task.OrchestrationContext, key: str):
    policy = task.RetryPolicy(first_retry_interval=timedelta(milliseconds=500),
                              max_number_of_attempts=3, backoff_coefficient=1.0)
    return (yield ctx.call_activity(flaky, input=key, retry_policy=policy))


def retrying_activity_too_few(ctx: task.OrchestrationContext, key: str):
    policy = task.RetryPolicy(first_retry_interval=timedelta(milliseconds=500),
                              max_number_of_attempts=2)
    return (yield ctx.call_activity(flaky, input=key, retry_policy=policy))


def test_retry_policy_activity(dt_worker, dt_client, uid):
    dt_worker.add_orchestrator(retrying_activity)
    dt_worker.add_orchestrator(retrying_activity_too_few)
    dt_worker.add_activity(flaky)
    dt_worker.start()

    key = uid("k")
    iid = dt_client.schedule_new_orchestration(retrying_activity, input=key, instance_id=uid())
    state = _completed(dt_client, iid)
    assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
    assert state.get_output() == "ok after 3"
    assert _calls[key] == 3
    assert len(_events(dt_client, iid, history.TaskFailedEvent)) == 2
    assert len(_events(dt_client, iid, history.TaskCompletedEvent)) == 1
    # retried attempts re-use the action id: three schedules, all with the same event id
    scheduled = _events(dt_client, iid, history.TaskScheduledEvent)
    assert len(scheduled) == 3 and len({e.event_id for e in scheduled}) == 1

    key2 = uid("k2")
    iid2 = dt_client.schedule_new_orchestration(retrying_activity_too_few, input=key2, instance_id=uid("b"))
    state2 = _completed(dt_client, iid2)
    assert state2.runtime_status == OrchestrationStatus.FAILED
    assert "flaky attempt 2" in state2.failure_details.message
    assert _calls[key2] == 2


def fails_first_time(_: task.ActivityContext, key: str) -> str:
    n = _count(key)
    if n == 1:
        raise RuntimeError("first child run fails")
    return f"child ok on call {n}"


def retried_child(ctx: task.OrchestrationContext, key: str):
    return (yield ctx.call_activity(fails_first_time, input=key))


def parent_retrying_child(ctx: task.OrchestrationContext, key: str):
    policy = task.RetryPolicy(first_retry_interval=timedelta(seconds=1), max_number_of_attempts=3)
    return (yield ctx.call_sub_orchestrator(retried_child, input=key, retry_policy=policy))


def test_retry_policy_sub_orchestration(dt_worker, dt_client, uid):
    dt_worker.add_orchestrator(parent_retrying_child)
    dt_worker.add_orchestrator(retried_child)
    dt_worker.add_activity(fails_first_time)
    dt_worker.start()

    key = uid("k")
    iid = dt_client.schedule_new_orchestration(parent_retrying_child, input=key, instance_id=uid())
    state = _completed(dt_client, iid)
    assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
    assert state.get_output() == "child ok on call 2"
    assert _calls[key] == 2
    # the retry re-created the child under the same instance id, over its failed run
    created = _events(dt_client, iid, history.SubOrchestrationInstanceCreatedEvent)
    assert len(created) == 2 and created[0].instance_id == created[1].instance_id
    assert len(_events(dt_client, iid, history.SubOrchestrationInstanceFailedEvent)) == 1
    child = dt_client.get_orchestration_state(created[0].instance_id)
    assert child is not None and child.runtime_status == OrchestrationStatus.COMPLETED
    assert child.get_output() == "child ok on call 2"


# --- timers and events ----------------------------------------------------------------------

def sleeper(ctx: task.OrchestrationContext, seconds: float):
    before = ctx.current_utc_datetime
    yield ctx.create_timer(timedelta(seconds=seconds))
    return (ctx.current_utc_datetime - before).total_seconds()


def test_durable_timer(dt_worker, dt_client, uid):
    dt_worker.add_orchestrator(sleeper)
    dt_worker.start()

    t0 = time.monotonic()
    iid = dt_client.schedule_new_orchestration(sleeper, input=2, instance_id=uid())
    state = _completed(dt_client, iid)
    elapsed = time.monotonic() - t0

    assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
    assert 1.5 <= elapsed <= 10, elapsed
    # the orchestration's own clock (orchestratorStarted timestamps) moved by the timer too
    assert state.get_output() >= 1.9
    created = _events(dt_client, iid, history.TimerCreatedEvent)
    fired = _events(dt_client, iid, history.TimerFiredEvent)
    assert len(created) == 1 and len(fired) == 1
    assert fired[0].timer_id == created[0].event_id
    assert abs((fired[0].fire_at - created[0].fire_at).total_seconds()) < 0.001


def approval(ctx: task.OrchestrationContext, _):
    first = yield ctx.wait_for_external_event("approval")
    second = yield ctx.wait_for_external_event("Note")
    return {"approval": first, "note": second}


def test_external_events(dt_worker, dt_client, uid):
    dt_worker.add_orchestrator(approval)
    dt_worker.start()

    iid = dt_client.schedule_new_orchestration(approval, instance_id=uid())
    dt_client.wait_for_orchestration_start(iid, timeout=WAIT)
    # "Note" arrives first and waits in the buffer; names match case-insensitively
    dt_client.raise_orchestration_event(iid, "note", data="buffered")
    dt_client.raise_orchestration_event(iid, "Approval", data={"by": "alice", "ok": True})
    state = _completed(dt_client, iid)

    assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
    assert state.get_output() == {"approval": {"by": "alice", "ok": True}, "note": "buffered"}
    raised = _events(dt_client, iid, history.EventRaisedEvent)
    assert sorted(e.name.lower() for e in raised) == ["approval", "note"]


def event_or_timeout(ctx: task.OrchestrationContext, seconds: float):
    event = ctx.wait_for_external_event("go")
    timer = ctx.create_timer(timedelta(seconds=seconds))
    winner = yield task.when_any([event, timer])
    if winner == event:
        return f"event:{event.get_result()}"
    return "timeout"


@pytest.mark.parametrize("raise_event", [True, False], ids=["event-wins", "timer-wins"])
def test_when_any_event_vs_timer(dt_worker, dt_client, uid, raise_event):
    dt_worker.add_orchestrator(event_or_timeout)
    dt_worker.start()

    t0 = time.monotonic()
    iid = dt_client.schedule_new_orchestration(event_or_timeout, input=3, instance_id=uid())
    dt_client.wait_for_orchestration_start(iid, timeout=WAIT)
    if raise_event:
        dt_client.raise_orchestration_event(iid, "go", data=42)
    state = _completed(dt_client, iid)
    elapsed = time.monotonic() - t0

    assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
    if raise_event:
        assert state.get_output() == "event:42"
        assert elapsed < 3, elapsed  # did not wait for the timer
    else:
        assert state.get_output() == "timeout"
        assert elapsed >= 2.5, elapsed


def accumulate(ctx: task.OrchestrationContext, seen: list[str]):
    item = yield ctx.wait_for_external_event("item")
    seen = seen + [item]
    if len(seen) < 3:
        ctx.continue_as_new(seen, save_events=True)
        return
    return {"seen": seen, "generation_input_len": len(seen) - 1}


def test_continue_as_new_carries_events(make_worker, dt_client, uid):
    iid = dt_client.schedule_new_orchestration(accumulate, input=[], instance_id=uid())
    # all three events arrive before the first run: one is consumed per generation, the
    # unconsumed ones must be carried over (save_events=True) through each continue-as-new
    for item in ("a", "b", "c"):
        dt_client.raise_orchestration_event(iid, "item", data=item)
    w = make_worker()
    w.add_orchestrator(accumulate)
    w.start()
    state = _completed(dt_client, iid)

    assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
    assert state.get_output() == {"seen": ["a", "b", "c"], "generation_input_len": 2}
    # the instance shows its latest input; the history is the last generation's
    assert state.get_input() == ["a", "b"]
    started = _events(dt_client, iid, history.ExecutionStartedEvent)
    assert len(started) == 1 and json.loads(started[0].input) == ["a", "b"]
    raised = _events(dt_client, iid, history.EventRaisedEvent)
    assert [json.loads(e.input) for e in raised] == ["c"]


def accumulate_five(ctx: task.OrchestrationContext, seen: list[str]):
    item = yield ctx.wait_for_external_event("item")
    seen = seen + [item]
    if len(seen) < 5:
        ctx.continue_as_new(seen, save_events=True)
        return
    return seen


@pytest.mark.parametrize("round_", range(3))
def test_continue_as_new_keeps_event_order_while_running(dt_worker, dt_client, uid, round_):
    dt_worker.add_orchestrator(accumulate_five)
    dt_worker.start()

    iid = dt_client.schedule_new_orchestration(accumulate_five, input=[], instance_id=uid())
    dt_client.wait_for_orchestration_start(iid, timeout=WAIT)
    # raised while generations turn over: some arrive during a continue-as-new turn, some are
    # carried over; either way they must be consumed in the order they were raised
    items = ["a", "b", "c", "d", "e"]
    for item in items:
        dt_client.raise_orchestration_event(iid, "item", data=item)
    state = _completed(dt_client, iid)
    assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
    assert state.get_output() == items
    assert state.get_input() == items[:4]


def with_custom_status(ctx: task.OrchestrationContext, _):
    ctx.set_custom_status({"stage": "waiting"})
    data = yield ctx.wait_for_external_event("proceed")
    ctx.set_custom_status({"stage": "done", "data": data})
    return "finished"


def test_custom_status(dt_worker, dt_client, uid):
    dt_worker.add_orchestrator(with_custom_status)
    dt_worker.start()

    iid = dt_client.schedule_new_orchestration(with_custom_status, instance_id=uid())
    deadline = time.monotonic() + WAIT
    while True:
        st = dt_client.get_orchestration_state(iid)
        if st is not None and st.serialized_custom_status:
            break
        assert time.monotonic() < deadline, "custom status never appeared"
        time.sleep(0.1)
    assert st.runtime_status == OrchestrationStatus.RUNNING
    assert st.get_custom_status() == {"stage": "waiting"}

    dt_client.raise_orchestration_event(iid, "proceed", data=7)
    state = _completed(dt_client, iid)
    assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
    assert state.get_output() == "finished"
    assert state.get_custom_status() == {"stage": "done", "data": 7}


def echo(_: task.ActivityContext, x):
    return x


def uuids(ctx: task.OrchestrationContext, _):
    a = ctx.new_uuid()
    b = ctx.new_uuid()
    echoed = yield ctx.call_activity(echo, input=[a, b])
    c = ctx.new_uuid()
    return {"before": [a, b], "echoed": echoed, "after": c}


def test_new_uuid_is_replay_stable(dt_worker, dt_client, uid):
    dt_worker.add_orchestrator(uuids)
    dt_worker.add_activity(echo)
    dt_worker.start()

    iid = dt_client.schedule_new_orchestration(uuids, instance_id=uid())
    state = _completed(dt_client, iid)
    assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
    out = state.get_output()
    # the final replay regenerated the same ids the first run sent to the activity
    assert out["echoed"] == out["before"]
    ids = out["before"] + [out["after"]]
    assert len(set(ids)) == 3
    for s in ids:
        uuid.UUID(s)
    scheduled = _events(dt_client, iid, history.TaskScheduledEvent)
    assert json.loads(scheduled[0].input) == out["before"]
