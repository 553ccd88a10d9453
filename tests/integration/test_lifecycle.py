"""申请—审核—授权 on the real stack: a department requests a newly wired subscription, only
the data authority's signed decision makes it active, and every step is on the audit trail
under the principal that proved it.

The wiring (medical insurance receiving enterprises) is applied by the operator, not as the
authority: its approval block says "approved", and nothing is delivered. A department
cannot approve it (the CLI refuses; Kafka refuses its write to the decisions topic), and a
decision that admin, a super user, writes in the authority's name without its key is
ignored and refused onto the trail. The authority approves; deliveries start and the
department may read. Suspend closes the topic to a consumer that was reading, resume
opens it, revoke ends it, reject answers a new request with its reason.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from streams.contract import signatures
from streams.contract.approvals import Action, Decision
from streams.contract.topics import APPROVALS_TOPIC, AUDIT_TOPIC
from streams.kafka import clients, lifecycle
from streams.kafka.lifecycle import NotPermitted
from streams.kafka.topic_reader import Record
from tests.integration.companies import govsync, insert, new_company
from tests.integration.conftest import Stack
from tests.integration.test_access import DENIED, first_read_error
from tests.integration.topologies import edited, with_subscription

pytestmark = pytest.mark.stack

DEPARTMENT, AUTHORITY = "medical_insurance", "data_resource_bureau"
SUBSCRIPTION = f"{DEPARTMENT}.enterprise"
TOPIC = f"deliver.{SUBSCRIPTION}"
REFUSED = 4  # the CLI's exit code for an act the caller may not take
SETTLE_S = 30.0  # decisions reach the worker in about a second, the ACLs within 5 s


@pytest.fixture()
def wired(stack: Stack, tmp_path: Path) -> Iterator[Path]:
    """The subscription wired by the operator (not as the authority); afterwards the real
    topology again, as the authority, so every approval is as the file says."""
    path = edited(tmp_path, with_subscription(DEPARTMENT, "enterprise", "企业参保核验"))
    result = govsync("topology", "apply", "--file", str(path), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert SUBSCRIPTION in json.loads(result.stdout)["undecided"]
    if state()["state"] in ("approved", "suspended"):  # left by an earlier run on this stack
        assert decide("revoke", "--reason", "测试前复位").returncode == 0
    try:
        yield path
    finally:
        assert govsync("topology", "apply", "--as-authority").returncode == 0


def state(subscription: str = SUBSCRIPTION) -> dict[str, Any]:
    listed = govsync("subscription", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    return next(s for s in json.loads(listed.stdout) if s["subscription"] == subscription)


def until(check: Callable[[], bool], what: str, timeout: float = SETTLE_S) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what} did not happen within {timeout}s")
        time.sleep(0.5)
    return time.monotonic() - started


def request(path: Path) -> dict[str, Any]:
    asked = govsync(
        "subscription",
        "request",
        SUBSCRIPTION,
        "--as",
        DEPARTMENT,
        "--file",
        str(path),
        "--purpose",
        "企业参保核验",
        "--legal-basis",
        "《社会保险法》第五十七条",
        "--until",
        "2027-12-31",
        "--json",
    )
    assert asked.returncode == 0, asked.stdout + asked.stderr
    return json.loads(asked.stdout)


def decide(action: str, *extra: str, principal: str = AUTHORITY) -> Any:
    return govsync("subscription", action, SUBSCRIPTION, "--as", principal, "--json", *extra)


def delivered(stack: Stack) -> bool:
    """Whether a company registered now reaches the subscription's topic."""
    company = new_company()
    start = stack.offsets(TOPIC)
    insert(stack, company)
    try:
        stack.read_until(start, lambda rs: any(r.key == company.credit_code for r in rs), 15)
    except AssertionError:
        return False
    return True


def trail(stack: Stack, start: dict, done: Callable[[list[Record]], bool]) -> list[Record]:
    return stack.read_until(start, done, timeout=120)


def of_kind(records: list[Record], kind: str) -> list[dict[str, Any]]:
    """The trail's records of ``kind`` about the subscription (a refused one names it only
    as the key of the record it refused)."""
    return [
        r.value
        for r in records
        if r.value
        and r.value["kind"] == kind
        and SUBSCRIPTION in (r.value.get("subscription"), r.value["detail"].get("record_key"))
    ]


