"""What every command shares with the operator: the consoles, the --json flag, the exit codes,
known failures as one line, and the log format of the long-running commands."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

# Rich wraps at 80 columns when not on a terminal; CI logs and pipes deserve wider tables.
console = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]

EXIT_FAILED, EXIT_INVALID, EXIT_UNAVAILABLE, EXIT_REFUSED = 1, 2, 3, 4


@contextmanager
def errors() -> Iterator[None]:
    """Known failures become one clear line and a meaningful exit code, not a traceback."""
    try:
        yield
    except Exception as exc:
        known = _known(exc)
        if known is None:
            raise
        code, line = known
        err.print(line, highlight=False)
        raise typer.Exit(code) from None


def _known(exc: Exception) -> tuple[int, str] | None:
    """The exit code and line for a known failure. The classes are imported only once one
    happened: some modules (the schema registry's client) take a quarter of a second to
    load, which a command that succeeds should not pay."""
    from connectors.sources.debezium import ConnectError
    from govsync.errors import OperationFailed
    from govsync.index.store import IndexUnavailable
    from streams.contract.approvals import Refused
    from streams.kafka.admin import AdminError, BrokerUnreachable
    from streams.kafka.applied import NotApplied
    from streams.kafka.lifecycle import NotPermitted
    from streams.kafka.serde import RegistryUnreachable, SchemaRejected
    from streams.kafka.topic_reader import StalledRead
    from streams.model.topology import TopologyError

    if isinstance(exc, Refused | NotPermitted):
        return EXIT_REFUSED, f"[red]refused:[/red] {exc}"
    if isinstance(exc, TopologyError):
        return EXIT_INVALID, f"[red]topology is invalid[/red]\n{exc}"
    unavailable = BrokerUnreachable | ConnectError | RegistryUnreachable | IndexUnavailable
    if isinstance(exc, unavailable | StalledRead):
        return EXIT_UNAVAILABLE, f"[red]error:[/red] {exc}"
    if isinstance(exc, OperationFailed | NotApplied | AdminError | SchemaRejected):
        return EXIT_FAILED, f"[red]error:[/red] {exc}"
    return None


def index_behind(missing: int) -> None:
    """Say so when an answer from the index may lack the newest records."""
    if missing:
        err.print(
            f"[yellow]the index is {missing} records behind the topics: the newest "
            "records may be missing (`govsync index status`)[/yellow]"
        )


@contextmanager
def progress(description: str, *, quiet: bool = False) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr for long work; yields ``update(done, total)``. ``quiet``
    (e.g. with --json): no bar."""
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=quiet,
    ) as bar:
        task = bar.add_task(description, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def print_json(value: object) -> None:
    """Plain JSON on stdout, no Rich markup or wrapping, so scripts can parse it."""
    sys.stdout.write(json.dumps(value, ensure_ascii=False, indent=2, default=str) + "\n")
