"""How long the operator's index-backed questions take as commands, end to end: process
start, imports, the topology in force, the index's freshness check and the lookup.

Why: the lookups themselves cost milliseconds however long the history (bench/index.py);
what an operator waits for is the whole command. Each command runs ``--runs`` times,
interleaved with two floors measured in the same run, so the ratios hold on a loaded
machine: ``python -c pass`` (the interpreter) and ``import govsync.cli`` (the CLI's own
imports: typer, rich, pydantic and the models every command loads).
With ``--compare DIR`` (another checkout, e.g. ``git worktree add /tmp/old <rev>``) every
command also runs from that code, interleaved, for a side-by-side before/after.

The questions ask about a delivered change the index holds (its event_id and entity key,
picked from the index), as `govsync trace`, `govsync audit who-received` and `govsync
receipts overdue` do against the running stack.

The same questions asked of the running query API (`/v1/audit/...`, as the data
authority) are timed beside them: each over a new connection, as a one-off client (curl)
would ask, and over one kept-alive connection; who-received also with ``?fresh=true``.

Usage: .venv/bin/python bench/cli.py [--runs 20] [--compare DIR]
Prints a table (stderr) and one JSON line (stdout) for bench/baselines/cli.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import httpx
from rich.console import Console
from rich.table import Table

from govsync.index import store
from streams.config.settings import Settings
from streams.kafka import credentials

AUTHORITY = "data_resource_bureau"

CLI = "from govsync.cli import app; app()"


def sample_change(settings: Settings) -> tuple[str, str]:
    """(event_id, entity key) of a delivered change in the index."""
    with store.reading(settings) as conn:
        row = conn.execute(
            "SELECT event_id, entity_key FROM hop WHERE stage = 'delivered' LIMIT 1"
        ).fetchone()
    if row is None:
        raise SystemExit("the index holds no delivery: run `make demo` first")
    return row[0], row[1]


def timed(argv: list[str], pythonpath: str | None) -> float:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    # ``python -c`` puts the working directory first on sys.path, before PYTHONPATH: run
    # in the checkout whose code is meant.
    cwd = pythonpath or os.getcwd()
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[3:])} failed ({done.returncode}): {done.stderr}")
    return elapsed


def asked(get: Callable[[str], httpx.Response], url: str) -> float:
    """Seconds for one question to the API."""
    started = time.perf_counter()
    response = get(url)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise SystemExit(f"GET {url}: {response.status_code} {response.text}")
    return elapsed


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    return {
        "n": len(ms),
        "p50": round(statistics.median(ms), 1),
        "p99": round(ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))], 1),
        "max": round(ms[-1], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--compare", help="another checkout to run the same commands from")
    args = parser.parse_args()

    settings = Settings.from_env()
    event_id, key = sample_change(settings)
    python = sys.executable
    commands = {
        "floor: python -c pass": [python, "-c", "pass"],
        "floor: import govsync.cli": [python, "-c", "import govsync.cli"],
        "trace <event_id>": [python, "-c", CLI, "trace", event_id, "--json"],
        "trace <key>": [python, "-c", CLI, "trace", key, "--json"],
        "audit who-received <key>": [python, "-c", CLI, "audit", "who-received", key, "--json"],
        "receipts overdue": [python, "-c", CLI, "receipts", "overdue", "--json"],
    }
    base = f"http://{settings.host}:{settings.api_port}/v1/audit"
    questions = {
        "api: trace <event_id>": f"{base}/trace/{event_id}",
        "api: trace <key>": f"{base}/trace/{key}",
        "api: who-received <key>": f"{base}/who-received/{key}",
        # waiting until the index reflects what the trail held when asked: each question
        # adds a record to the trail, so this measures the indexer's latency too
        "api: who-received <key>?fresh": f"{base}/who-received/{key}?fresh=true",
    }
    auth = (AUTHORITY, credentials.password(settings, AUTHORITY))
    kept = httpx.Client(auth=auth, timeout=30)
    clients = {
        "new connection": lambda url: httpx.get(url, auth=auth, timeout=30),
        "kept alive": kept.get,
    }
    api: dict[str, list[float]] = {f"{name} ({how})": [] for name in questions for how in clients}
    codes = {"now": None, **({"compared": os.path.abspath(args.compare)} if args.compare else {})}
    runs: dict[str, dict[str, list[float]]] = {code: {c: [] for c in commands} for code in codes}
    for _ in range(args.runs):
        for name, argv in commands.items():
            for code, pythonpath in codes.items():
                if code == "compared" and name.startswith("floor: python"):
                    continue
                runs[code][name].append(timed(argv, pythonpath))
        for name, url in questions.items():
            for how, get in clients.items():
                api[f"{name} ({how})"].append(asked(get, url))
    runs["now"].update(api)

    result = {
        "runs": args.runs,
        "event_id": event_id,
        "entity_key": key,
        **{code: {n: percentiles(s) for n, s in runs[code].items() if s} for code in codes},
    }
    table = Table(title=f"commands end to end, {args.runs} runs each, ms")
    table.add_column("command")
    for code in codes:
        table.add_column(f"{code} p50 / p99")
    for name in [*commands, *api]:
        table.add_row(
            name,
            *(
                f"{r['p50']} / {r['p99']}" if (r := result[code].get(name)) else "-"
                for code in codes
            ),
        )
    Console(stderr=True).print(table)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
