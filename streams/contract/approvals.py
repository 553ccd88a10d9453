"""申请—审核—授权: a department's subscription request, and the data authority's decision.

topology.yaml wires a subscription (its fields, masks, SLA); it does not make it active.
A department asks for it (``Request`` on ``govsync.requests``, signed with its own key);
the authority the topology names (数据资源局) decides (``Decision`` on
``govsync.approvals``, signed with the authority's key). ``effective`` lays each
subscription's latest verified decision over the file's approval block: a subscription no
decision covers is ``requested``, so inactive, whatever the file says. An approval covers
the fields it names: wiring that delivers a field it does not name is inactive too, until
approved again. (A request asks for the wired fields exactly: each subscription's delivery
schema is registered by the apply that wires it.)

Both topics are compacted by subscription id: what is in force is the latest of each, read
whole in one pass (one record per subscription, not history). The history of every
request and decision is on the audit trail, written by the ledger from these topics with
the verified signer as its actor.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel

from streams.model.topology import CST, Approval, Subscription, Topology

State = Literal["requested", "approved", "rejected", "suspended", "revoked"]


class Action(StrEnum):
    APPLY = "apply"  # the file's approval block, applied as the authority (topology apply)
    APPROVE = "approve"
    REJECT = "reject"
    SUSPEND = "suspend"
    RESUME = "resume"
    REVOKE = "revoke"
    RENEW = "renew"


class Request(BaseModel, frozen=True):
    """A department asks for a wired subscription: these fields, for this purpose, on this
    legal basis, until ``expires``."""

    id: str
    subscription: str
    department: str
    entity: str
    fields: list[str]
    purpose: str
    legal_basis: str
    expires: date
    requested_at: datetime


class Decision(BaseModel, frozen=True):
    """The authority's word on one subscription; the latest one is in force."""

    subscription: str
    action: Action
    state: State
    principal: str  # the authority's principal, whose key signed this
    by: str  # its name, as approval.by
    at: date | None
    purpose: str
    legal_basis: str
    expires: date
    fields: list[str] | None = None  # None: as wired
    reason: str | None = None
    request: str | None = None  # the request it answers
    decided_at: datetime

    def approval(self) -> Approval:
        return Approval(
            state=self.state,
            by=self.by,
            at=self.at,
            purpose=self.purpose,
            legal_basis=self.legal_basis,
            expires=self.expires,
        )


class Refused(ValueError):
    """The action cannot be taken now; the message says why."""


# action -> (states it may be taken from, the state it leaves); None: any state.
_MOVES: dict[Action, tuple[frozenset[str] | None, str | None]] = {
    Action.SUSPEND: (frozenset({"approved"}), "suspended"),
    Action.RESUME: (frozenset({"suspended"}), "approved"),
    Action.REVOKE: (frozenset({"approved", "suspended"}), "revoked"),
    Action.RENEW: (frozenset({"approved", "suspended"}), None),
}
NEEDS_REASON = {Action.REJECT, Action.SUSPEND, Action.REVOKE}


def state_of(decision: Decision | None) -> str:
    return decision.state if decision is not None else "requested"


def pending(request: Request | None, decision: Decision | None) -> Request | None:
    """``request`` if no decision has answered it yet."""
    if request is None:
        return None
    if decision is not None and (
        decision.request == request.id or decision.decided_at >= request.requested_at
    ):
        return None
    return request


def request_problems(request: Request, topology: Topology) -> list[str]:
    """What makes ``request`` one the authority could not approve (empty: none)."""
    try:
        wired = topology.subscription(request.subscription)
    except KeyError:
        return [f"no subscription {request.subscription} is wired in the topology"]
    problems = []
    if wired.department != request.department:
        problems.append(
            f"{request.subscription} is {wired.department}'s, not {request.department}'s"
        )
    if sorted(request.fields) != sorted(wired.fields):
        problems.append(
            f"{request.subscription} is wired to deliver {', '.join(wired.fields)}: request "
            "those fields (to receive others, change its wiring in topology.yaml first)"
        )
    if request.expires < request.requested_at.astimezone(CST).date():
        problems.append(f"the period ends ({request.expires}) before it starts")
    return problems


