"""`govsync subscription`: 申请—审核—授权. A department requests a wired subscription; the
data authority named in the topology reviews the requests and approves or rejects them,
and suspends, resumes, revokes or renews what it approved. Expiry needs no command: the
approval's last day passes, and the ACLs close the topic (govsync acl).

Each command acts as the principal given by ``--as`` (default: the caller's,
GOVSYNC_KAFKA_PRINCIPAL), logged in to Kafka with that principal's password and signing
with that principal's key: Kafka refuses a department's write to the decisions topic, and
every reader ignores a decision the authority's key did not sign.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import BaseModel
from rich.table import Table

from govsync.cli.output import EXIT_REFUSED, JsonFlag, console, err, errors, print_json
from streams.config.settings import Settings

if TYPE_CHECKING:
    from streams.contract.approvals import Action

app = typer.Typer(no_args_is_help=True, help="Request, review and decide subscriptions.")

As = Annotated[
    str | None,
    typer.Option(
        "--as", help="Act as this principal (default: GOVSYNC_KAFKA_PRINCIPAL, else admin)."
    ),
]
Reason = Annotated[str | None, typer.Option("--reason", help="Why (kept on the audit trail).")]
Until = Annotated[
    datetime | None, typer.Option("--until", formats=["%Y-%m-%d"], help="Last day (CST).")
]


@contextmanager
def acting(principal: str | None) -> Iterator[Settings]:
    """Settings whose every Kafka client logs in as ``principal``."""
    if principal is not None:
        os.environ["GOVSYNC_KAFKA_PRINCIPAL"] = principal
    settings = Settings.from_env()
    with errors():
        yield settings


def _refused(reason: str) -> typer.Exit:
    err.print(f"[red]refused:[/red] {reason}", highlight=False)
    return typer.Exit(EXIT_REFUSED)


class SubscriptionState(BaseModel):
    """One wired subscription: the state in force, the decision behind it, what waits."""

    subscription: str
    department: str
    state: str
    active: bool
    expires: date | None
    decided_by: str | None
    last_action: str | None
    reason: str | None
    decided_at: datetime | None
    waiting_request: str | None


@app.command("request")
def subscription_request(
    subscription: Annotated[str, typer.Argument(help="<department>.<entity>, as wired.")],
    purpose: Annotated[str, typer.Option("--purpose", help="What the data is for.")],
    legal_basis: Annotated[str, typer.Option("--legal-basis", help="The law that allows it.")],
    until: Annotated[
        datetime, typer.Option("--until", formats=["%Y-%m-%d"], help="Last day asked (CST).")
    ],
    fields: Annotated[
        str | None, typer.Option("--fields", help="Comma-separated (default: as wired).")
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", "-f", help="The wiring to check against (default: GOVSYNC_TOPOLOGY)."
        ),
    ] = None,
    principal: As = None,
    as_json: JsonFlag = False,
) -> None:
    """Ask the data authority for a wired subscription (as the department it is for)."""
    from streams.contract.approvals import Request, request_problems
    from streams.kafka import lifecycle
    from streams.model.topology import load_topology

    with acting(principal) as settings:
        # The wiring as the shared topology.yaml declares it: a department reads none of
        # govsync's own topics; the authority checks the request against the applied one.
        topology = load_topology(file or settings.topology)
        department = subscription.partition(".")[0]
        if settings.kafka_principal != department:
            raise _refused(
                f"{subscription} is requested by {department}, not by {settings.kafka_principal}"
            )
        wired = next((s for s in topology.subscriptions if s.id == subscription), None)
        request = Request(
            id=str(uuid.uuid4()),
            subscription=subscription,
            department=department,
            entity=wired.entity if wired else subscription.partition(".")[2],
            fields=fields.split(",") if fields else list(wired.fields if wired else []),
            purpose=purpose,
            legal_basis=legal_basis,
            expires=until.date(),
            requested_at=datetime.now(UTC),
        )
        problems = request_problems(request, topology)
        if problems:
            raise _refused("; ".join(problems))
        lifecycle.publish(settings, request, department)
    if as_json:
        print_json(request.model_dump(mode="json"))
        return
    console.print(f"requested {subscription} until {request.expires} (request {request.id})")


@app.command("review")
def subscription_review(principal: As = None, as_json: JsonFlag = False) -> None:
    """The requests waiting for the data authority's decision."""
    from streams.contract.approvals import pending
    from streams.kafka import applied, lifecycle

    with acting(principal) as settings:
        current = applied.in_force(settings)
        waiting = [
            request
            for request in lifecycle.requests(settings).values()
            if pending(request, current.decisions.get(request.subscription)) is not None
        ]
    if as_json:
        print_json([r.model_dump(mode="json") for r in waiting])
        return
    table = Table(title=f"subscription requests waiting: {len(waiting)}")
    for column in ("requested (UTC)", "subscription", "fields", "purpose", "legal basis", "until"):
        table.add_column(column)
    for r in waiting:
        table.add_row(
            f"{r.requested_at:%Y-%m-%d %H:%M}",
            r.subscription,
            ", ".join(r.fields),
            r.purpose,
            r.legal_basis,
            str(r.expires),
        )
    console.print(table)


