"""The applied topology: what `govsync topology apply` made effective, and its history.

Editing topology.yaml changes nothing by itself; applying it does. The applied document
is published to ``govsync.topology`` (compacted, one record), from which running workers
take subscription changes within seconds, without a restart. Which subscriptions are
active is not the document's to say: the data authority's verified decisions on
``govsync.approvals`` are laid over it (streams/contract/approvals.py), and the result is
the topology in force. Every apply that changes
something also appends what changed, and who approved it as the topology says, to
``govsync.topology.changes`` (kept indefinitely): approval state, fields, masks, expiry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaError, Message, Producer, TopicPartition
from pydantic import BaseModel

from streams.config.settings import Settings
from streams.contract import approvals, schemas
from streams.contract.approvals import Decision
from streams.contract.topics import (
    APPROVALS_TOPIC,
    TOPOLOGY_CHANGES_TOPIC,
    TOPOLOGY_TOPIC,
    topic_specs,
)
from streams.kafka import admin, clients, lifecycle, topic_reader
from streams.model.topology import Subscription, Topology, load_topology, parse_topology

log = logging.getLogger("govsync.applied")

_KEY = b"topology"


class Applied(BaseModel):
    """One applied version of the topology document."""

    text: str
    sha256: str
    applied_at: datetime

    def topology(self) -> Topology:
        return parse_topology(self.text)


class Change(BaseModel):
    """One thing an apply changed, e.g. ``subscriptions[tax.enterprise].approval.state``."""

    path: str
    before: Any = None
    after: Any = None
    by: str | None = None  # the approver named in the topology, for subscription changes


class ChangeRecord(BaseModel):
    applied_at: datetime
    sha256: str
    previous_sha256: str | None
    changes: list[Change]


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def latest(bootstrap: str) -> Applied | None:
    """The most recently applied topology, or None before the first apply (also while
    the topic does not exist yet)."""
    return _newest(topic_reader.whole(bootstrap, [TOPOLOGY_TOPIC]))


def _newest(messages: Iterable[Message]) -> Applied | None:
    found = None
    for message in messages:
        if message.key() == _KEY and message.value():
            found = Applied.model_validate_json(message.value())
    return found


class InForce(BaseModel, arbitrary_types_allowed=True):
    """The topology the running pipeline serves, and where it came from."""

    topology: Topology  # the applied document with the authority's decisions laid over it
    applied: Applied | None  # None: nothing applied yet, so the file is what is in force
    decisions: dict[str, Decision] = {}

    @property
    def version(self) -> str:
        """Changes when the document or any decision does."""
        text = (self.applied.sha256 if self.applied else "") + "".join(
            d.model_dump_json() for _, d in sorted(self.decisions.items())
        )
        return digest(text)


def in_force(settings: Settings) -> InForce:
    """The topology in force: the one last applied, else (before the first apply) the file,
    with the data authority's verified decisions laid over it.

    Every command that acts on or reports about the running pipeline uses this, so none
    judges by rules the worker is not running: editing topology.yaml is not applying it.
    Both topics are read with one client: this is most of a command's start-up."""
    read = list(topic_reader.whole(settings.bootstrap, [TOPOLOGY_TOPIC, APPROVALS_TOPIC]))
    current = _newest(m for m in read if m.topic() == TOPOLOGY_TOPIC)
    wired = current.topology() if current is not None else load_topology(settings.topology)
    decided = lifecycle.verified_decisions(
        (m for m in read if m.topic() == APPROVALS_TOPIC),
        lifecycle.keys_dir(settings),
        wired,
    )
    return _laid_over(wired, current, decided)


def follow(settings: Settings, stop: threading.Event, poll_s: float = 1.0) -> Iterator[InForce]:
    """The topology in force, then again each time an apply or a decision changes it, until
    ``stop``: one consumer for the caller's lifetime, tailing the applied document and the
    decisions; yielded once it has caught up with both, so a backlog yields only the
    newest."""
    consumer = topic_reader.reader(settings.bootstrap)
    tails = {TOPOLOGY_TOPIC, APPROVALS_TOPIC}
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING) for topic in tails])
    current: Applied | None = None
    decisions: dict[bytes, Message] = {}
    changed, caught_up = False, set()
    try:
        while not stop.is_set():
            message = consumer.poll(poll_s)
            if message is None:
                continue
            error = message.error()
            if error is None and message.topic() == TOPOLOGY_TOPIC:
                if message.key() == _KEY and message.value():
                    current, changed = Applied.model_validate_json(message.value()), True
            elif error is None and message.key() is not None:
                decisions[message.key()] = message
                changed = True
            elif error is not None and error.code() == KafkaError._PARTITION_EOF:
                caught_up.add(message.topic())
                if changed and current is not None and caught_up >= tails:
                    wired = current.topology()
                    keys = lifecycle.keys_dir(settings)
                    decided = lifecycle.verified_decisions(decisions.values(), keys, wired)
                    yield _laid_over(wired, current, decided)
                    changed = False
            elif error is not None:
                log.warning("reading %s: %s", message.topic(), error.str())
    finally:
        consumer.close()


