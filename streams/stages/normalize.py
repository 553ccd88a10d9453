"""The normalize stage: Debezium envelopes, and deliveries mirrored from upstream nodes,
-> canonical change events on ``changes.<entity>``; what cannot be normalized is held on
``govsync.dlq``.

    cdc.<department>.<schema>.<table> --normalize--> changes.<entity>
    <node>.deliver.<login>.<entity> ---/       \\--> govsync.dlq (original bytes, position, reason)
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from confluent_kafka import Message, TopicPartition
from confluent_kafka.serialization import SerializationError

from streams.contract import headers, schemas
from streams.contract.topics import DLQ_TOPIC, changes_topic, mirrored_topic
from streams.engine import metrics
from streams.engine.transactional import NOTHING, Output, Produced
from streams.kafka.serde import Codec
from streams.model.topology import Inbound, Source, Topology
from streams.transform import temporal
from streams.transform.inbound import inbound_change
from streams.transform.normalize import NormalizeError, Normalizer


def dead_letter(message: Message, code: str, reason: str) -> Output:
    """The original bytes, where they came from and why they could not go on."""
    return Output(
        DLQ_TOPIC,
        message.key(),
        message.value(),
        [
            ("error_code", code.encode()),
            ("error_message", reason.encode()),
            ("source_topic", message.topic().encode()),
            ("source_partition", str(message.partition()).encode()),
            ("source_offset", str(message.offset()).encode()),
            ("dead_lettered_at", str(int(time.time() * 1000)).encode()),
        ],
    )


class NormalizeStage:
    """Debezium envelopes -> canonical change events; what cannot be normalized is held."""

    name = "normalize"

    def __init__(
        self, topology: Topology, codec: Codec, upstream_codecs: Mapping[str, Codec] = {}
    ) -> None:
        """``upstream_codecs``: per upstream node, the codec of its registry, whose schema
        ids the mirrored records carry; an upstream without one is not read (its records
        wait on their topic)."""
        self._sources: dict[str, Source] = {s.cdc_topic: s for s in topology.sources}
        self._inbound: dict[str, Inbound] = {
            mirrored_topic(i): i for i in topology.inbound if i.upstream.node in upstream_codecs
        }
        self._upstream_codecs = upstream_codecs
        self._entities = topology.entities
        self.topics: Sequence[str] = sorted([*self._sources, *self._inbound])
        self._normalizers = {
            s.cdc_topic: Normalizer(s, topology.entity(s.entity)) for s in topology.sources
        }
        self.tally = metrics.Tally()
        self._codec = codec
        self._wall_clock: dict[int, Mapping[str, temporal.WallClock]] = {}  # by schema id
        self._serializers = {
            entity: codec.serializer(
                changes_topic(entity), schemas.change_event_schema(topology, entity)
            )
            for entity in topology.changed_entities
        }

    def convert(self, topic: str, key: bytes | None, value: bytes | None) -> tuple[dict, Output]:
        """One cdc record -> (canonical change, the record for changes.<entity>).

        Raises NormalizeError or SerializationError; shared by live processing and
        `govsync dlq reprocess`, so a held record is judged by exactly the same rules.
        """
        inbound = self._inbound.get(topic)
        if inbound is not None:
            delivery = self._upstream_codecs[inbound.upstream.node].decode(topic, value)
            change = inbound_change(delivery, key, inbound, self._entities[inbound.entity])
        else:
            envelope = self._codec.decode(topic, value)
            if envelope is None or value is None:
                raise NormalizeError("tombstone", "record has no value")
            change = self._normalizers[topic](
                envelope, self._codec.decode_key(topic, key), self._wall_clock_of(topic, value)
            )
        out = Output(
            changes_topic(change["entity"]),
            change["key"].encode(),
            self._serializers[change["entity"]](change),
            headers.for_change(change, "normalize"),
        )
        return change, out

    def _wall_clock_of(self, topic: str, value: bytes) -> Mapping[str, temporal.WallClock]:
        """How to read the zone-less time columns of ``value``'s writer schema, worked out
        once per schema id."""
        schema_id, writer = self._codec.writer(topic, value)
        found = self._wall_clock.get(schema_id)
        if found is None:
            found = self._wall_clock[schema_id] = temporal.wall_clock_columns(writer)
        return found

    def process(self, message: Message) -> list[Output]:
        topic = message.topic()
        inbound = self._inbound.get(topic)
        source_id, entity = (
            (inbound.id, inbound.entity)
            if inbound is not None
            else (self._sources[topic].id, self._sources[topic].entity)
        )
        self.tally.inc(metrics.CAPTURED, source_id)
        try:
            _, out = self.convert(topic, message.key(), message.value())
        except (NormalizeError, SerializationError) as exc:
            code = getattr(exc, "code", "undecodable")
            self.tally.inc(metrics.DEAD_LETTERED, source_id, code)
            return [dead_letter(message, code, str(exc))]
        self.tally.inc(metrics.NORMALIZED, source_id, entity)
        where = (topic, message.partition(), message.offset(), message.timestamp()[1])
        if inbound is None:
            out.headers.append(headers.captured(*where))
            return [out]
        # Where the upstream captured it, when it is known (its route passes that on to
        # nodes), and the mirrored record it arrived as.
        node = inbound.upstream.node
        captured = headers.as_dict(message.headers()).get(headers.CAPTURED)
        if captured is not None:
            out.headers.append((headers.CAPTURED, f"{node}:{captured}".encode()))
        out.headers.append(headers.upstream(node, *where))
        return [out]

    def assigned(self, partitions: list[TopicPartition]) -> None:
        """Stateless."""

    def revoked(self, partitions: list[TopicPartition]) -> None:
        """Stateless."""

    def committed(self, produced: Produced = NOTHING) -> None:
        self.tally.commit()

    def aborted(self) -> None:
        self.tally.abort()
