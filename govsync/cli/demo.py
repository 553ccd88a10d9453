"""`govsync demo [scenario]`: one of the sources' scenarios end to end (`make demo` runs
the company deregistration)."""

from __future__ import annotations

import typer

from govsync.cli.output import EXIT_FAILED, EXIT_INVALID, console, err, errors
from streams.config.settings import Settings

# Added without a name: `demo` is a top-level command of `govsync`.
app = typer.Typer()


@app.command()
def demo(
    scenario: str = typer.Argument(
        "deregistration",
        help="deregistration (企业注销), registration (企业开办), newborn (出生一件事),"
        " house-transfer (二手房转移登记)",
    ),
) -> None:
    """Start everything and run a scenario end to end; leaves the stack running."""
    from govsync import demo as scenarios

    run = scenarios.SCENARIOS.get(scenario)
    if run is None:
        err.print(f"[red]no scenario {scenario!r}[/red]; known: {', '.join(scenarios.SCENARIOS)}")
        raise typer.Exit(EXIT_INVALID)
    with errors():
        ok = run(Settings.from_env(), console)
    if not ok:
        raise typer.Exit(EXIT_FAILED)