def decide(
    action: Action,
    topology: Topology,
    subscription: str,
    current: Decision | None,
    request: Request | None,
    *,
    principal: str,
    now: datetime,
    reason: str | None = None,
    until: date | None = None,
) -> Decision:
    """The decision ``principal`` takes; ``Refused`` when it may not be taken: the caller
    is not the authority, approves its own department's request, there is no pending
    request to answer, or the subscription's state does not allow the action."""
    if topology.authority is None:
        raise Refused("the topology names no data authority (authority:)")
    if principal != topology.authority:
        raise Refused(f"only the data authority {topology.authority} decides, not {principal}")
    try:
        wired = topology.subscription(subscription)
    except KeyError:
        raise Refused(f"no subscription {subscription} is wired in the topology") from None
    if wired.department == principal and action is not Action.APPLY:
        raise Refused(f"{principal} cannot decide on its own department's subscription")
    if action in NEEDS_REASON and not (reason and reason.strip()):
        raise Refused(f"{action} needs a reason")
    name = topology.departments[principal].name
    today = now.astimezone(CST).date()
    base = current.model_dump() if current is not None else {}
    made = {"subscription": subscription, "action": action, "principal": principal, "by": name}
    made |= {"reason": reason, "decided_at": now, "request": None}
    if action is Action.APPLY:
        file = wired.approval
        return Decision(
            **made,
            state=file.state,
            at=file.at,
            purpose=file.purpose,
            legal_basis=file.legal_basis,
            expires=file.expires,
            fields=wired.fields,
        )
    if action in (Action.APPROVE, Action.REJECT):
        asked = pending(request, current)
        if asked is None:
            raise Refused(f"{subscription} has no request waiting for a decision")
        if action is Action.REJECT and state_of(current) in ("approved", "suspended"):
            # A request to change a standing approval: the approval stands as it was.
            return Decision(**(base | made | {"request": asked.id}))
        problems = request_problems(asked, topology) if action is Action.APPROVE else []
        if problems:
            raise Refused(f"the request cannot be approved: {'; '.join(problems)}")
        return Decision(
            **(made | {"request": asked.id}),
            state="approved" if action is Action.APPROVE else "rejected",
            at=today,
            purpose=asked.purpose,
            legal_basis=asked.legal_basis,
            expires=asked.expires,
            fields=asked.fields,
        )
    allowed, after = _MOVES[action]
    state = state_of(current)
    if current is None or (allowed is not None and state not in allowed):
        raise Refused(f"{subscription} is {state}: it cannot be {_past(action)}")
    if action is Action.RENEW:
        if until is None or until <= current.expires:
            raise Refused(f"renewing needs a new expiry after {current.expires}")
        return Decision(**(base | made | {"expires": until}))
    return Decision(**(base | made | {"state": after}))


def _past(action: Action) -> str:
    return {Action.RESUME: "resumed", Action.RENEW: "renewed"}.get(action, f"{action}ed")


def effective(topology: Topology, decisions: Mapping[str, Decision]) -> Topology:
    """``topology`` as in force: every subscription's approval is its latest decision's;
    without one, or when the wiring delivers a field the approval does not name, it is
    ``requested``."""
    subscriptions: list[Subscription] = []
    for wired in topology.subscriptions:
        decision = decisions.get(wired.id)
        if decision is None or not set(wired.fields) <= set(decision.fields or wired.fields):
            approval = wired.approval.model_copy(update={"state": "requested", "by": None})
        else:
            approval = decision.approval()
        subscriptions.append(wired.model_copy(update={"approval": approval}))
    return topology.model_copy(update={"subscriptions": subscriptions})


def decision_problem(decision: Decision, topology: Topology) -> str | None:
    """Why a correctly signed decision still does not count, or None."""
    if decision.principal != topology.authority:
        return f"{decision.principal} is not the data authority ({topology.authority})"
    try:
        wired = topology.subscription(decision.subscription)
    except KeyError:
        return None  # not wired (any more): it changes nothing, but it stands
    if wired.department == decision.principal and decision.action is not Action.APPLY:
        return f"{decision.principal} decided on its own department's subscription"
    return None


def differing(topology: Topology, decisions: Mapping[str, Decision]) -> list[str]:
    """Subscriptions whose approval block says other than the decision in force (a block
    that only requests, where nothing was decided, says nothing new)."""
    found = []
    for wired in topology.subscriptions:
        decision = decisions.get(wired.id)
        if decision is None:
            if wired.approval.state != "requested":
                found.append(wired.id)
            continue
        said = wired.approval.model_dump(exclude={"by"})
        if said != decision.approval().model_dump(exclude={"by"}) or sorted(
            decision.fields or []
        ) != sorted(wired.fields):
            found.append(wired.id)
    return found
