"""The subscription lifecycle's signed records on Kafka (申请—审核—授权—使用—评价):
requests, decisions and objections, written signed, read back verified.

Every reader (the worker, the query API, the ACL keeper, the indexer, the CLI) keeps only
what it can prove (streams/contract/approvals.py, objections.py): a request signed by the
department it names, a decision signed by the topology's data authority and allowed by
its rules, an objection signed by the department that raised it or the source that
answers. Anything else is skipped here with a warning, and refused onto the audit trail by
the ledger.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

from confluent_kafka import KafkaError, Message, Producer
from pydantic import BaseModel, ValidationError

from streams.config.settings import Settings
from streams.contract import signatures
from streams.contract.approvals import Decision, Request, decision_problem
from streams.contract.headers import as_dict
from streams.contract.objections import Objection, signer_problem
from streams.contract.topics import APPROVALS_TOPIC, REQUESTS_TOPIC, objections_topic
from streams.kafka import clients, topic_reader
from streams.kafka.admin import AdminError
from streams.model.topology import Topology

log = logging.getLogger("govsync.lifecycle")

M = TypeVar("M", bound=BaseModel)

SIGNER_HEADER = "signer"


def keys_dir(settings: Settings) -> Path:
    """Published public keys: what every checker reads."""
    return settings.path("keys")


def signing_key(settings: Settings, principal: str) -> signatures.Ed25519PrivateKey:
    return signatures.signing_key(settings.path("secrets"), keys_dir(settings), principal)


class Unproven(ValueError):
    """A record whose signer cannot be proven, or whose rules it breaks."""


def _proven(message: Message, keys: Path, signer: str | None) -> str | None:
    """Why ``message`` is not proven to be signed by ``signer``, or None."""
    if signer is None:
        return "no signer is named"
    return signatures.unproven(
        signatures.public_key(keys, signer),
        message.value() or b"",
        as_dict(message.headers()).get(signatures.SIGNATURE_HEADER, "").encode() or None,
    )


def verify_request(message: Message, keys: Path) -> Request:
    request = _parse(Request, message)
    refusal = _proven(message, keys, request.department)
    if refusal is not None:
        raise Unproven(f"request for {request.subscription} by {request.department}: {refusal}")
    return request


def verify_decision(message: Message, keys: Path, topology: Topology) -> Decision:
    decision = _parse(Decision, message)
    refusal = _proven(message, keys, topology.authority) or decision_problem(decision, topology)
    if refusal is not None:
        raise Unproven(f"decision on {decision.subscription} by {decision.principal}: {refusal}")
    return decision


def verify_objection(message: Message, keys: Path, topology: Topology) -> Objection:
    step = _parse(Objection, message)
    refusal = _proven(message, keys, step.principal) or signer_problem(step, topology)
    if refusal is None and message.topic() != objections_topic(step.source):
        refusal = f"it names {step.source} as its source but is on {message.topic()}"
    if refusal is not None:
        raise Unproven(f"objection {step.id} {step.step} by {step.principal}: {refusal}")
    return step


def _parse(model: type[M], message: Message) -> M:
    try:
        return model.model_validate_json(message.value() or b"")
    except ValidationError as exc:
        where = f"{message.topic()}[{message.partition()}]@{message.offset()}"
        raise Unproven(f"{where} is not a {model.__name__}: {exc.errors()[0]['msg']}") from exc


def decisions(settings: Settings, topology: Topology) -> dict[str, Decision]:
    """The latest verified decision on each subscription (one record each: compacted)."""
    return verified_decisions(_all(settings, APPROVALS_TOPIC), keys_dir(settings), topology)


def verified_decisions(
    messages: Iterable[Message], keys: Path, topology: Topology
) -> dict[str, Decision]:
    """The latest of ``messages`` on each subscription that proves to be the authority's;
    tombstones and the unproven are skipped (the ledger refuses the latter on the trail)."""
    found: dict[str, Decision] = {}
    for message in messages:
        if not message.value():
            continue
        try:
            decision = verify_decision(message, keys, topology)
        except Unproven as exc:
            log.warning("ignoring %s", exc)
            continue
        found[decision.subscription] = decision
    return found


def requests(settings: Settings) -> dict[str, Request]:
    """The latest verified request for each subscription."""
    found: dict[str, Request] = {}
    for message in _all(settings, REQUESTS_TOPIC):
        try:
            request = verify_request(message, keys_dir(settings))
        except Unproven as exc:
            log.warning("ignoring %s", exc)
            continue
        found[request.subscription] = request
    return found


def _all(settings: Settings, topic: str) -> list[Message]:
    """Every record on ``topic`` (none before an apply created it), tombstones left out."""
    return [m for m in topic_reader.whole(settings.bootstrap, [topic]) if m.value()]


_DENIED = {KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED}


class NotPermitted(AdminError):
    """The broker's ACLs refuse the write to this principal."""


def publish(settings: Settings, record: Request | Decision | Objection, signer: str) -> None:
    """Write ``record`` signed by ``signer``, logged in to Kafka as ``signer``: its ACLs
    decide whether it may write there at all (``NotPermitted`` when they do not)."""
    if isinstance(record, Objection):
        topic, key = objections_topic(record.source), record.id
    else:
        topic = REQUESTS_TOPIC if isinstance(record, Request) else APPROVALS_TOPIC
        key = record.subscription
    value = record.model_dump_json().encode()
    signature = signatures.sign_as(signing_key(settings, signer), value)
    failures: list[KafkaError] = []

    def delivered(error: KafkaError | None, _: Message) -> None:
        if error is not None:
            failures.append(error)

    producer = Producer(clients.config(settings.bootstrap, signer, **{"enable.idempotence": True}))
    producer.produce(
        topic,
        value,
        key.encode(),
        headers=[(signatures.SIGNATURE_HEADER, signature), (SIGNER_HEADER, signer.encode())],
        on_delivery=delivered,
    )
    if producer.flush(30) != 0:
        raise AdminError(f"{signer} could not write to {topic}: timed out")
    if failures:
        error = failures[0]
        if error.code() in _DENIED:
            raise NotPermitted(f"Kafka does not let {signer} write to {topic}")
        raise AdminError(f"{signer} could not write to {topic}: {error.str()}")
