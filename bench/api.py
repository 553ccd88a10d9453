"""The query API (``govsync api``) under load, driven by wrk (Debian's ``wrk``, installed by
``make install-system``), against the running stack.

Why: the sources ask 1,000 look-ups a second answered within 200 ms for 100,000 users;
issue 15 sets 5,000/s at p99 within 50 ms with 1 M entities, 1,000/s at p99 within 20 ms
while 1,000 changes/s flow, and 10,000 keep-alive connections held without errors.

Seeding: ``--entities`` states (one in ten a person, the rest companies, valid keys) are
generated straight into ``master.enterprise`` and ``master.person``, Avro framed with the
schema ids the route registered and with the route's headers; the indexer materializes
them into ``entity_state`` as it does every state. A rerun finds them there and skips this.

Then three runs of wrk, each request a random seeded key looked up by a random department
subscribed to its entity (so through login, subscription, projection, masks and the audit
record Kafka must confirm before the answer):

- ``floor``: the same server and connections answering ``/healthz`` (no login, no store, no
  audit): what the HTTP stack alone does on this machine, so ``peak / floor`` compares
  across machines where absolute rates do not;
- ``peak``: ``--connections`` (64) connections as fast as they are answered;
- ``with_changes``: 1,000 look-ups a second (each of 50 connections waits 50 ms after an
  answer) while 1,000 changes a second commit by SQL (bench/sustained.py's pace);
- ``held``: 10,000 keep-alive connections, each asking every 10 s (1,000/s in all).

Each run reports requests/s, latency percentiles, wrk's error counts (connect, read, write,
timeout, non-2xx status) and how many query records reached ``govsync.queries`` (at least
one per answer). Also the pipeline's lag after each run: the ledger chains each query into
the audit trail after it was answered.

Usage: .venv/bin/python bench/api.py [--entities 1000000] [--seconds 30]
Prints a table (stderr) and one JSON line (stdout) for bench/baselines/api.json.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import random
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from fastavro import parse_schema, schemaless_writer
from generate import produce, resident_id, uscc
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from sustained import pace, pipeline_lag

from govsync.index import store
from streams.config.settings import Settings
from streams.contract import headers
from streams.contract.schemas import entity_state_schema
from streams.contract.topics import QUERIES_TOPIC, master_topic
from streams.kafka import applied, credentials, serde, topic_reader
from streams.model.topology import Topology

PERSON_EVERY = 10  # entity k is a person when k % 10 == 9
BASE = 50_000_000  # k of the first seeded entity: far from the keys the demo and tests use
SAMPLE = 100_000  # keys wrk picks from
PARTITIONS = 6
PACED_RATE = 1000  # look-ups a second in the with_changes and held runs
PACED_CONNECTIONS = 50
RUNS = ("floor", "peak", "with_changes", "held")
TARGETS = {
    "peak": {"rate": 5000, "p99_ms": 50},
    "with_changes": {"rate": 1000, "p99_ms": 20},
    "held": {"connections": 10_000, "errors": 0},
}
NAMES = ("王", "李", "张", "刘", "陈", "杨", "赵", "黄")
STATUSES = {"enterprise": "active", "person": "registered"}

err = Console(stderr=True)


# --- seeding ----------------------------------------------------------------------------


def seeded(k: int) -> tuple[str, str]:
    """Entity and key of the ``k``-th seeded entity."""
    n = BASE + k
    if k % PERSON_EVERY == PERSON_EVERY - 1:
        return "person", resident_id(n)
    return "enterprise", uscc(n)


def state_of(entity: str, key: str, k: int) -> dict[str, Any]:
    surname = NAMES[k % len(NAMES)]
    if entity == "person":
        return {
            "resident_id": key,
            "name": f"{surname}{k % 997}",
            "birth_date": f"{key[6:10]}-{key[10:12]}-{key[12:14]}",
            "status": "registered",
            "death_date": None,
            "address": f"街道{k % 311}号",
        }
    return {
        "uscc": key,
        "name": f"{surname}氏第{k}号有限公司",
        "status": "active",
        "legal_rep_name": f"{surname}{k % 997}",
        "legal_rep_id": resident_id(BASE + k + 1),
        "legal_rep_phone": f"139{k % 100_000_000:08d}",
        "registered_capital": f"{1_000_000 + k % 9_000_000}.00",
        "address": f"人民路{k % 997}号",
        "established_on": "2020-01-01",
        "contact_phone": f"010{k % 100_000_000:08d}",
        "enterprise_type": "limited_company",
        "industry": "CFIK"[k % 4],
    }


def master_records(
    topology: Topology, entity: str, schema_id: int, n: int, now_ms: int
) -> Iterator[tuple[int, bytes, bytes, list[tuple[str, bytes]]]]:
    parsed = parse_schema(entity_state_schema(topology, entity))
    prefix = serde.frame(schema_id, b"")
    for k in range(n):
        kind, key = seeded(k)
        if kind != entity:
            continue
        body = io.BytesIO()
        body.write(prefix)
        schemaless_writer(body, parsed, state_of(entity, key, k))
        change = {
            "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"govsync-bench-api/{key}")),
            "source": "bench",
            "source_ts_ms": now_ms - (n - k),
        }
        yield k % PARTITIONS, key.encode(), body.getvalue(), headers.for_change(change, "master")


def stored(settings: Settings, keys: list[str]) -> int:
    with psycopg.connect(store.conninfo(settings, store.READER)) as conn:
        row = conn.execute(
            "SELECT count(*) FROM entity_state WHERE entity_key = ANY(%s)", (keys,)
        ).fetchone()
    return int(row[0]) if row else 0


def seed(settings: Settings, topology: Topology, n: int) -> dict[str, Any]:
    """The ``n`` entities in master and materialized (skipped when already there)."""
    probe = [seeded(k)[1] for k in range(max(0, n - 1000), n)]
    if stored(settings, probe) == len(probe):
        return {"entities": n, "seeded": "already"}
    client = serde.registry_client(settings)
    now_ms = int(time.time() * 1000)
    began = time.monotonic()
    produced = 0
    for entity in ("enterprise", "person"):
        topic = master_topic(entity)
        schema_id = serde.registered_id(client, topic, entity_state_schema(topology, entity))
        if schema_id is None:
            raise SystemExit(f"no schema registered for {topic}: run `govsync topology apply`")
        with err.status(f"producing {entity} states to {topic}"):
            produced += produce(
                settings.bootstrap, topic, master_records(topology, entity, schema_id, n, now_ms)
            )
    produced_s = time.monotonic() - began
    with Progress(console=err) as bar:
        task = bar.add_task("indexer materializing", total=len(probe))
        while (found := stored(settings, probe)) < len(probe):
            bar.update(task, completed=found)
            time.sleep(2)
    return {
        "entities": n,
        "seeded": "now",
        "produced": produced,
        "produced_s": round(produced_s, 1),
        "materialized_s": round(time.monotonic() - began, 1),
    }


# --- load -------------------------------------------------------------------------------

LUA = """
local requests = {{}}
for line in io.lines("{requests}") do
  local path, auth = line:match("^(%S+)\t(.*)$")
  requests[#requests + 1] = {{path, auth}}
end
local delay_ms = {delay_ms}

function init(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1000000) + #tostring({{}}))
end

function request()
  local r = requests[math.random(#requests)]
  return wrk.format("GET", r[1], {{Authorization = r[2]}})
end

if delay_ms > 0 then
  function delay()
    return math.random(0, 2 * delay_ms)  -- spread, so connections do not ask in step
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, '
    .. '"status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, '
    .. '"p999_us": %d, "max_us": %d}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end
"""


def logins(settings: Settings, topology: Topology) -> dict[str, list[str]]:
    """Entity -> Authorization headers of the departments actively subscribed to it."""
    now = datetime.now(UTC)
    found: dict[str, list[str]] = {}
    for subscription in topology.subscriptions:
        if subscription.is_active(now):
            password = credentials.password(settings, subscription.department)
            token = base64.b64encode(f"{subscription.department}:{password}".encode()).decode()
            found.setdefault(subscription.entity, []).append(f"Basic {token}")
    return found


def script(
    directory: Path,
    settings: Settings,
    topology: Topology,
    n: int,
    delay_ms: int,
    floor: bool = False,
) -> Path:
    """wrk's Lua: random seeded keys, each asked by a random subscribed department (or
    ``/healthz`` for the floor); after each answer a connection waits ``delay_ms``."""
    rng = random.Random(15)
    allowed = logins(settings, topology)
    lines = []
    for k in rng.sample(range(n), min(SAMPLE, n)):
        entity, key = seeded(k)
        if floor:
            lines.append("/healthz\t")
        elif entity in allowed:
            lines.append(f"/v1/{entity}/{key}\t{rng.choice(allowed[entity])}")
    name = f"lookups-{delay_ms}{'-floor' if floor else ''}"
    requests = directory / f"{name}.tsv"
    requests.write_text("\n".join(lines) + "\n")
    path = directory / f"{name}.lua"
    path.write_text(LUA.format(requests=requests, delay_ms=delay_ms))
    return path


def wrk(url: str, lua: Path, connections: int, seconds: int, timeout_s: int = 2) -> dict[str, Any]:
    threads = min(2, connections)
    done = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            f"--timeout={timeout_s}s",
            "-s",
            str(lua),
            url,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith('{"requests"')]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout}")
    raw = json.loads(lines[-1])
    seconds_run = raw["duration_us"] / 1e6
    errors = {k: raw[k] for k in ("connect", "read", "write", "timeout", "status")}
    return {
        "connections": connections,
        "seconds": round(seconds_run, 1),
        "requests": raw["requests"],
        "rate": round(raw["requests"] / seconds_run),
        "p50_ms": round(raw["p50_us"] / 1000, 1),
        "p90_ms": round(raw["p90_us"] / 1000, 1),
        "p99_ms": round(raw["p99_us"] / 1000, 1),
        "p999_ms": round(raw["p999_us"] / 1000, 1),
        "max_ms": round(raw["max_us"] / 1000, 1),
        "errors": errors,
    }


def recorded(settings: Settings) -> int:
    return sum(topic_reader.end_offsets(settings.bootstrap, [QUERIES_TOPIC]).values())


def run(
    settings: Settings,
    topology: Topology,
    name: str,
    lua: Path,
    connections: int,
    seconds: int,
    timeout_s: int = 2,
    changes_per_s: int = 0,
) -> dict[str, Any]:
    url = f"http://{settings.host}:{settings.api_port}"
    before = recorded(settings)
    committed: list[int] = []
    pacer = threading.Thread(
        target=lambda: committed.append(pace(settings, changes_per_s, seconds)), daemon=True
    )
    if changes_per_s:
        pacer.start()
    with err.status(f"{name}: wrk, {connections} connections, {seconds} s"):
        result = wrk(url, lua, connections, seconds, timeout_s)
    if changes_per_s:
        pacer.join()
        result["changes"] = {"rate": changes_per_s, "committed": committed[0]}
    result["query_records"] = recorded(settings) - before
    result["pipeline_lag_after"] = pipeline_lag(settings, topology)
    return result


def met(results: dict[str, Any]) -> dict[str, bool]:
    """Each target against the runs made (a run not made is not judged)."""

    def clean(r: dict[str, Any]) -> bool:
        return not any(r["errors"].values())

    def fast_enough(r: dict[str, Any], target: dict[str, int], slack: float = 1.0) -> bool:
        return r["rate"] >= slack * target["rate"] and r["p99_ms"] <= target["p99_ms"]

    verdicts = {}
    if "peak" in results:
        verdicts["peak"] = fast_enough(results["peak"], TARGETS["peak"]) and clean(results["peak"])
    if "with_changes" in results:
        mixed = results["with_changes"]
        verdicts["with_changes"] = fast_enough(mixed, TARGETS["with_changes"], 0.95) and clean(
            mixed
        )
    if "held" in results:
        held = results["held"]
        verdicts["held"] = held["connections"] >= TARGETS["held"]["connections"] and clean(held)
    asked = [r for name, r in results.items() if name != "floor"]
    verdicts["every_answer_recorded"] = all(r["query_records"] >= r["requests"] for r in asked)
    return verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entities", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--connections", type=int, default=64, help="for the peak run")
    parser.add_argument("--held", type=int, default=10_000, help="connections held")
    parser.add_argument("--runs", default=",".join(RUNS), help=f"which runs, of {','.join(RUNS)}")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: run `make install-system`")
    settings = Settings.from_env()
    topology = applied.in_force(settings).topology
    seeding = seed(settings, topology, args.entities)
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        floor = script(directory, settings, topology, args.entities, 0, floor=True)
        fast = script(directory, settings, topology, args.entities, 0)
        paced = script(
            directory, settings, topology, args.entities, PACED_CONNECTIONS * 1000 // PACED_RATE
        )
        held_every = script(
            directory, settings, topology, args.entities, args.held * 1000 // PACED_RATE
        )
        seconds = args.seconds
        plans = {
            "floor": lambda: run(settings, topology, "floor", floor, args.connections, seconds),
            "peak": lambda: run(settings, topology, "peak", fast, args.connections, seconds),
            "with_changes": lambda: run(
                settings,
                topology,
                "with_changes",
                paced,
                PACED_CONNECTIONS,
                seconds,
                changes_per_s=1000,
            ),
            "held": lambda: run(
                settings, topology, "held", held_every, args.held, seconds, timeout_s=10
            ),
        }
        results = {name: plans[name]() for name in args.runs.split(",")}
    table = Table(title=f"query API, {args.entities:,} entities ({os.cpu_count()} cores)")
    for column in ("run", "conns", "req/s", "p50 ms", "p99 ms", "max ms", "errors", "recorded"):
        table.add_column(column, justify="right")
    for name, r in results.items():
        table.add_row(
            name,
            f"{r['connections']:,}",
            f"{r['rate']:,}",
            str(r["p50_ms"]),
            str(r["p99_ms"]),
            str(r["max_ms"]),
            str(sum(r["errors"].values())),
            f"{r['query_records']:,} of {r['requests']:,}",
        )
    err.print(table)
    report = {
        "bench": "api",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "seeding": seeding,
        **results,
        **(
            {"peak_over_floor": round(results["peak"]["rate"] / results["floor"]["rate"], 2)}
            if {"peak", "floor"} <= set(results)
            else {}
        ),
        "targets": TARGETS,
        "met": met(results),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
