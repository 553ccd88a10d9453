"""使用—评价 as rules: who raises an objection, who answers it, and the rates per source."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from govsync.ops.dlq import SourceAccount
from govsync.ops.quality import source_rates
from streams.contract.objections import (
    Objection,
    ObjectionState,
    Refused,
    Step,
    answer,
    signer_problem,
)
from tests.unit.examples import TOPOLOGY

NOW = datetime(2026, 12, 1, 9, tzinfo=UTC)
SOURCE = "market_regulation.enterprise"


def raised(**changes: object) -> Objection:
    made = {
        "id": "o-1",
        "step": Step.RAISED,
        "event_id": "e-1",
        "subscription": "tax.enterprise",
        "department": "tax",
        "source": "market_regulation",
        "source_id": SOURCE,
        "entity": "enterprise",
        "entity_key": "91310000MA1FL8XQ30",
        "reason": "注册资本与营业执照不符",
        "principal": "tax",
        "at": NOW,
        "record": {"after": {"registered_capital": "1000000.00"}},
        "position": "deliver.tax.enterprise[0]@12",
    }
    return Objection.model_validate(made | changes)


def test_an_objection_is_raised_by_the_receiving_department_only() -> None:
    assert signer_problem(raised(), TOPOLOGY) is None
    assert signer_problem(raised(principal="social_security"), TOPOLOGY) == (
        "raised by social_security, not by tax"
    )


def test_only_the_source_department_answers_with_a_reason() -> None:
    answered = answer(raised(), Step.RESOLVED, "market_regulation", "已更正", NOW)
    assert answered.step is Step.RESOLVED and answered.principal == "market_regulation"
    assert answered.record is None and answered.id == "o-1"
    assert signer_problem(answered, TOPOLOGY) is None
    with pytest.raises(Refused, match="answered by market_regulation, not tax"):
        answer(raised(), Step.REJECTED, "tax", "自己驳回", NOW)
    with pytest.raises(Refused, match="needs a reason"):
        answer(raised(), Step.REJECTED, "market_regulation", " ", NOW)
    with pytest.raises(Refused, match="not raised"):
        answer(raised(), Step.RAISED, "market_regulation", "again", NOW)


def state(ident: str, answer_step: Step | None) -> ObjectionState:
    return ObjectionState(
        id=ident,
        event_id="e",
        subscription="tax.enterprise",
        department="tax",
        source="market_regulation",
        source_id=SOURCE,
        entity_key="k",
        reason="r",
        raised_at_ms=0,
        raised_on="govsync.objections.market_regulation[0]@0",
        delivered_at=None,
        answer=answer_step,
    )


def test_rates_per_source_count_errors_and_objections() -> None:
    account = SourceAccount(
        source=SOURCE,
        captured=1000,
        processed=1000,
        in_flight=0,
        normalized=990,
        dead_lettered=10,
        dead_letters_held=10,
        dead_letters_open=2,
        reprocessed=0,
        processed_after=1000,
    )
    objected = [state("a", None), state("b", Step.RESOLVED), state("c", Step.REJECTED)]
    (market, *others) = source_rates(TOPOLOGY, [account], objected)
    assert market.source == SOURCE and market.error_rate == 0.01
    assert (market.objections, market.open, market.resolved, market.rejected) == (3, 1, 1, 1)
    assert market.objection_rate == pytest.approx(3 / 990)
    assert all(q.error_rate is None and q.objections == 0 for q in others)
