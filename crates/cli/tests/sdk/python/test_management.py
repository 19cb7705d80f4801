# Instance management through the official Python SDK's client: suspend/resume, terminate,
# purge, rewind, restart, id reuse policies, query paging, work-item filters.
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import grpc
import pytest
from google.protobuf import wrappers_pb2

from durabletask import client, history, task, worker
from durabletask.client import OrchestrationStatus
import durabletask.internal.orchestrator_service_pb2 as pb

WAIT = 60


def _completed(c: client.TaskHubGrpcClient, iid: str) -> client.OrchestrationState:
    state = c.wait_for_orchestration_completion(iid, timeout=WAIT)
    assert state is not None, f"instance {iid} not found"
    return state


def _wait_status(c: client.TaskHubGrpcClient, iid: str, status: OrchestrationStatus,
                 timeout: float = 30) -> client.OrchestrationState:
    deadline = time.monotonic() + timeout
    while True:
        st = c.get_orchestration_state(iid)
        if st is not None and st.runtime_status == status:
            return st
        assert time.monotonic() < deadline, f"{iid}: still {st and st.runtime_status}, wanted {status}"
        time.sleep(0.1)


def wait_for_go(ctx: task.OrchestrationContext, _):
    value = yield ctx.wait_for_external_event("go")
    return {"got": value}


def hello(_: task.ActivityContext, name: str) -> str:
    return f"hello {name}"


def say_hello(ctx: task.OrchestrationContext, name: str):
    return (yield ctx.call_activity(hello, input=name))


# --- suspend / resume / terminate -----------------------------------------------------------

def test_suspend_and_resume(dt_worker, dt_client, uid):
    dt_worker.add_orchestrator(wait_for_go)
    dt_worker.start()

    iid = dt_client.schedule_new_orchestration(wait_for_go, instance_id=uid())
    st = dt_client.wait_for_orchestration_start(iid, timeout=WAIT)
    assert st.runtime_status == OrchestrationStatus.RUNNING

    dt_client.suspend_orchestration(iid, reason="maintenance")
    _wait_status(dt_client, iid, OrchestrationStatus.SUSPENDED)
    dt_client.suspend_orchestration(iid)  # again: a no-op

    # an event raised while suspended is held until the resume
    dt_client.raise_orchestration_event(iid, "go", data="while-suspended")
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        dt_client.wait_for_orchestration_completion(iid, timeout=3)
    assert time.monotonic() - t0 >= 2.5  # the wait was held, not answered early
    assert dt_client.get_orchestration_state(iid).runtime_status == OrchestrationStatus.SUSPENDED

    dt_client.resume_orchestration(iid, reason="done")
    state = _completed(dt_client, iid)
    assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
    assert state.get_output() == {"got": "while-suspended"}
    events = dt_client.get_orchestration_history(iid)
    kinds = [type(e) for e in events]
    assert history.ExecutionSuspendedEvent in kinds and history.ExecutionResumedEvent in kinds
    # the run ended only after the resume (the event may be recorded before it: the SDK parks
    # events that arrive while suspended)
    assert kinds.index(history.ExecutionSuspendedEvent) < kinds.index(history.ExecutionResumedEvent)
    assert kinds.index(history.ExecutionResumedEvent) < kinds.index(history.ExecutionCompletedEvent)


@pytest.mark.perdure_only("ResumeInstance is unguarded there: the SDK fails the instance on an "
                           "executionResumed it did not expect (reference section 6)")
def test_resume_of_running_instance_is_a_noop(dt_worker, dt_client, uid):
    dt_worker.add_orchestrator(wait_for_go)
    dt_worker.start()

    iid = dt_client.schedule_new_orchestration(wait_for_go, instance_id=uid())
    dt_client.wait_for_orchestration_start(iid, timeout=WAIT)
    dt_client.resume_orchestration(iid)  # not suspended: must not break the instance
    dt_client.raise_orchestration_event(iid, "go", data=1)
    state = _completed(dt_client, iid)
    assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
    assert state.get_output() == {"got": 1}


def test_terminate(dt_worker, dt_client, uid):
    dt_worker.add_orchestrator(wait_for_go)
    dt_worker.start()

    iid = dt_client.schedule_new_orchestration(wait_for_go, instance_id=uid())
    dt_client.wait_for_orchestration_start(iid, timeout=WAIT)
    dt_client.terminate_orchestration(iid, output={"reason": "stopped by test"})
    state = _completed(dt_client, iid)
    assert state.runtime_status == OrchestrationStatus.TERMINATED
    assert state.get_output() == {"reason": "stopped by test"}
    # terminating a terminated instance is a no-op; raising an event to it is accepted and dropped
    dt_client.terminate_orchestration(iid, output="again")
    dt_client.raise_orchestration_event(iid, "go", data=1)
    again = dt_client.get_orchestration_state(iid)
    assert again.runtime_status == OrchestrationStatus.TERMINATED
    assert again.get_output() == {"reason": "stopped by test"}