def test_only_the_authoritys_decision_makes_a_request_active(stack: Stack, wired: Path) -> None:
    audit_from = stack.offsets(AUDIT_TOPIC)
    assert not state()["active"], state()
    assert not delivered(stack), "delivered before any decision"

    asked = request(wired)
    review = govsync("subscription", "review", "--as", AUTHORITY, "--json")
    assert review.returncode == 0, review.stderr
    assert asked["id"] in [r["id"] for r in json.loads(review.stdout)]

    # The department cannot approve its own request: the CLI refuses, and so does Kafka.
    own = decide("approve", principal=DEPARTMENT)
    assert own.returncode == REFUSED and "only the data authority" in own.stderr, own.stderr
    made = Decision(
        subscription=SUBSCRIPTION,
        action=Action.APPROVE,
        state="approved",
        principal=AUTHORITY,
        by="数据资源局",
        at=date.today(),
        purpose="企业参保核验",
        legal_basis="《社会保险法》第五十七条",
        expires=date(2027, 12, 31),
        fields=["uscc", "name", "status"],
        request=asked["id"],
        decided_at=datetime.now(UTC),
    )
    with pytest.raises(NotPermitted):
        lifecycle.publish(stack.settings, made, DEPARTMENT)
    # admin may write anywhere, but cannot sign as the authority: the decision is ignored.
    forge(stack, made)
    time.sleep(3)
    assert not state()["active"], "a decision the authority did not sign took effect"

    approved = decide("approve")
    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert json.loads(approved.stdout)["request"] == asked["id"]
    assert state()["active"] and state()["decided_by"] == AUTHORITY
    took = until(lambda: delivered(stack), "a delivery after the approval")
    until(lambda: first_read_error(stack, DEPARTMENT, TOPIC, f"{DEPARTMENT}-probe") == "ok", "read")
    print(f"approved: delivering {took:.1f}s after the decision")

    records = trail(
        stack,
        audit_from,
        lambda rs: bool(of_kind(rs, "subscription_decision") and of_kind(rs, "signature_refused")),
    )
    (requested,) = of_kind(records, "subscription_request")
    assert requested["actor"] == DEPARTMENT and requested["detail"]["request"] == asked["id"]
    (decision,) = of_kind(records, "subscription_decision")
    assert decision["actor"] == AUTHORITY and decision["detail"]["action"] == "approve"
    assert decision["approval"]["state"] == "approved"
    (refused,) = of_kind(records, "signature_refused")
    assert refused["actor"] == "unverified" and refused["detail"]["claimed_signer"] == "admin"


def forge(stack: Stack, decision: Decision) -> None:
    """What a super user could do: write a decision in the authority's name, signed with
    the only key it has (its own)."""
    value = decision.model_dump_json().encode()
    signature = signatures.sign_as(lifecycle.signing_key(stack.settings, "admin"), value)
    producer = Producer(clients.config(stack.settings.bootstrap, "admin"))
    producer.produce(
        APPROVALS_TOPIC,
        value,
        SUBSCRIPTION.encode(),
        headers=[(signatures.SIGNATURE_HEADER, signature), (lifecycle.SIGNER_HEADER, b"admin")],
    )
    assert producer.flush(20) == 0


def test_suspend_resume_revoke_and_reject_follow_the_authority(stack: Stack, wired: Path) -> None:
    request(wired)
    assert decide("approve").returncode == 0
    until(lambda: first_read_error(stack, DEPARTMENT, TOPIC, f"{DEPARTMENT}-probe") == "ok", "read")

    suspended = decide("suspend", "--reason", "数据使用情况核查")
    assert suspended.returncode == 0, suspended.stderr
    closed = until(
        lambda: first_read_error(stack, DEPARTMENT, TOPIC, f"{DEPARTMENT}-probe") in DENIED,
        "closing the topic to the department",
    )
    assert not delivered(stack), "delivered while suspended"
    print(f"suspended: topic closed to the department {closed:.1f}s after the decision")
    no_reason = decide("revoke")
    assert no_reason.returncode == REFUSED and "needs a reason" in no_reason.stderr

    assert decide("resume").returncode == 0
    until(lambda: first_read_error(stack, DEPARTMENT, TOPIC, f"{DEPARTMENT}-probe") == "ok", "read")
    until(lambda: delivered(stack), "a delivery after resuming")

    assert decide("revoke", "--reason", "职能调整").returncode == 0
    until(
        lambda: first_read_error(stack, DEPARTMENT, TOPIC, f"{DEPARTMENT}-probe") in DENIED,
        "closing the topic after the revocation",
    )
    assert state()["state"] == "revoked" and state()["reason"] == "职能调整"
    resumed = decide("resume")
    assert resumed.returncode == REFUSED and "is revoked" in resumed.stderr

    asked = request(wired)
    rejected = decide("reject", "--reason", "用途与职能不符")
    assert rejected.returncode == 0, rejected.stderr
    assert json.loads(rejected.stdout)["request"] == asked["id"]
    assert state()["state"] == "rejected" and not state()["active"]
    again = decide("approve")
    assert again.returncode == REFUSED and "no request waiting" in again.stderr
