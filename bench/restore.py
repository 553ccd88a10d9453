"""How long the route's dedup state takes to come back, in memory and on disk.

Generates N dedup markers (event_id -> first-seen ms, as the route writes them) straight
into a scratch changelog topic of P partitions on the running stack, then, side by side:

- memory: what a worker without a state directory does at every start, reading the whole
  changelog into the in-memory table;
- disk, first start: the same read into one RocksDB per partition (streams/engine/durable);
- disk, restart: reopening those databases and reading only the tail since their
  checkpoint, after K more markers were written (what a restarted worker does);
- the raw read: the same records consumed without storing them, the floor.

RSS is the process's peak after each phase (ru_maxrss grows only). Nothing of govsync's
own topics is touched; the scratch topic is deleted at the end.

Usage: .venv/bin/python bench/restore.py [--ids 1000000] [--partitions 6] [--tail 10000]
Prints a table and one JSON line for bench/baselines/restore.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

from confluent_kafka.admin import NewTopic
from generate import Record, produce

from streams.config.settings import Settings
from streams.engine.restoring import Restore
from streams.kafka import admin, topic_reader
from streams.stages.dedup import DedupStore, encode_seen

WINDOW = timedelta(days=7)


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def markers(partitions: int, count: int, start: int) -> Iterator[Record]:
    now = encode_seen(int(time.time() * 1000))
    for n in range(start, start + count):
        yield n % partitions, str(uuid.UUID(int=n)).encode(), now


def timed(step: Callable[[], int]) -> tuple[float, int]:
    began = time.monotonic()
    count = step()
    return time.monotonic() - began, count


def restored(restore: Restore) -> int:
    """Run a restore to its end, as the engine does between polls; the records read."""
    try:
        read = 0
        while restore.waiting():
            read += restore.step()
        return read
    finally:
        restore.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--tail", type=int, default=10_000)
    args = parser.parse_args()

    settings = Settings.from_env()
    bootstrap = settings.bootstrap
    client = admin.admin_client(bootstrap)
    topic = f"govsync.bench.restore-{uuid.uuid4().hex[:8]}"
    client.create_topics([NewTopic(topic, args.partitions, 1)])[topic].result()
    numbers = list(range(args.partitions))
    workdir = Path(tempfile.mkdtemp(prefix="govsync-restore-"))
    results: dict[str, dict[str, float]] = {}
    try:
        began = time.monotonic()
        produce(bootstrap, topic, markers(args.partitions, args.ids, 0))
        generated_s = time.monotonic() - began

        def raw() -> int:
            starts = dict.fromkeys(numbers)
            tail = topic_reader.ChangelogTail(bootstrap, topic, starts)
            try:
                read = 0
                while tail.remaining:
                    read += sum(len(b) for b in tail.read().values())
                return read
            finally:
                tail.close()

        seconds, count = timed(raw)
        results["raw read"] = {"seconds": seconds, "records": count, "rss_mib": rss_mib()}

        # Disk first: the peak RSS only grows, so the memory phase comes last.
        first = DedupStore(WINDOW, workdir)
        seconds, count = timed(
            lambda: restored(first.restoring(bootstrap, topic, numbers, "bench"))
        )
        results["disk, first start"] = {"seconds": seconds, "records": count, "rss_mib": rss_mib()}
        first.state.drop(numbers)

        produce(bootstrap, topic, markers(args.partitions, args.tail, args.ids))
        again = DedupStore(WINDOW, workdir)
        seconds, count = timed(
            lambda: restored(again.restoring(bootstrap, topic, numbers, "bench"))
        )
        results["disk, restart"] = {"seconds": seconds, "records": count, "rss_mib": rss_mib()}
        held = again.state.size()
        again.state.drop(numbers)

        memory = DedupStore(WINDOW)
        seconds, count = timed(lambda: restored(memory.restoring(bootstrap, topic, numbers)))
        results["memory, every start"] = {
            "seconds": seconds,
            "records": count,
            "rss_mib": rss_mib(),
        }
    finally:
        client.delete_topics([topic])
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"{args.ids} markers over {args.partitions} partitions, generated in {generated_s:.1f}s")
    print(f"{'phase':<22} {'seconds':>8} {'records':>10} {'peak RSS MiB':>13}")
    for phase, row in results.items():
        print(f"{phase:<22} {row['seconds']:>8.2f} {row['records']:>10} {row['rss_mib']:>13.0f}")
    print(
        json.dumps(
            {
                "ids": args.ids,
                "partitions": args.partitions,
                "tail": args.tail,
                "held_on_disk_estimate": held,
                "phases": {
                    k: {"seconds": round(v["seconds"], 2), "records": v["records"]}
                    | {"peak_rss_mib": round(v["rss_mib"])}
                    for k, v in results.items()
                },
            }
        )
    )


if __name__ == "__main__":
    main()
