"""HelloSequence5 through the official Durable Task Python SDK (durabletask 1.12.0): one worker
process and one client, against a perdure node's gRPC listener or the SDK's own in-memory
backend, so the same worker measures both.

    python hello5.py --addr 127.0.0.1:4001 --instances 300
    python hello5.py --inmemory --instances 300

Throughput: every instance started at once, seconds from the first start to the last
completion. Latency: instances one at a time, start to completion. Prints one JSON line:
instances, seconds, instances per second, latency percentiles in milliseconds, failures.
"""

import argparse
import json
import socket
import sys
import time
import uuid

from durabletask import client, task, worker

CITIES = ["Tokyo", "Seattle", "London", "Paris", "Cairo"]


def say_hello(_: task.ActivityContext, city: str) -> str:
    return f"Hello {city}!"


def hello_sequence5(ctx: task.OrchestrationContext, _):
    out = []
    for city in CITIES:
        out.append((yield ctx.call_activity(say_hello, input=city)))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", help="host:port of a perdure node's gRPC listener")
    ap.add_argument("--inmemory", action="store_true", help="the SDK's in-memory backend")
    ap.add_argument("--instances", type=int, default=300)
    ap.add_argument("--latency-runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args()
    backend = None
    if args.inmemory:
        from durabletask.testing import create_test_backend

        port = free_port()
        backend = create_test_backend(port=port, max_history_size=100_000)
        addr = f"localhost:{port}"
    elif args.addr:
        addr = args.addr
    else:
        ap.error("--addr or --inmemory")
    expected = json.dumps([f"Hello {c}!" for c in CITIES])
    failures = []

    def check(iid: str, st) -> None:
        ok = st is not None and st.runtime_status == client.OrchestrationStatus.COMPLETED
        if not ok or json.dumps(json.loads(st.serialized_output)) != expected:
            failures.append(iid)

    with worker.TaskHubGrpcWorker(host_address=addr) as w:
        w.add_orchestrator(hello_sequence5)
        w.add_activity(say_hello)
        w.start()
        c = client.TaskHubGrpcClient(host_address=addr)
        # latency: one instance at a time, start to completion
        latencies = []
        for i in range(args.warmup + args.latency_runs):
            iid = f"lat-{uuid.uuid4().hex}"
            t = time.perf_counter()
            c.schedule_new_orchestration(hello_sequence5, instance_id=iid)
            st = c.wait_for_orchestration_completion(iid, timeout=120)
            if i >= args.warmup:
                latencies.append((time.perf_counter() - t) * 1000)
            check(iid, st)
        # throughput: every instance started at once, from the first start to the last
        # completion (waited for one at a time: the in-memory backend's server has few threads)
        ids = [f"bench-{uuid.uuid4().hex}" for _ in range(args.instances)]
        start = time.perf_counter()
        for iid in ids:
            c.schedule_new_orchestration(hello_sequence5, instance_id=iid)
        for iid in ids:
            check(iid, c.wait_for_orchestration_completion(iid, timeout=600))
        seconds = time.perf_counter() - start
        c.close()
    if backend is not None:
        backend.stop()
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 2) if latencies else 0.0

    print(
        json.dumps(
            {
                "backend": "inmemory" if args.inmemory else addr,
                "instances": args.instances,
                "seconds": round(seconds, 3),
                "per_sec": round(args.instances / seconds, 1),
                "p50_ms": pct(0.5),
                "p99_ms": pct(0.99),
                "failures": len(failures),
            }
        )
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
