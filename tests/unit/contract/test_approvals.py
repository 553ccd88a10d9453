"""申请—审核—授权 as rules: who may decide what, from which state, and what is in force."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from streams.contract import signatures
from streams.contract.approvals import (
    Action,
    Decision,
    Refused,
    Request,
    decide,
    decision_problem,
    differing,
    effective,
    pending,
)
from tests.unit.examples import TAX, TOPOLOGY

AUTHORITY = "data_resource_bureau"
NOW = datetime(2026, 12, 1, 9, tzinfo=UTC)


def request(**changes: object) -> Request:
    asked = {
        "id": str(uuid.uuid4()),
        "subscription": TAX.id,
        "department": "tax",
        "entity": "enterprise",
        "fields": list(TAX.fields),
        "purpose": "停止向已注销企业推送纳税提醒",
        "legal_basis": "《税收征收管理法》第十六条",
        "expires": date(2027, 12, 31),
        "requested_at": NOW - timedelta(hours=1),
    }
    return Request.model_validate(asked | changes)


def decided(action: Action, current: Decision | None = None, **kwargs: object) -> Decision:
    return decide(
        action,
        TOPOLOGY,
        TAX.id,
        current,
        kwargs.pop("asked", None),  # type: ignore[arg-type]
        principal=kwargs.pop("principal", AUTHORITY),  # type: ignore[arg-type]
        now=NOW,
        **kwargs,  # type: ignore[arg-type]
    )


def approved() -> Decision:
    return decided(Action.APPROVE, asked=request())


def test_the_authority_approves_a_waiting_request_as_asked() -> None:
    asked = request()
    decision = decided(Action.APPROVE, asked=asked)
    assert decision.state == "approved" and decision.request == asked.id
    assert decision.principal == AUTHORITY and decision.by == "数据资源局"
    assert decision.at == date(2026, 12, 1) and decision.expires == asked.expires
    assert decision.fields == asked.fields


def test_a_department_cannot_approve_even_its_own_request() -> None:
    with pytest.raises(Refused, match="only the data authority"):
        decided(Action.APPROVE, asked=request(), principal="tax")


def test_the_authority_cannot_decide_on_its_own_departments_subscription() -> None:
    own = TAX.model_copy(update={"department": AUTHORITY, "id": f"{AUTHORITY}.enterprise"})
    topology = TOPOLOGY.model_copy(update={"subscriptions": [*TOPOLOGY.subscriptions, own]})
    with pytest.raises(Refused, match="its own department"):
        decide(
            Action.APPROVE,
            topology,
            own.id,
            None,
            request(subscription=own.id, department=AUTHORITY),
            principal=AUTHORITY,
            now=NOW,
        )


def test_approve_and_reject_need_a_request_nobody_answered() -> None:
    asked = request()
    first = decided(Action.APPROVE, asked=asked)
    assert pending(asked, first) is None
    with pytest.raises(Refused, match="no request waiting"):
        decided(Action.APPROVE, first, asked=asked)
    with pytest.raises(Refused, match="no request waiting"):
        decided(Action.REJECT, None, reason="不必要")


def test_a_request_for_other_fields_than_wired_is_not_approved() -> None:
    with pytest.raises(Refused, match="request those fields"):
        decided(Action.APPROVE, asked=request(fields=["uscc", "name"]))


def test_rejecting_a_new_request_rejects_it_with_its_reason() -> None:
    decision = decided(Action.REJECT, asked=request(), reason="用途不明确")
    assert decision.state == "rejected" and decision.reason == "用途不明确"


def test_rejecting_a_change_leaves_the_standing_approval_as_it_was() -> None:
    standing = approved()
    later = request(requested_at=NOW + timedelta(minutes=5), expires=date(2030, 1, 1))
    decision = decide(
        Action.REJECT,
        TOPOLOGY,
        TAX.id,
        standing,
        later,
        principal=AUTHORITY,
        now=NOW + timedelta(minutes=10),
        reason="期限过长",
    )
    assert decision.state == "approved" and decision.expires == standing.expires
    assert decision.request == later.id and decision.action == Action.REJECT


@pytest.mark.parametrize("action", [Action.REJECT, Action.SUSPEND, Action.REVOKE])
def test_refusing_actions_need_a_reason(action: Action) -> None:
    with pytest.raises(Refused, match="needs a reason"):
        decided(action, approved(), asked=request(), reason=" ")


def test_suspend_resume_revoke_follow_the_states() -> None:
    suspended = decided(Action.SUSPEND, approved(), reason="数据泄露调查")
    assert suspended.state == "suspended" and suspended.reason == "数据泄露调查"
    with pytest.raises(Refused, match="is suspended: it cannot be suspended"):
        decided(Action.SUSPEND, suspended, reason="again")
    resumed = decided(Action.RESUME, suspended)
    assert resumed.state == "approved"
    revoked = decided(Action.REVOKE, resumed, reason="职能调整")
    assert revoked.state == "revoked"
    with pytest.raises(Refused, match="is revoked: it cannot be resumed"):
        decided(Action.RESUME, revoked)
    with pytest.raises(Refused, match="is requested: it cannot be suspended"):
        decided(Action.SUSPEND, None, reason="nothing to suspend")


def test_renewing_moves_the_expiry_later_only() -> None:
    standing = approved()
    renewed = decided(Action.RENEW, standing, until=date(2029, 12, 31))
    assert renewed.expires == date(2029, 12, 31) and renewed.state == "approved"
    with pytest.raises(Refused, match="new expiry after"):
        decided(Action.RENEW, standing, until=standing.expires)


def test_without_a_decision_nothing_is_active_whatever_the_file_says() -> None:
    assert TAX.approval.state == "approved"
    in_force = effective(TOPOLOGY, {})
    assert all(s.approval.state == "requested" for s in in_force.subscriptions)
    assert not any(s.is_active(NOW) for s in in_force.subscriptions)


def test_a_decision_puts_its_approval_in_force() -> None:
    in_force = effective(TOPOLOGY, {TAX.id: approved()}).subscription(TAX.id)
    assert in_force.is_active(NOW) and in_force.approval.by == "数据资源局"
    suspended = decided(Action.SUSPEND, approved(), reason="调查")
    assert not effective(TOPOLOGY, {TAX.id: suspended}).subscription(TAX.id).is_active(NOW)


def test_wiring_wider_than_the_approval_is_not_in_force() -> None:
    narrower = approved().model_copy(update={"fields": TAX.fields[:-1]})
    assert not effective(TOPOLOGY, {TAX.id: narrower}).subscription(TAX.id).is_active(NOW)


def test_apply_records_the_files_blocks_and_only_those_that_differ() -> None:
    assert TAX.id in differing(TOPOLOGY, {})
    recorded = decided(Action.APPLY)
    assert recorded.state == TAX.approval.state and recorded.fields == TAX.fields
    assert TAX.id not in differing(TOPOLOGY, {TAX.id: recorded})


def test_a_decision_by_anyone_but_the_authority_does_not_count() -> None:
    forged = approved().model_copy(update={"principal": "tax"})
    assert (
        decision_problem(forged, TOPOLOGY) == "tax is not the data authority (data_resource_bureau)"
    )
    assert decision_problem(approved(), TOPOLOGY) is None


def test_only_the_private_keys_holder_signs_what_its_public_key_proves(tmp_path: Path) -> None:
    secrets, keys = tmp_path / "secrets", tmp_path / "keys"
    authority = signatures.signing_key(secrets, keys, AUTHORITY)
    tax = signatures.signing_key(secrets, keys, "tax")
    value = approved().model_dump_json().encode()
    public = signatures.public_key(keys, AUTHORITY)
    assert signatures.unproven(public, value, signatures.sign_as(authority, value)) is None
    assert signatures.unproven(public, value, signatures.sign_as(tax, value)) is not None
    assert signatures.unproven(public, value + b" ", signatures.sign_as(authority, value))
    assert signatures.unproven(public, value, None) == "unsigned"
    assert signatures.unproven(signatures.public_key(keys, "nobody"), value, b"00")
