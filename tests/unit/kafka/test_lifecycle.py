"""Reading signed requests, decisions and objections back: only what the signer's published
key proves, and only what the rules allow, is believed."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import Message

from streams.contract import signatures
from streams.contract.approvals import Action, decide
from streams.contract.objections import Objection
from streams.contract.topics import APPROVALS_TOPIC, objections_topic
from streams.kafka import lifecycle
from tests.unit.contract.test_approvals import NOW, request
from tests.unit.contract.test_objections import raised
from tests.unit.examples import TAX, TOPOLOGY


def signed(tmp_path: Path, topic: str, value: bytes, signer: str) -> Message:
    key = signatures.signing_key(tmp_path / "secrets", tmp_path / "keys", signer)
    return Message(
        topic=topic,
        partition=0,
        offset=7,
        value=value,
        headers=[(signatures.SIGNATURE_HEADER, signatures.sign_as(key, value))],
    )


def approval() -> bytes:
    decision = decide(
        Action.APPROVE,
        TOPOLOGY,
        TAX.id,
        None,
        request(),
        principal="data_resource_bureau",
        now=NOW,
    )
    return decision.model_dump_json().encode()


def test_a_decision_the_authority_signed_is_believed(tmp_path: Path) -> None:
    message = signed(tmp_path, APPROVALS_TOPIC, approval(), "data_resource_bureau")
    decision = lifecycle.verify_decision(message, tmp_path / "keys", TOPOLOGY)
    assert decision.state == "approved"


def test_a_decision_in_the_authoritys_name_signed_by_anyone_else_is_not(tmp_path: Path) -> None:
    signatures.signing_key(tmp_path / "secrets", tmp_path / "keys", "data_resource_bureau")
    message = signed(tmp_path, APPROVALS_TOPIC, approval(), "admin")
    with pytest.raises(lifecycle.Unproven, match="does not match the signer's key"):
        lifecycle.verify_decision(message, tmp_path / "keys", TOPOLOGY)


def test_a_record_that_is_not_one_is_unproven_not_a_crash(tmp_path: Path) -> None:
    message = signed(tmp_path, APPROVALS_TOPIC, b'{"nonsense": 1}', "data_resource_bureau")
    with pytest.raises(lifecycle.Unproven, match="is not a Decision"):
        lifecycle.verify_decision(message, tmp_path / "keys", TOPOLOGY)


def test_an_objection_must_sit_on_its_sources_topic(tmp_path: Path) -> None:
    value = raised().model_dump_json().encode()
    right = signed(tmp_path, objections_topic("market_regulation"), value, "tax")
    assert isinstance(lifecycle.verify_objection(right, tmp_path / "keys", TOPOLOGY), Objection)
    elsewhere = signed(tmp_path, objections_topic("public_security"), value, "tax")
    with pytest.raises(lifecycle.Unproven, match="names market_regulation as its source"):
        lifecycle.verify_objection(elsewhere, tmp_path / "keys", TOPOLOGY)
