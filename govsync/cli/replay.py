"""`govsync replay`: fill a subscription with a snapshot, or re-deliver a time range of it."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from govsync.cli.output import EXIT_FAILED, EXIT_INVALID, JsonFlag, console, err, errors, print_json
from govsync.cli.topology import in_force
from streams.config.settings import Settings

app = typer.Typer(
    no_args_is_help=True, help="Backfill a new or reset subscription without disturbing others."
)


@app.command("snapshot")
def replay_snapshot(
    subscription: Annotated[
        str, typer.Option(help="The subscription to fill, e.g. tax.enterprise.")
    ],
    as_json: JsonFlag = False,
) -> None:
    """Deliver the current state of every entity to one subscription, then live changes.

    The request goes through the route stage in order with the changes, so the snapshot
    is the state at one point of each partition and every later change follows it once."""
    from rich.progress import Progress

    from govsync.ops import replay
    from streams.kafka import credentials

    settings = Settings.from_env()
    with errors():
        topology = in_force(settings)
        pending = replay.request_snapshot(
            settings, topology, subscription, os.environ.get("USER") or credentials.ADMIN
        )
        with Progress(console=err, transient=True) as bar:
            task = bar.add_task(
                f"snapshot {pending.request.replay_id} → {subscription}", total=None
            )
            done = replay.wait_done(
                settings,
                pending,
                progress=lambda n, total: bar.update(task, completed=n, total=total),
            )
    if as_json:
        print_json(done.model_dump())
        return
    console.print(
        f"snapshot {done.replay_id}: {done.records} records delivered to {done.subscription} "
        f"from all {done.partitions} partitions in {done.seconds:.1f}s; live changes follow "
        f"(records carry the header replay={done.replay_id})"
    )


def _epoch_ms(text: str) -> int:
    """ISO 8601; without a zone, China Standard Time (as approvals' dates are read)."""
    from datetime import datetime

    from streams.model.topology import CST

    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not an ISO 8601 time, e.g. 2026-11-23T09:30"
        ) from None
    return int((moment if moment.tzinfo else moment.replace(tzinfo=CST)).timestamp() * 1000)


@app.command("range")
def replay_range(
    subscription: Annotated[
        str | None, typer.Option(help="The subscription to re-deliver to.")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--from", help="Start (ISO 8601; CST if no zone).")
    ] = None,
    until: Annotated[str | None, typer.Option("--to", help="End (default: now).")] = None,
    rate: Annotated[float | None, typer.Option(help="At most this many records a second.")] = None,
    dry_run: Annotated[bool, typer.Option(help="Count what would be re-sent; send nothing.")] = (
        False
    ),
    resume: Annotated[
        str | None, typer.Option(help="Continue an interrupted replay by its id.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Re-deliver one subscription's records of a time range (marked replay=<id>).

    Records are re-sent as delivered (same event_ids: subscribers skip what they already
    applied), and only those written under the subscription's current fields and masks.
    Interrupted (Ctrl-C), it saves where it stopped; --resume <id> goes on from there."""
    import signal
    import threading

    from rich.progress import BarColumn, Progress, TextColumn

    from govsync.ops import replay
    from streams.kafka import credentials

    settings = Settings.from_env()
    with errors():
        if resume is not None:
            state = replay.load(settings, resume)
        elif subscription is None or since is None:
            err.print("[red]error:[/red] give --subscription and --from, or --resume <id>")
            raise typer.Exit(EXIT_INVALID)
        else:
            state = replay.plan_range(
                settings,
                in_force(settings),
                subscription,
                _epoch_ms(since),
                _epoch_ms(until) if until else None,
                os.environ.get("USER") or credentials.ADMIN,
            )
            if not dry_run:
                replay.announce(settings, state.request, [0])  # onto the audit trail
        total = sum(state.end[p] - state.next[p] for p in state.end)
        # Ctrl-C ends the replay at the next record, after saving where it stopped.
        interrupted = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: interrupted.set())
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[counts]}"),
            console=err,
            transient=True,
        ) as bar:
            task = bar.add_task(
                f"replay {state.request.replay_id} → {state.request.subscription}",
                total=total or None,
                counts="",
            )
            state = replay.run_range(
                settings,
                state,
                rate=rate,
                dry_run=dry_run,
                progress=lambda s: bar.update(
                    task,
                    completed=total - sum(s.end[p] - s.next[p] for p in s.end),
                    counts=f"{s.replayed} re-sent, {s.skipped_earlier_approval} skipped",
                ),
                stop=interrupted.is_set,
            )
    report = {**state.model_dump(exclude={"end", "next"}), "dry_run": dry_run}
    if as_json:
        print_json(report)
    else:
        verb = "would re-send" if dry_run else "re-sent"
        console.print(
            f"replay {state.request.replay_id} to {state.request.subscription}: "
            f"{state.in_range} records in range, {verb} "
            f"{state.in_range - state.skipped_earlier_approval if dry_run else state.replayed}, "
            f"skipped {state.skipped_earlier_approval} delivered under an earlier approval"
            + ("" if state.done else f"; interrupted: --resume {state.request.replay_id}")
        )
    if not state.done:
        raise typer.Exit(EXIT_FAILED)