def test_terminate_suspended_instance(dt_worker, dt_client, uid):
    dt_worker.add_orchestrator(wait_for_go)
    dt_worker.start()

    iid = dt_client.schedule_new_orchestration(wait_for_go, instance_id=uid())
    dt_client.wait_for_orchestration_start(iid, timeout=WAIT)
    dt_client.suspend_orchestration(iid)
    _wait_status(dt_client, iid, OrchestrationStatus.SUSPENDED)
    dt_client.terminate_orchestration(iid, output="bye")
    state = _completed(dt_client, iid)
    assert state.runtime_status == OrchestrationStatus.TERMINATED
    assert state.get_output() == "bye"


# --- purge ----------------------------------------------------------------------------------

def test_purge_one(dt_worker, dt_client, uid):
    dt_worker.add_orchestrator(say_hello)
    dt_worker.add_orchestrator(wait_for_go)
    dt_worker.add_activity(hello)
    dt_worker.start()

    iid = dt_client.schedule_new_orchestration(say_hello, input="p", instance_id=uid("done"))
    assert _completed(dt_client, iid).runtime_status == OrchestrationStatus.COMPLETED
    running = dt_client.schedule_new_orchestration(wait_for_go, instance_id=uid("running"))
    dt_client.wait_for_orchestration_start(running, timeout=WAIT)

    # a running instance is not purged
    assert dt_client.purge_orchestration(running).deleted_instance_count == 0
    assert dt_client.get_orchestration_state(running) is not None

    result = dt_client.purge_orchestration(iid)
    assert result.deleted_instance_count == 1
    assert result.is_complete in (True, None)
    assert dt_client.get_orchestration_state(iid) is None
    # purging it again, or an unknown id, deletes nothing
    assert dt_client.purge_orchestration(iid).deleted_instance_count == 0

    dt_client.terminate_orchestration(running)
    _completed(dt_client, running)


def test_purge_by_filter(dt_worker, dt_client, uid):
    dt_worker.add_orchestrator(say_hello)
    dt_worker.add_orchestrator(wait_for_go)
    dt_worker.add_activity(hello)
    dt_worker.start()

    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    done = [dt_client.schedule_new_orchestration(say_hello, input=str(i), instance_id=uid(f"d{i}"))
            for i in range(3)]
    for iid in done:
        assert _completed(dt_client, iid).runtime_status == OrchestrationStatus.COMPLETED
    running = dt_client.schedule_new_orchestration(wait_for_go, instance_id=uid("running"))
    dt_client.wait_for_orchestration_start(running, timeout=WAIT)
    after = datetime.now(timezone.utc) + timedelta(seconds=1)

    result = dt_client.purge_orchestrations_by(
        created_time_from=before, created_time_to=after,
        runtime_status=[OrchestrationStatus.COMPLETED])
    assert result.deleted_instance_count == 3
    for iid in done:
        assert dt_client.get_orchestration_state(iid) is None
    assert dt_client.get_orchestration_state(running).runtime_status == OrchestrationStatus.RUNNING

    dt_client.terminate_orchestration(running, output="x")
    _completed(dt_client, running)
    result = dt_client.purge_orchestrations_by(
        created_time_from=before, created_time_to=after,
        runtime_status=[OrchestrationStatus.TERMINATED])
    assert result.deleted_instance_count == 1
    assert dt_client.get_orchestration_state(running) is None


# --- rewind / restart -----------------------------------------------------------------------

_rewind_calls: dict[str, list[str]] = {}
_rewind_lock = threading.Lock()


def step_ok(_: task.ActivityContext, key: str) -> str:
    with _rewind_lock:
        _rewind_calls.setdefault(key, []).append("ok")
    return "first step"


def step_fails_once(_: task.ActivityContext, key: str) -> str:
    with _rewind_lock:
        calls = _rewind_calls.setdefault(key, [])
        calls.append("flaky")
        n = calls.count("flaky")
    if n == 1:
        raise RuntimeError("transient failure")
    return "second step"


def two_steps(ctx: task.OrchestrationContext, key: str):
    a = yield ctx.call_activity(step_ok, input=key)
    b = yield ctx.call_activity(step_fails_once, input=key)
    return [a, b]


