"""Recovery from the three faults of tests/integration/test_faults.py, measured without a
backlog: a light paced load (default 50 changes/s, well below what the pipeline takes) so
the figure is how long the pipeline was out, not how long it took to drain a queue.

For each fault, at 30 % of the load:

- ``kill-worker``: kill -9 of worker instance 0 (the supervisor restarts it);
- ``kill-connect``: kill -9 of Kafka Connect, which hosts Debezium (restarted likewise);
- ``restart-kafka``: the broker stopped (SIGTERM) and started again 3 s later.

Reported per fault: seconds from the fault to the delivery on deliver.tax.enterprise of
the first change committed after it, the longest gap between deliveries, and whether
every change arrived exactly once and in order (the fault tests' own checker).

Each fault is repeated ``--repeat`` times; the worst run and the median are reported.

Usage: .venv/bin/python bench/recovery.py [--rate 50] [--seconds 60] [--repeat 3]
       [--faults kill-worker,kill-connect,restart-kafka]
Prints one line per run and one JSON line for bench/baselines/recovery.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import time
import uuid
from collections.abc import Callable

from streams.config.settings import REPO_ROOT, Settings

sys.path.insert(0, str(REPO_ROOT))  # the fault tests' load generator and checker

from govsync.stack import connect, kafka, supervision
from streams.kafka.serde import ValueDeserializer, registry_client
from streams.model.topology import load_topology
from tests.integration import load
from tests.integration.companies import TAX
from tests.integration.conftest import Stack

FAULT_AT = 0.30


def kill_9(settings: Settings, program: str) -> Callable[[], None]:
    """SIGKILL the program; supervisord starts it again."""

    def fault() -> None:
        status = supervision.status(settings, program)
        if status is None or status.pid is None:
            raise SystemExit(f"{program} is not running")
        os.kill(status.pid, signal.SIGKILL)

    return fault


def restart_kafka(settings: Settings) -> None:
    supervision.stop(settings, kafka.NAME)
    time.sleep(3)
    kafka.start(settings)


def run(stack: Stack, label: str, fault: Callable[[], None], rate: float, seconds: float) -> dict:
    total = int(rate * seconds)
    usccs = load.prepare(stack, 100)
    thread = load.start_load(stack, usccs, total, f"{label}-{uuid.uuid4().hex[:8]}", 10, rate=rate)
    thread.progress.wait_for(FAULT_AT)
    committed_at_fault = thread.progress.committed
    fault_at = time.time()
    fault()
    thread.finish()
    report = load.check(stack, usccs, thread.progress.run_id, total, timeout=300)
    recovery = load.recovery(report, fault_at, committed_at_fault, TAX)
    if recovery.first_post_fault_change_s is None:
        raise SystemExit(f"{label}: no change committed after the fault was delivered\n{report}")
    exact = report.complete and all(
        report[topic].exactly_once_in_order for topic in load.DELIVERIES
    )
    return {
        "first_delivery_after_fault_s": round(recovery.first_post_fault_change_s, 1),
        "longest_stall_s": round(recovery.longest_stall_s, 1),
        "exactly_once_in_order": exact,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--faults", default="kill-worker,kill-connect,restart-kafka")
    args = parser.parse_args()

    settings = Settings.from_env()
    stack = Stack(
        settings, load_topology(settings.topology), ValueDeserializer(registry_client(settings))
    )
    faults: dict[str, Callable[[], None]] = {
        "kill-worker": kill_9(settings, "worker-0"),
        "kill-connect": kill_9(settings, connect.NAME),
        "restart-kafka": lambda: restart_kafka(settings),
    }
    results = {}
    for label in args.faults.split(","):
        runs = []
        for _ in range(args.repeat):
            runs.append(run(stack, label, faults[label], args.rate, args.seconds))
            print(f"{label}: {runs[-1]}", flush=True)
            time.sleep(10)  # let the restarted component settle before the next fault
        firsts = [r["first_delivery_after_fault_s"] for r in runs]
        results[label] = {
            "first_delivery_after_fault_s": {
                "median": round(statistics.median(firsts), 1),
                "max": round(max(firsts), 1),
            },
            "longest_stall_s_max": max(r["longest_stall_s"] for r in runs),
            "exactly_once_in_order": all(r["exactly_once_in_order"] for r in runs),
            "runs": len(runs),
        }
    print(json.dumps({"rate": args.rate, "seconds": args.seconds, "faults": results}))


if __name__ == "__main__":
    main()
