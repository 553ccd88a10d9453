"""`govsync lag`: consumer lag and the SLA light per department, once or refreshed (--watch)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from govsync.cli.output import JsonFlag, console, errors, print_json
from govsync.cli.topology import in_force
from streams.config.settings import Settings

if TYPE_CHECKING:
    from govsync.ops.lag import LagReport

# Added without a name: `lag` is a top-level command of `govsync`.
app = typer.Typer()


def _lag_tables(report: LagReport) -> list[Table]:
    """The summary by department and the detail by group and partition, built anew for each
    refresh of --watch."""
    colours = {"green": "green", "yellow": "yellow", "red": "red"}

    def light(status: str) -> str:
        return f"[{colours[status]}]● {status}[/{colours[status]}]"

    def age(seconds: float | None) -> str:
        return "" if seconds is None else f"{seconds:.1f}s"

    summary = Table(title=f"lag by department ({report.at:%H:%M:%S} UTC)")
    for column in ("department", "status", "lag (records)", "oldest waiting", "groups"):
        summary.add_column(column)
    for d in report.departments:
        summary.add_row(
            f"{d.name} ({d.department})",
            light(d.status),
            str(d.lag),
            age(d.lag_seconds),
            str(d.groups),
        )
    detail = Table(title="per subscription, group and partition")
    for column in ("subscription", "group", "state", "partition", "committed", "end", "lag", "age"):
        detail.add_column(column)
    for g in [*report.subscriptions, *report.pipeline]:
        detail.add_row(
            g.name,
            g.group or "—",
            f"{light(g.status)} {g.state}",
            "all",
            "",
            "",
            str(g.lag),
            age(g.lag_seconds),
        )
        for r in g.partitions:
            if r.lag or r.state != "committed":
                detail.add_row(
                    "",
                    "",
                    r.state,
                    str(r.partition),
                    "—" if r.committed is None else str(r.committed),
                    str(r.end),
                    str(r.lag),
                    age(r.lag_seconds),
                )
    return [summary, detail]


@app.command("lag")
def lag(
    as_json: JsonFlag = False,
    watch: Annotated[
        float | None, typer.Option(help="Refresh every this many seconds until Ctrl-C.")
    ] = None,
) -> None:
    """Consumer lag per subscription and partition, with SLA status per department."""
    import time

    from rich.console import Group
    from rich.live import Live

    from govsync.ops import lag as consumer_lag
    from streams.kafka import admin

    settings = Settings.from_env()
    with errors():
        topology = in_force(settings)
        client = admin.admin_client(settings.bootstrap)
        report = consumer_lag.report(client, settings.bootstrap, topology)
        if as_json:
            print_json(report.model_dump(mode="json"))
            return
        if watch is None:
            for table in _lag_tables(report):
                console.print(table)
            return
        with Live(Group(*_lag_tables(report)), console=console, auto_refresh=False) as live:
            try:
                while True:
                    time.sleep(watch)
                    report = consumer_lag.report(client, settings.bootstrap, topology)
                    live.update(Group(*_lag_tables(report)), refresh=True)
            except KeyboardInterrupt:
                pass
