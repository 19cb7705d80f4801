"""A worker process for test_worker_loss.py (run as a script; the test SIGKILLs it).

    python _worker_proc.py HOST:PORT RUNS_DIR SLEEP_SECONDS
"""
import os
import sys
import time

from durabletask import task, worker

ADDRESS, RUNS_DIR, SLEEP = sys.argv[1], sys.argv[2], float(sys.argv[3])


def slow_step(_: task.ActivityContext, key: str) -> str:
    # one line per execution: the test counts them
    with open(os.path.join(RUNS_DIR, f"{key}.runs"), "a") as f:
        f.write(f"{os.getpid()}\n")
        f.flush()
        os.fsync(f.fileno())
    time.sleep(SLEEP)
    return f"done {key}"


def survive_worker_loss(ctx: task.OrchestrationContext, key: str):
    result = yield ctx.call_activity(slow_step, input=key)
    return {"result": result}


if __name__ == "__main__":
    w = worker.TaskHubGrpcWorker(host_address=ADDRESS)
    w.add_orchestrator(survive_worker_loss)
    w.add_activity(slow_step)
    w.start()
    print("worker started", flush=True)
    while True:
        time.sleep(1)
