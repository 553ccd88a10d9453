"""`govsync`: operate the embedded stack, the topology, the worker and the demo.

Exit codes: 0 success, 1 the operation failed, 2 invalid input (e.g. topology),
3 a required component is not running or unreachable, 4 refused: the caller may not do
this (not the data authority, a state that does not allow it, Kafka's ACLs).
"""

from __future__ import annotations

import typer

from govsync.cli import (
    audit,
    connector,
    demo,
    dlq,
    index,
    lag,
    objection,
    processes,
    quality,
    receipts,
    replay,
    secrets,
    stack,
    standby,
    subscription,
    topology,
    trace,
)

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)

# Added without a name, a module's commands become top-level commands of `govsync`; with a
# name, a group. `govsync --help` lists them in the order added, as before the split.
app.add_typer(stack.app)
app.add_typer(processes.app)
app.add_typer(quality.app)
app.add_typer(trace.app)
app.add_typer(lag.app)
app.add_typer(demo.app)
app.add_typer(topology.app, name="topology")
app.add_typer(connector.app, name="connector")
app.add_typer(dlq.app, name="dlq")
app.add_typer(audit.app, name="audit")
app.add_typer(replay.app, name="replay")
app.add_typer(receipts.app, name="receipts")
app.add_typer(index.app, name="index")
app.add_typer(subscription.app, name="subscription")
app.add_typer(objection.app, name="objection")
app.add_typer(secrets.app, name="secrets")
app.add_typer(standby.app, name="standby")
