"""`govsync demo`: the company-deregistration scenario end to end (`make demo`)."""

from __future__ import annotations

import typer

from govsync.cli.output import EXIT_FAILED, console, errors
from streams.config.settings import Settings

# Added without a name: `demo` is a top-level command of `govsync`.
app = typer.Typer()


@app.command()
def demo() -> None:
    """Start everything and deregister a company end to end; leaves the stack running."""
    from govsync import demo as scenario

    with errors():
        ok = scenario.run(Settings.from_env(), console)
    if not ok:
        raise typer.Exit(EXIT_FAILED)