def test_rewind_failed_instance(dt_worker, dt_client, uid):
    dt_worker.add_orchestrator(two_steps)
    dt_worker.add_activity(step_ok)
    dt_worker.add_activity(step_fails_once)
    dt_worker.start()

    key = uid("k")
    iid = dt_client.schedule_new_orchestration(two_steps, input=key, instance_id=uid())
    failed = _completed(dt_client, iid)
    assert failed.runtime_status == OrchestrationStatus.FAILED
    assert "transient failure" in failed.failure_details.message

    dt_client.rewind_orchestration(iid, reason="retry it")
    state = _completed(dt_client, iid)
    assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
    assert state.get_output() == ["first step", "second step"]
    assert state.failure_details is None
    # only the failed work ran again
    assert _rewind_calls[key] == ["ok", "flaky", "flaky"]
    events = dt_client.get_orchestration_history(iid)
    assert any(isinstance(e, history.ExecutionRewoundEvent) for e in events)
    assert not any(isinstance(e, history.TaskFailedEvent) for e in events)


def test_rewind_rejects_non_failed(dt_worker, dt_client, uid):
    dt_worker.add_orchestrator(say_hello)
    dt_worker.add_activity(hello)
    dt_worker.start()
    iid = dt_client.schedule_new_orchestration(say_hello, input="r", instance_id=uid())
    _completed(dt_client, iid)
    with pytest.raises(grpc.RpcError):
        dt_client.rewind_orchestration(iid)
    with pytest.raises(grpc.RpcError):
        dt_client.rewind_orchestration(uid("missing"))


