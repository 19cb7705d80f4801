"""Entity operations through the official Durable Task Python SDK's client against a perdure
node's built-in Rust `counter` entity: `signal_entity` from THREADS threads over KEYS keys,
each acknowledged once durable; then every counter is read back and must hold exactly what was
added.

    python entity_ops.py --addr 127.0.0.1:4001 --ops 5000 --threads 8 --keys 100
"""

import argparse
import json
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from durabletask import client, entities


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--ops", type=int, default=5000)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--keys", type=int, default=100)
    args = ap.parse_args()
    run = uuid.uuid4().hex[:8]
    ids = [entities.EntityInstanceId("counter", f"bench-{run}-{k}") for k in range(args.keys)]
    c = client.TaskHubGrpcClient(host_address=args.addr)

    def one(i: int) -> None:
        c.signal_entity(ids[i % args.keys], "add", input=1)

    start = time.perf_counter()
    with ThreadPoolExecutor(args.threads) as pool:
        list(pool.map(one, range(args.ops)))
    seconds = time.perf_counter() - start
    want = [args.ops // args.keys + (1 if k < args.ops % args.keys else 0) for k in range(args.keys)]
    got = []
    for e in ids:
        m = c.get_entity(e, include_state=True)
        got.append(int(m.get_state(int)) if m is not None else 0)
    c.close()
    wrong = sum(1 for g, w in zip(got, want) if g != w)
    print(json.dumps({"ops": args.ops, "threads": args.threads, "seconds": round(seconds, 3),
                      "ops_per_sec": round(args.ops / seconds, 1), "wrong_counters": wrong}))
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
