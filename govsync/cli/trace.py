"""`govsync trace`: one change's path through the pipeline, or an entity's changes."""

from __future__ import annotations

from typing import Annotated

import typer

from govsync.cli.output import (
    EXIT_FAILED,
    JsonFlag,
    console,
    err,
    errors,
    index_behind,
    print_json,
)
from govsync.cli.topology import in_force_meanwhile
from streams.config.settings import Settings
from streams.contract.topics import TRACE_TOPIC

# Added without a name: `trace` is a top-level command of `govsync`.
app = typer.Typer()


@app.command("trace")
def trace(
    query: Annotated[str, typer.Argument(help="An event_id, or an entity key (USCC, ID).")],
    as_json: JsonFlag = False,
) -> None:
    """Where a change went, hop by hop, with latency; an entity key lists its changes.

    Commit, capture, normalize, each department's delivery and its receipt; an entity key
    gives every change of that entity, newest first."""
    import time

    from govsync.index import queries
    from streams.trail import lineage

    settings = Settings.from_env()
    with errors(), in_force_meanwhile(settings) as in_force_now:
        with queries.current(settings) as (conn, missing):
            hops = queries.hops(conn, query)
        topology = in_force_now.result()
        found = lineage.traces(hops, query, topology, int(time.time() * 1000))
    index_behind(missing)
    if as_json:
        print_json([t.model_dump() for t in found])
    else:
        names = {d: dept.name for d, dept in topology.departments.items()}
        for found_trace in found:
            console.print(lineage.table(found_trace, names))
    if not found:
        err.print(f"no change with event_id or entity key {query!r} on {TRACE_TOPIC}")
        raise typer.Exit(EXIT_FAILED)
