"""A Durable Task Python SDK worker and client against a perdure node.

    pip install durabletask==1.12.0
    perdure serve                       # in another terminal
    python hello.py                     # PERDURE_GRPC_ADDR=host:port if not localhost:4001
"""
import os

from durabletask import client, task, worker

ADDRESS = os.environ.get("PERDURE_GRPC_ADDR", "localhost:4001")


def greet(ctx: task.ActivityContext, name: str) -> str:
    """An activity: ordinary code, run at least once, its result recorded."""
    return f"Hello, {name}!"


def hello_orchestrator(ctx: task.OrchestrationContext, names: list[str]):
    """An orchestration: deterministic code whose every `yield` is a durable step."""
    greetings = []
    for name in names:
        greetings.append((yield ctx.call_activity(greet, input=name)))
    return greetings


if __name__ == "__main__":
    with worker.TaskHubGrpcWorker(host_address=ADDRESS) as w:
        w.add_orchestrator(hello_orchestrator)
        w.add_activity(greet)
        w.start()

        c = client.TaskHubGrpcClient(host_address=ADDRESS)
        instance_id = c.schedule_new_orchestration(hello_orchestrator, input=["Tokyo", "London", "Seattle"])
        state = c.wait_for_orchestration_completion(instance_id, timeout=60)
        c.close()

    if state is None or state.runtime_status != client.OrchestrationStatus.COMPLETED:
        raise SystemExit(f"orchestration {instance_id} did not complete: {state}")
    print(f"{instance_id}: {state.serialized_output}")