@app.command("list")
def subscription_list(principal: As = None, as_json: JsonFlag = False) -> None:
    """Every wired subscription: its state in force and the decision behind it."""
    from streams.contract.approvals import pending
    from streams.kafka import applied, lifecycle

    with acting(principal) as settings:
        current = applied.in_force(settings)
        requests = lifecycle.requests(settings)
    now = datetime.now(UTC)
    rows = []
    for sub in current.topology.subscriptions:
        decision = current.decisions.get(sub.id)
        waiting = pending(requests.get(sub.id), decision)
        rows.append(
            SubscriptionState(
                subscription=sub.id,
                department=sub.department,
                state=sub.approval.state,
                active=sub.is_active(now),
                expires=decision.expires if decision else None,
                decided_by=decision.principal if decision else None,
                last_action=decision.action if decision else None,
                reason=decision.reason if decision else None,
                decided_at=decision.decided_at if decision else None,
                waiting_request=waiting.id if waiting else None,
            )
        )
    if as_json:
        print_json([r.model_dump(mode="json") for r in rows])
        return
    table = Table(title="subscriptions in force")
    for column in ("subscription", "state", "active", "expires", "last decision", "waiting"):
        table.add_column(column)
    for r in rows:
        last = f"{r.last_action} by {r.decided_by}" if r.last_action else "none"
        table.add_row(
            r.subscription,
            r.state,
            "yes" if r.active else "no",
            str(r.expires or ""),
            last + (f": {r.reason}" if r.reason else ""),
            "request" if r.waiting_request else "",
        )
    console.print(table)


def _decide(
    action: Action,
    subscription: str,
    principal: str | None,
    reason: str | None,
    until: datetime | None,
    as_json: bool,
) -> None:
    from streams.contract.approvals import Refused, decide
    from streams.kafka import applied, lifecycle
    from streams.model.topology import load_topology

    with acting(principal) as settings:
        # Refused before reading anything: only the authority may read the requests.
        authority = load_topology(settings.topology).authority
        if settings.kafka_principal != authority:
            raise _refused(
                f"only the data authority {authority} decides, not {settings.kafka_principal}"
            )
        current = applied.in_force(settings)
        wired = current.applied.topology() if current.applied else current.topology
        try:
            decision = decide(
                action,
                wired,
                subscription,
                current.decisions.get(subscription),
                lifecycle.requests(settings).get(subscription),
                principal=settings.kafka_principal,
                now=datetime.now(UTC),
                reason=reason,
                until=until.date() if until else None,
            )
        except Refused as exc:
            raise _refused(str(exc)) from None
        lifecycle.publish(settings, decision, settings.kafka_principal)
    if as_json:
        print_json(decision.model_dump(mode="json"))
        return
    console.print(
        f"{subscription}: {decision.state} ({action} by {decision.principal}"
        + (f": {reason}" if reason else "")
        + f"; expires {decision.expires})"
    )


@app.command("approve")
def subscription_approve(
    subscription: str, principal: As = None, reason: Reason = None, as_json: JsonFlag = False
) -> None:
    """Approve the waiting request (as the data authority)."""
    from streams.contract.approvals import Action

    _decide(Action.APPROVE, subscription, principal, reason, None, as_json)


@app.command("reject")
def subscription_reject(
    subscription: str, principal: As = None, reason: Reason = None, as_json: JsonFlag = False
) -> None:
    """Reject the waiting request, with a reason (as the data authority)."""
    from streams.contract.approvals import Action

    _decide(Action.REJECT, subscription, principal, reason, None, as_json)


@app.command("suspend")
def subscription_suspend(
    subscription: str, principal: As = None, reason: Reason = None, as_json: JsonFlag = False
) -> None:
    """Stop deliveries for now, with a reason; the department loses read access."""
    from streams.contract.approvals import Action

    _decide(Action.SUSPEND, subscription, principal, reason, None, as_json)


@app.command("resume")
def subscription_resume(
    subscription: str, principal: As = None, reason: Reason = None, as_json: JsonFlag = False
) -> None:
    """Deliver again after a suspension."""
    from streams.contract.approvals import Action

    _decide(Action.RESUME, subscription, principal, reason, None, as_json)


@app.command("revoke")
def subscription_revoke(
    subscription: str, principal: As = None, reason: Reason = None, as_json: JsonFlag = False
) -> None:
    """End the approval, with a reason; a new request is needed to receive again."""
    from streams.contract.approvals import Action

    _decide(Action.REVOKE, subscription, principal, reason, None, as_json)


@app.command("renew")
def subscription_renew(
    subscription: str,
    until: Until = None,
    principal: As = None,
    reason: Reason = None,
    as_json: JsonFlag = False,
) -> None:
    """Extend the approval to a new last day."""
    from streams.contract.approvals import Action

    _decide(Action.RENEW, subscription, principal, reason, until, as_json)