def _laid_over(wired: Topology, current: Applied | None, decided: dict[str, Decision]) -> InForce:
    return InForce(topology=approvals.effective(wired, decided), applied=current, decisions=decided)


def history(bootstrap: str) -> list[ChangeRecord]:
    try:
        start = topic_reader.beginning(bootstrap, [TOPOLOGY_CHANGES_TOPIC])
    except KeyError:
        return []
    return [
        ChangeRecord.model_validate_json(message.value())
        for message in topic_reader.messages(bootstrap, start, timeout=60)
        if message.value()
    ]


def publish(bootstrap: str, text: str, topology: Topology, dry_run: bool = False) -> list[Change]:
    """Make ``text`` the applied topology; returns what changed (nothing: nothing written).
    With ``dry_run``, what it would record, and nothing is written."""
    previous = latest(bootstrap)
    if previous is not None and previous.sha256 == digest(text):
        return []
    changes = diff(previous.topology() if previous is not None else None, topology)
    if dry_run:
        return changes
    now = datetime.now(UTC)
    applied = Applied(text=text, sha256=digest(text), applied_at=now)
    record = ChangeRecord(
        applied_at=now,
        sha256=applied.sha256,
        previous_sha256=previous.sha256 if previous is not None else None,
        changes=changes,
    )
    producer = Producer(clients.config(bootstrap, **{"enable.idempotence": True}))
    producer.produce(TOPOLOGY_CHANGES_TOPIC, key=_KEY, value=record.model_dump_json().encode())
    producer.produce(TOPOLOGY_TOPIC, key=_KEY, value=applied.model_dump_json().encode())
    if producer.flush(30) != 0:
        raise RuntimeError("publishing the applied topology timed out")
    return changes


def diff(before: Topology | None, after: Topology) -> list[Change]:
    """What differs, subscription by subscription (the part that changes day to day);
    other sections are reported as a whole."""
    if before is None:
        return [Change(path="<topology>", after="first apply")]
    changes: list[Change] = []
    for section in ("classification", "never_share", "departments", "entities", "sources"):
        old, new = getattr(before, section), getattr(after, section)
        if old != new:
            changes.append(Change(path=section, before=_plain(old), after=_plain(new)))
    if before.kafka != after.kafka:
        changes.append(Change(path="kafka", before=_plain(before.kafka), after=_plain(after.kafka)))
    old_subs = {s.id: s for s in before.subscriptions}
    new_subs = {s.id: s for s in after.subscriptions}
    for sub_id in sorted(old_subs.keys() | new_subs.keys()):
        old_sub, new_sub = old_subs.get(sub_id), new_subs.get(sub_id)
        at = f"subscriptions[{sub_id}]"
        if old_sub is None or new_sub is None:
            present = new_sub or old_sub
            assert present is not None
            changes.append(
                Change(
                    path=at,
                    before=_plain(old_sub),
                    after=_plain(new_sub),
                    by=present.approval.by,
                )
            )
            continue
        changes.extend(_subscription_changes(at, old_sub, new_sub))
    return changes


def _subscription_changes(at: str, old: Subscription, new: Subscription) -> list[Change]:
    old_data, new_data = _plain(old), _plain(new)
    changes = []
    for name in new_data:
        if name == "approval":
            for item in new_data["approval"]:
                if old_data["approval"].get(item) != new_data["approval"][item]:
                    changes.append(
                        Change(
                            path=f"{at}.approval.{item}",
                            before=old_data["approval"].get(item),
                            after=new_data["approval"][item],
                            by=new.approval.by,
                        )
                    )
        elif old_data.get(name) != new_data[name]:
            changes.append(
                Change(
                    path=f"{at}.{name}",
                    before=old_data.get(name),
                    after=new_data[name],
                    by=new.approval.by,
                )
            )
    return changes


def _plain(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return json.loads(json.dumps(value, default=str))


class NotApplied(RuntimeError):
    """The cluster does not match the topology: it was never applied there."""


def check_applied(topology: Topology, settings: Settings) -> None:
    """Refuse to start processing against a cluster the topology was not applied to."""
    from streams.kafka import serde  # slow to import; the CLI's questions need none of it

    serde.ensure_reachable(settings)
    present = admin.existing_topics(admin.admin_client(settings.bootstrap))
    missing = [spec.name for spec in topic_specs(topology) if spec.name not in present]
    subjects = set(serde.registry_client(settings).get_subjects())
    missing += [
        serde.value_subject(t)
        for t in schemas.value_schemas(topology)
        if serde.value_subject(t) not in subjects
    ]
    if missing:
        raise NotApplied(
            f"the topology is not applied ({', '.join(missing[:3])}"
            f"{' …' if len(missing) > 3 else ''} missing): run `govsync topology apply`"
        )
