"""The backbone under a steady load: ``rate`` changes a second by SQL for ``seconds``.

Every tenth of a second one UPDATE commits ``rate / 10`` enterprises' changes (cycling
through the table by id), so the load is paced, not a burst. Afterwards, from the record
timestamps and the ``source_ts`` header (the source commit): commit -> delivery on every
delivery topic the changes reach, and commit -> receipt; p50, p99 and max of each. Also
the pipeline's lag when the load stops (whether it kept up) and the worker's resident
memory (its process and its stages') every 30 s (whether state stays bounded). Records
are read back once every topic has been quiet for a while, so late ones count too
(``drained_after_s``: how long after the load the last one came).
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from govsync.ops import lag
from govsync.stack import background
from streams.config.settings import Settings
from streams.contract.topics import RECEIPTS_TOPIC
from streams.kafka import admin, topic_reader
from streams.model.topology import Topology

TICK_S = 0.1
LAG_EVERY_S = 30.0
QUIET_S = 10.0


@dataclass
class Latencies:
    samples_ms: list[int] = field(default_factory=list)

    def summary(self) -> dict[str, float | int]:
        ordered = sorted(self.samples_ms)
        if not ordered:
            return {"records": 0}

        def at(q: float) -> int:
            return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

        return {
            "records": len(ordered),
            "p50_ms": at(0.50),
            "p99_ms": at(0.99),
            "max_ms": ordered[-1],
            "mean_ms": round(statistics.fmean(ordered), 1),
        }


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants (a worker instance's stages run in
    child processes of their own)."""
    total = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                total += rss_kib(int(child))
    except FileNotFoundError:
        pass
    return total


def pace(settings: Settings, rate: int, seconds: float) -> int:
    """Commit ``rate`` changes a second for ``seconds``; the number committed."""
    per_tick = max(1, round(rate * TICK_S))
    committed = 0
    with psycopg.connect(settings.pg_conninfo("market_regulation"), autocommit=True) as db:
        low, high = db.execute("SELECT min(id), max(id) FROM enterprise").fetchone()
        if low is None:
            raise SystemExit("no enterprises in market_regulation: run `make demo` first")
        cursor = low - 1
        began = time.monotonic()
        ticks = round(seconds / TICK_S)
        for n in range(ticks):
            upper = cursor + per_tick
            changed = db.execute(
                "UPDATE enterprise SET reg_capital = reg_capital + 1, updated_at = now()"
                " WHERE id > %s AND id <= %s",
                (cursor, upper),
            ).rowcount
            committed += changed
            cursor = upper if upper < high else low - 1
            time.sleep(max(0.0, began + (n + 1) * TICK_S - time.monotonic()))
    return committed


def until_quiet(settings: Settings, topics: list[str], quiet_s: float = QUIET_S) -> float:
    """Wait until no topic has grown for ``quiet_s``; the seconds until it last grew."""
    began = time.monotonic()
    ends = topic_reader.end_offsets(settings.bootstrap, topics)
    grew = time.monotonic()
    while time.monotonic() - grew < quiet_s:
        time.sleep(1)
        now = topic_reader.end_offsets(settings.bootstrap, topics)
        if now != ends:
            ends, grew = now, time.monotonic()
    return grew - began


def latencies(settings: Settings, start: topic_reader.Offsets) -> dict[str, Latencies]:
    """Per topic: record timestamp - source commit, for every record since ``start``."""
    found = {t: Latencies() for t, _ in start}
    for message in topic_reader.messages(settings.bootstrap, start, timeout=600):
        source_ts = dict(message.headers() or []).get("source_ts")
        if source_ts:
            found[message.topic()].samples_ms.append(
                message.timestamp()[1] - int(source_ts.decode())
            )
    return found


def pipeline_lag(settings: Settings, topology: Topology) -> dict[str, int]:
    """Records each worker stage has still to read."""
    report = lag.report(admin.admin_client(settings.bootstrap), settings.bootstrap, topology)
    return {g.name: g.lag for g in report.pipeline}


def run(
    settings: Settings, topology: Topology, hops: list[str], rate: int, seconds: float
) -> dict[str, Any]:
    """The sustained run's report (the JSON line's content)."""
    topics = [*hops, RECEIPTS_TOPIC]
    start = topic_reader.end_offsets(settings.bootstrap, topics)
    worker = background.worker_instances(settings).get(0)
    pid = worker.pid if worker is not None and worker.pid else 0
    rss, lags = [rss_kib(pid)], []
    stop = threading.Event()

    def watch() -> None:
        """Every LAG_EVERY_S: the worker's memory and the pipeline's lag."""
        while not stop.wait(LAG_EVERY_S):
            rss.append(rss_kib(pid))
            lags.append(sum(pipeline_lag(settings, topology).values()))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        committed = pace(settings, rate, seconds)
    finally:
        stop.set()
        watcher.join(30)
    rss.append(rss_kib(pid))
    at_end = pipeline_lag(settings, topology)
    drained_s = until_quiet(settings, topics)  # every change's records, the late ones too
    measured = latencies(settings, start)
    return {
        "rate": rate,
        "seconds": seconds,
        "committed": committed,
        "pipeline_lag": {"every_s": LAG_EVERY_S, "total": lags, "at_end": at_end},
        "drained_after_s": round(drained_s, 1),
        "worker_rss_kib": {"start": rss[0], "end": rss[-1], "max": max(rss), "every": rss},
        "commit_to": {topic: measured[topic].summary() for topic in topics},
    }