def test_restart_same_and_new_id(dt_worker, dt_client, uid):
    dt_worker.add_orchestrator(say_hello)
    dt_worker.add_activity(hello)
    dt_worker.start()

    iid = dt_client.schedule_new_orchestration(say_hello, input="restart", instance_id=uid())
    first = _completed(dt_client, iid)
    assert first.get_output() == "hello restart"

    same = dt_client.restart_orchestration(iid)
    assert same == iid
    again = _completed(dt_client, iid)
    assert again.runtime_status == OrchestrationStatus.COMPLETED, again.failure_details
    assert again.get_input() == "restart" and again.get_output() == "hello restart"
    assert again.created_at >= first.created_at
    # fresh history: one run's worth of events
    assert len([e for e in dt_client.get_orchestration_history(iid)
                if isinstance(e, history.ExecutionStartedEvent)]) == 1

    new_id = dt_client.restart_orchestration(iid, restart_with_new_instance_id=True)
    assert new_id and new_id != iid
    other = _completed(dt_client, new_id)
    assert other.runtime_status == OrchestrationStatus.COMPLETED, other.failure_details
    assert other.name == "say_hello"
    assert other.get_input() == "restart" and other.get_output() == "hello restart"

    with pytest.raises(grpc.RpcError) as err:
        dt_client.restart_orchestration(uid("missing"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


# --- id reuse -------------------------------------------------------------------------------

def test_reuse_policy(dt_worker, dt_client, uid):
    dt_worker.add_orchestrator(say_hello)
    dt_worker.add_activity(hello)
    dt_worker.start()

    iid = uid()
    dt_client.schedule_new_orchestration(say_hello, input="one", instance_id=iid)
    assert _completed(dt_client, iid).get_output() == "hello one"

    # no policy: the id is taken
    with pytest.raises(grpc.RpcError) as err:
        dt_client.schedule_new_orchestration(say_hello, input="two", instance_id=iid)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    # a policy that does not list the current status (COMPLETED): still taken
    only_failed = pb.OrchestrationIdReusePolicy(replaceableStatus=[pb.ORCHESTRATION_STATUS_FAILED])
    with pytest.raises(grpc.RpcError) as err:
        dt_client.schedule_new_orchestration(say_hello, input="two", instance_id=iid,
                                             reuse_id_policy=only_failed)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert dt_client.get_orchestration_state(iid).get_output() == "hello one"

    # replaceable terminal statuses: a fresh run under the same id
    replaceable = pb.OrchestrationIdReusePolicy(replaceableStatus=[
        pb.ORCHESTRATION_STATUS_COMPLETED, pb.ORCHESTRATION_STATUS_FAILED,
        pb.ORCHESTRATION_STATUS_TERMINATED])
    assert dt_client.schedule_new_orchestration(say_hello, input="three", instance_id=iid,
                                                reuse_id_policy=replaceable) == iid
    state = _completed(dt_client, iid)
    assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
    assert state.get_input() == "three" and state.get_output() == "hello three"


# --- queries --------------------------------------------------------------------------------

def test_query_paging(dt_worker, dt_client, raw_stub, uid):
    dt_worker.add_orchestrator(say_hello)
    dt_worker.add_activity(hello)
    dt_worker.start()

    prefix = uid("q")
    ids = [dt_client.schedule_new_orchestration(say_hello, input=str(i), instance_id=f"{prefix}-{i}")
           for i in range(3)]
    for iid in ids:
        _completed(dt_client, iid)

    # one page of 2, then the rest through the continuation token
    def page(token):
        req = pb.QueryInstancesRequest(query=pb.InstanceQuery(
            instanceIdPrefix=wrappers_pb2.StringValue(value=prefix),
            maxInstanceCount=2, fetchInputsAndOutputs=True, continuationToken=token))
        return raw_stub.QueryInstances(req, timeout=30)

    first = page(None)
    assert len(first.orchestrationState) == 2
    assert first.HasField("continuationToken") and first.continuationToken.value not in ("", "0")
    second = page(first.continuationToken)
    got = [s.instanceId for s in first.orchestrationState] + [s.instanceId for s in second.orchestrationState]
    assert sorted(got) == sorted(ids)

    # the client pages by itself
    states = dt_client.get_all_orchestration_states(client.OrchestrationQuery(
        instance_id_prefix=prefix, max_instance_count=2, fetch_inputs_and_outputs=True))
    assert sorted(s.instance_id for s in states) == sorted(ids)
    assert all(s.runtime_status == OrchestrationStatus.COMPLETED for s in states)
    assert sorted(s.get_output() for s in states) == ["hello 0", "hello 1", "hello 2"]
    # a status filter that matches none of them
    assert dt_client.get_all_orchestration_states(client.OrchestrationQuery(
        instance_id_prefix=prefix, runtime_status=[OrchestrationStatus.RUNNING])) == []


# --- work-item filters ----------------------------------------------------------------------

def mine(ctx: task.OrchestrationContext, x: int):
    return (yield ctx.call_activity(mine_activity, input=x))


def mine_activity(_: task.ActivityContext, x: int) -> str:
    return f"mine {x}"


def nobodys(ctx: task.OrchestrationContext, _):
    return "taken by the second worker"


def test_work_item_filters(make_worker, dt_client, uid):
    w1 = make_worker()
    w1.add_orchestrator(mine)
    w1.add_activity(mine_activity)
    w1.use_work_item_filters()  # only what it registered
    w1.start()

    orphan = dt_client.schedule_new_orchestration("nobodys", instance_id=uid("orphan"))
    iid = dt_client.schedule_new_orchestration(mine, input=1, instance_id=uid("mine"))
    state = _completed(dt_client, iid)
    assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
    assert state.get_output() == "mine 1"

    # no worker accepts "nobodys": it is never dispatched
    with pytest.raises(TimeoutError):
        dt_client.wait_for_orchestration_start(orphan, timeout=3)
    assert dt_client.get_orchestration_state(orphan).runtime_status == OrchestrationStatus.PENDING

    # a second worker that takes only "nobodys" runs it
    w2 = make_worker()
    w2.add_orchestrator(nobodys)
    w2.use_work_item_filters(worker.WorkItemFilters(
        orchestrations=[worker.OrchestrationWorkItemFilter(name="nobodys")]))
    w2.start()
    state = _completed(dt_client, orphan)
    assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
    assert state.get_output() == "taken by the second worker"


def test_list_instance_ids_paging(dt_worker, dt_client, uid):
    dt_worker.add_orchestrator(say_hello)
    dt_worker.add_activity(hello)
    dt_worker.start()

    since = datetime.now(timezone.utc) - timedelta(milliseconds=500)
    ids = []
    for i in range(3):
        iid = dt_client.schedule_new_orchestration(say_hello, input=str(i), instance_id=uid(f"l{i}"))
        _completed(dt_client, iid)
        ids.append(iid)

    # terminal instances completed since `since` (this test's: the suite runs one test at a
    # time), 2 a page; the token names the last id of its page
    first = dt_client.list_instance_ids(completed_time_from=since, page_size=2,
                                        runtime_status=[OrchestrationStatus.COMPLETED])
    assert len(first.items) == 2, first
    assert first.continuation_token and first.items[-1] in first.continuation_token
    second = dt_client.list_instance_ids(completed_time_from=since, page_size=2,
                                         runtime_status=[OrchestrationStatus.COMPLETED],
                                         continuation_token=first.continuation_token)
    assert first.items + second.items == ids  # ordered by completion time
    assert not second.continuation_token


def test_unknown_instance_answers(dt_client, uid):
    missing = uid("missing")
    assert dt_client.get_orchestration_state(missing) is None
    with pytest.raises(grpc.RpcError) as err:
        dt_client.raise_orchestration_event(missing, "go", data=1)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        dt_client.get_orchestration_history(missing)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        dt_client.suspend_orchestration(missing)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    dt_client.terminate_orchestration(missing)  # a no-op
    assert dt_client.purge_orchestration(missing).deleted_instance_count == 0
