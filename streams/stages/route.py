"""The route stage: canonical changes -> the latest state on ``master.<entity>`` and a
projection per active subscription, each event_id once.

    changes.<entity> --route--> master.<entity>
                          |--> deliver.<department>.<entity>  (projected, masked)
                          \\--> govsync.quality               (一数一源 discrepancies)

Its state (the event_ids it has seen, the canonical state per key) lives in the engine's
transactional store and in two changelogs written in the same transaction as its outputs.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Message, TopicPartition

from streams.contract import headers, schemas
from streams.contract.replay import SNAPSHOT, ReplayRequest
from streams.contract.topics import (
    CANONICAL_CHANGELOG_TOPIC,
    QUALITY_TOPIC,
    ROUTE,
    changes_topic,
    dedup_changelog_topic,
    delivery_topic,
    master_topic,
)
from streams.engine import metrics
from streams.engine.restoring import ChangelogRestore, Hold
from streams.engine.transactional import NOTHING, Output, Produced
from streams.kafka import admin
from streams.kafka.serde import Codec
from streams.model.topology import Subscription, Topology, approval_day_end
from streams.stages import canonical
from streams.stages.dedup import DedupStore, encode_seen
from streams.transform.authority import Authority
from streams.transform.masking import mask_delivery
from streams.transform.projection import projected
from streams.transform.snapshot import snapshot_changes

log = logging.getLogger("govsync.worker")


@dataclass(frozen=True)
class Target:
    """One subscription as the route serves it: where its records go and how they are
    shaped (its projection, masks and schema)."""

    subscription: Subscription
    topic: str
    serialize: Callable[[dict[str, Any]], bytes]
    mask_key: bytes
    fields: tuple[str, ...]  # the subscribed fields, in the entity's order
    span: str  # this hop's stage name in the trace context
    node: bool = False  # the subscriber is another govsync node (federation)

    def output(
        self, change: dict[str, Any], extra: Sequence[tuple[str, bytes]] = ()
    ) -> Output | None:
        """The record for this subscription, or None when it gets nothing of ``change``
        (no subscribed field changed)."""
        subscription = self.subscription
        delivery = projected(change, subscription.id, self.fields)
        if delivery is None:
            return None
        return Output(
            self.topic,
            change["key"].encode(),
            self.serialize(mask_delivery(delivery, subscription, self.mask_key)),
            [*headers.for_change(change, self.span), *extra],
        )


@dataclass(frozen=True)
class Routing:
    """The subscriptions the route stage serves, swapped whole when the topology changes."""

    topology: Topology
    targets: dict[str, Target]
    # entity -> (until when it holds, epoch ms; the ids of its active subscriptions)
    _active: dict[str, tuple[int, frozenset[str]]] = field(default_factory=dict)

    def active(self, entity: str, now_ms: int) -> frozenset[str]:
        """The subscriptions to ``entity`` that receive changes now, worked out once a day:
        approval windows begin and end only at a day's end (``approval_day_end``)."""
        held = self._active.get(entity)
        if held is None or now_ms >= held[0]:
            at = datetime.fromtimestamp(now_ms / 1000, UTC)
            ids = frozenset(s.id for s in self.topology.active_subscriptions(entity, at))
            held = (int(approval_day_end(at).timestamp() * 1000), ids)
            self._active[entity] = held
        return held[1]

    @functools.cached_property
    def by_entity(self) -> dict[str, list[Target]]:
        """The subscriptions to each entity, approved or not: looked up for every change."""
        by_entity: dict[str, list[Target]] = {}
        for target in self.targets.values():
            by_entity.setdefault(target.subscription.entity, []).append(target)
        return by_entity

    @functools.cached_property
    def serves_nodes(self) -> bool:
        return any(target.node for target in self.targets.values())


class ReloadRefused(ValueError):
    """A topology change a running route stage cannot take (its inputs changed)."""


