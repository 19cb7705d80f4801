"""A worker process of sdk_failover.rs (run as a script; the test kills nodes under it).

    PERDURE_FAILOVER_RUNS=FILE python run_worker.py HOST:PORT

Default SDK settings: on a lost stream it reconnects to the same address with back-off.
"""
from __future__ import annotations

import logging
import sys
import time

from durabletask import worker

import workload

if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    logger = logging.getLogger("failover-worker")
    logger.setLevel(logging.INFO)  # the SDK's connection messages are at INFO
    w = worker.TaskHubGrpcWorker(host_address=sys.argv[1], logger=logger)
    w.add_orchestrator(workload.failover_orchestration)
    w.add_activity(workload.chain_step)
    w.add_activity(workload.fan_step)
    w.add_entity(workload.tally)
    w.start()
    print("worker started", flush=True)
    while True:
        time.sleep(1)