class RouteStage:
    name = ROUTE

    def __init__(
        self,
        topology: Topology,
        codec: Codec,
        bootstrap: str,
        mask_key: Callable[[str], bytes],
        state_dir: Path | None = None,
    ) -> None:
        """``state_dir``: keep the committed state on disk there, per partition, so a
        restart reads only the changelogs' tails (None: in memory, restored in full)."""
        self._codec = codec
        self._mask_key = mask_key
        self._bootstrap = bootstrap
        entities = topology.changed_entities
        self._entity_of = {changes_topic(e): e for e in entities}
        self.topics: Sequence[str] = sorted(self._entity_of)
        self._state = {
            e: codec.serializer(master_topic(e), schemas.entity_state_schema(topology, e))
            for e in entities
        }
        self.routing = self._routing(topology)
        self.dedup = DedupStore(
            topology.kafka.dedup_retention, state_dir / "dedup" if state_dir else None
        )
        self.canonical = canonical.new_store(state_dir / "canonical" if state_dir else None)
        self._durable = state_dir is not None
        self._authority = {e: Authority(topology, e) for e in entities}
        self._quality = codec.serializer(QUALITY_TOPIC, schemas.quality_schema())
        self.tally = metrics.Tally()
        self.changelog = dedup_changelog_topic(self.name)

    def _routing(self, topology: Topology) -> Routing:
        return Routing(
            topology,
            {
                s.id: Target(
                    s,
                    delivery_topic(s),
                    self._codec.serializer(delivery_topic(s), schemas.delivery_schema(topology, s)),
                    self._mask_key(s.department),
                    tuple(s.fields_in(topology.entity(s.entity))),
                    f"deliver/{s.id}",
                    topology.departments[s.department].node,
                )
                for s in topology.subscriptions
            },
        )

    def reload(self, topology: Topology) -> None:
        """Serve ``topology``'s subscriptions from the next record on (approvals, fields,
        masks, new subscriptions). Sources and entities are what the stage's state and
        inputs are built from; a change to them needs a new stage."""
        current = self.routing.topology
        if (
            topology.entities != current.entities
            or topology.sources != current.sources
            or topology.federation != current.federation
        ):
            raise ReloadRefused("sources, entities or upstream nodes changed")
        self.routing = self._routing(topology)

    def process(self, message: Message) -> list[Output]:
        routing = self.routing  # one topology for the whole record, even during a reload
        entity = self._entity_of[message.topic()]
        verb = headers.control(message.headers())
        if verb is not None:
            # Snapshots are the route's to serve; other requests are for the ledger's record.
            return self._snapshot(routing, entity, message) if verb == SNAPSHOT else []
        change = self._codec.decode(message.topic(), message.value())
        assert change is not None  # written by normalize, always a value
        partition = message.partition()
        now_ms = time.time_ns() // 1_000_000
        seen = self._remember(partition, change["event_id"], now_ms)
        if seen is None:
            self.tally.inc(metrics.DUPLICATES, entity)
            return []
        key = change["key"].encode()
        store_key = canonical.store_key(entity, change["key"])
        merge = self._authority[entity].merge(change, self.canonical.get(partition, store_key))
        self.canonical.put(partition, store_key, merge.canonical)
        outputs = [
            seen,
            Output(
                CANONICAL_CHANGELOG_TOPIC,
                store_key.encode(),
                merge.canonical.to_json(),
                [],
                partition,
                changelog=True,
            ),
        ]
        for discrepancy in merge.discrepancies:
            outputs.append(
                Output(
                    QUALITY_TOPIC,
                    key,
                    self._quality(discrepancy.model_dump()),
                    headers.for_change(change, "quality"),
                )
            )
            self.tally.inc(metrics.DISCREPANCIES, change["source"], discrepancy.field)
        targets = routing.by_entity.get(entity, [])
        if not merge.changes_state:
            # Nothing canonical changed (e.g. a source restating values another source
            # owns): no master write, nothing for any subscription.
            for target in targets:
                self.tally.inc(metrics.FILTERED, target.subscription.id)
            return outputs
        change = merge.change
        after = change["after"]
        outputs.append(
            Output(
                master_topic(entity),
                key,
                self._state[entity](after) if after is not None else None,
                headers.for_change(change, "master"),
                partition,
            )
        )
        active = routing.active(entity, now_ms)
        # A node's trace shows where its upstream captured the change.
        upstream = (
            [h for h in message.headers() or [] if h[0] == headers.CAPTURED]
            if routing.serves_nodes
            else []
        )
        for target in targets:
            subscription_id = target.subscription.id
            extra = upstream if target.node else ()
            out = target.output(change, extra) if subscription_id in active else None
            if out is None:
                self.tally.inc(metrics.FILTERED, subscription_id)
                continue
            outputs.append(out)
            self.tally.inc(metrics.DELIVERED, subscription_id)
            self.tally.observe(
                metrics.DELIVERY_LATENCY,
                max(0, now_ms - change["source_ts_ms"]) / 1000,
                subscription_id,
            )
        return outputs

    def _remember(self, partition: int, event_id: str, now_ms: int) -> Output | None:
        """Mark ``event_id`` seen; the changelog record saying so, or None if it was."""
        if self.dedup.seen(partition, event_id):
            return None
        self.dedup.add(partition, event_id, now_ms)
        return Output(
            self.changelog, event_id.encode(), encode_seen(now_ms), [], partition, changelog=True
        )

    def _snapshot(self, routing: Routing, entity: str, message: Message) -> list[Output]:
        """A snapshot request (govsync replay): this partition's canonical state, as it
        stands between the changes before the request and those after it, for one
        subscription only."""
        request = ReplayRequest.model_validate_json(message.value() or b"{}")
        partition = message.partition()
        now_ms = time.time_ns() // 1_000_000
        seen = self._remember(partition, request.event_id(partition), now_ms)
        if seen is None:
            return []
        outputs = [seen]
        target = routing.targets.get(request.subscription)
        active = routing.active(entity, now_ms)
        if target is None or request.subscription not in active:
            log.warning(
                "snapshot %s refused: %s is not an active subscription",
                request.replay_id,
                request.subscription,
            )
            return outputs
        model = routing.topology.entity(entity)
        prefix = canonical.store_key(entity, "")
        states = (
            (key.removeprefix(prefix), state)
            for key, state in self.canonical.items(partition, prefix)
        )
        marker = [(headers.REPLAY, request.replay_id.encode())]
        for change in snapshot_changes(request, model, states):
            out = target.output(change, marker)
            if out is not None:
                outputs.append(out)
                self.tally.inc(metrics.DELIVERED, target.subscription.id)
        log.info(
            "snapshot %s: %d records for %s from %s[%d]",
            request.replay_id,
            len(outputs) - 1,
            request.subscription,
            message.topic(),
            partition,
        )
        return outputs

    def assigned(self, partitions: list[TopicPartition]) -> Hold:
        """Bring the assigned partitions' state up to their changelogs' ends (on disk:
        only the tail since the last checkpoint), in steps the engine takes between polls."""
        numbers = sorted({tp.partition for tp in partitions})
        ids = self._changelog_ids() if self._durable else {}
        return Hold(
            restores=[
                self.dedup.restoring(
                    self._bootstrap, self.changelog, numbers, ids.get(self.changelog, "")
                ),
                ChangelogRestore(
                    self.canonical,
                    self._bootstrap,
                    CANONICAL_CHANGELOG_TOPIC,
                    numbers,
                    ids.get(CANONICAL_CHANGELOG_TOPIC, ""),
                ),
            ]
        )

    def _changelog_ids(self) -> dict[str, str]:
        client = admin.admin_client(self._bootstrap)
        return admin.topic_ids(client, [self.changelog, CANONICAL_CHANGELOG_TOPIC])

    def revoked(self, partitions: list[TopicPartition]) -> None:
        numbers = {tp.partition for tp in partitions}
        self.dedup.state.drop(numbers)
        self.canonical.drop(numbers)

    def committed(self, produced: Produced = NOTHING) -> None:
        self.dedup.state.commit(_checkpoints(produced, self.changelog))
        self.canonical.commit(_checkpoints(produced, CANONICAL_CHANGELOG_TOPIC))
        self.tally.commit()
        metrics.DEDUP_ENTRIES.labels(self.name).set(self.dedup.state.size())

    def aborted(self) -> None:
        self.dedup.state.abort()
        self.canonical.abort()
        self.tally.abort()


def _checkpoints(produced: Produced, topic: str) -> dict[int, int]:
    return {partition: offset for (name, partition), offset in produced.items() if name == topic}
