"""The tamper-evident audit trail on ``govsync.audit``: records, the hash chain, verification.

An auditor asks "who received this person's data, when, under which approval?"; the
answer is only worth something if nobody can quietly change it afterwards. Each record
therefore carries the SHA-256 of its predecessor and its own SHA-256 over both, so
altering, removing, reordering or duplicating a record breaks the chain where it
happened. One writer owns a chain (one partition of ``govsync.audit``, the ledger stage's);
this module holds the chain's logic, and reads and verifies the trail on Kafka.

What a chain cannot show by itself: records cut off its end, or the whole tail rewritten
and re-hashed by someone who can write the topic. Checkpoint records (count and head
every ``checkpoint_every`` records) are the statements to copy somewhere the writer
cannot reach, so such a rewrite contradicts a published head.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict, Unpack

import orjson
from pydantic import BaseModel

from streams.config.settings import Settings
from streams.contract.records import AuditKind, AuditRecord, hashed_body
from streams.contract.topics import AUDIT_TOPIC
from streams.kafka import topic_reader

# streams.kafka.serde is imported only where chains are read from Kafka: its registry
# client takes about 0.25 s to import, which questions answered from the index
# (who-received) should not pay.

GENESIS = "0" * 64
"""The ``prev_sha256`` of a chain's first record."""

CHECKPOINT_ACTOR = "govsync"
"""Checkpoints are written by the chain itself, not on anyone's behalf."""


class AuditFields(TypedDict, total=False):
    """The optional parts of a record, as :meth:`Chain.append` takes them."""

    event_id: str | None
    entity: str | None
    entity_key: str | None
    department: str | None
    subscription: str | None
    fields: list[str]
    approval: dict[str, str]
    detail: dict[str, str]


def record_hash(prev_sha256: str, body: Mapping[str, Any]) -> str:
    """SHA-256 hex over the previous hash and the canonical JSON of the body: keys sorted
    at every level, no whitespace, UTF-8 (what ``json.dumps(body, sort_keys=True,
    separators=(",", ":"), ensure_ascii=False)`` writes, byte for byte; orjson writes it
    several times faster).

    Canonical JSON rather than the Avro bytes on Kafka: those start with a schema id that
    legitimately changes when the schema evolves (or the registry is rebuilt), and the
    hash of a record written years ago must still verify after that."""
    canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(prev_sha256.encode() + canonical).hexdigest()


_OPTIONAL_NONE: dict[str, None] = {
    name: None
    for name, field in AuditRecord.model_fields.items()
    if not field.is_required() and field.default is None
}


class Chain:
    """The single writer's head of one chain. Not shared: two writers on one chain would
    fork it, which :func:`verify` reports as tampering.

    A checkpoint follows every ``checkpoint_every`` other records; where they fall is
    derived from ``seq`` alone, so a chain resumed from its last record keeps the rhythm.
    """

    def __init__(
        self, head_sha256: str = GENESIS, next_seq: int = 0, checkpoint_every: int = 1000
    ) -> None:
        if checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be at least 1, got {checkpoint_every}")
        self.head_sha256 = head_sha256
        self.next_seq = next_seq
        self.checkpoint_every = checkpoint_every

    @classmethod
    def resume(cls, last: AuditRecord | None, checkpoint_every: int = 1000) -> Chain:
        """Continue after the last record on the topic (``None``: the topic is empty)."""
        if last is None:
            return cls(checkpoint_every=checkpoint_every)
        return cls(last.sha256, last.seq + 1, checkpoint_every)

    def append(
        self,
        kind: AuditKind,
        at_ms: int,
        actor: str,
        **values: Unpack[AuditFields],
    ) -> list[AuditRecord]:
        """Seal one record onto the chain; a checkpoint after it when one is due. Write the
        returned records together (one transaction) so a checkpoint is never lost."""
        return [
            AuditRecord.model_construct(**record)
            for record in self.seal(kind, at_ms, actor, **values)
        ]

    def seal(
        self,
        kind: AuditKind,
        at_ms: int,
        actor: str,
        **values: Unpack[AuditFields],
    ) -> list[dict[str, Any]]:
        """:meth:`append`, each record as the dict of all its fields: the ledger seals one
        or two records per delivery and receipt and writes them straight to Avro."""
        if kind == "checkpoint":
            raise ValueError("checkpoints are appended by the chain itself")
        records = [self._seal(kind=kind, at_ms=at_ms, actor=actor, **values)]
        if self.next_seq % (self.checkpoint_every + 1) == self.checkpoint_every:
            detail = {"count": str(self.next_seq), "head": self.head_sha256}
            records.append(
                self._seal(kind="checkpoint", at_ms=at_ms, actor=CHECKPOINT_ACTOR, detail=detail)
            )
        return records

    def _seal(self, **values: Any) -> dict[str, Any]:
        # Not validated: the ledger's own values are well-typed. verify() hashes the same
        # body from the model.
        record = {
            **_OPTIONAL_NONE,
            "fields": [],
            "approval": {},
            "detail": {},
            **values,
            "seq": self.next_seq,
            "prev_sha256": self.head_sha256,
        }
        record["sha256"] = record_hash(self.head_sha256, hashed_body(record))
        self.head_sha256 = record["sha256"]
        self.next_seq += 1
        return record


# truncated, rehashed: found only against a witness (govsync/index/witness.py), which
# remembers each checkpoint as it was first seen.
Problem = Literal["altered", "removed", "reordered", "duplicated", "truncated", "rehashed"]


class Tampering(BaseModel):
    """One place where the chain is broken. ``offset`` is the Kafka offset where it shows;
    ``seq`` the position in the chain it concerns (for ``removed``: the first missing)."""

    offset: int
    seq: int
    problem: Problem
    message: str


class Resume(BaseModel):
    """A checkpoint record up to which a chain was found intact: a later walk can start
    there instead of at the chain's start (``audit verify --incremental``)."""

    offset: int
    seq: int
    prev_sha256: str


class VerifyReport(BaseModel):
    records: int
    checkpoints: int
    head_sha256: str
    findings: list[Tampering]
    from_offset: int = 0  # where the walk began (0: the chain's start)
    # The last checkpoint with nothing wrong before it in this walk.
    checkpoint: Resume | None = None

    @property
    def intact(self) -> bool:
        return not self.findings


@dataclass
class _Gap:
    """Seqs ``low..high`` missing before the record at ``offset``; some may turn up later."""

    offset: int
    low: int
    high: int
    filled: set[int] = field(default_factory=set)

    def missing(self) -> int:
        return self.high - self.low + 1 - len(self.filled)


def _after(seq: int) -> str:
    return "the start of the chain" if seq < 0 else f"seq {seq}"


class _Verifier:
    """Walks one partition in offset order, following the chain from record to record.

    The prev link is what places a record: one that links to the head is the next record
    whatever its ``seq`` claims. A record that does not link is placed by its ``seq``,
    with one record of look-ahead to tell a record that jumped ahead (the next record is
    the one expected) from a gap. After each finding the walk continues from the record
    as written, so one tampering gives one finding rather than one per later record.
    Memory stays bounded: only the last ``window`` seqs' hashes are kept for duplicates.
    """

    def __init__(self, window: int) -> None:
        self.window = window
        self.expected = 0
        self.heads: tuple[str, ...] = (GENESIS,)
        self.recent: OrderedDict[int, str] = OrderedDict()
        self.early: dict[int, tuple[str, int]] = {}  # seq → (sha256, index of its finding)
        self.gaps: list[_Gap] = []
        self.findings: list[Tampering] = []
        self.records = 0
        self.checkpoints = 0

    def report(self) -> VerifyReport:
        findings = list(self.findings)
        for gap in self.gaps:
            if missing := gap.missing():
                first = next(seq for seq in range(gap.low, gap.high + 1) if seq not in gap.filled)
                late = f" ({len(gap.filled)} more arrived out of place)" if gap.filled else ""
                findings.append(
                    Tampering(
                        offset=gap.offset,
                        seq=first,
                        problem="removed",
                        message=f"{missing} record(s) missing between {_after(gap.low - 1)} "
                        f"and seq {gap.high + 1}{late}",
                    )
                )
        findings.sort(key=lambda finding: (finding.offset, finding.problem != "removed"))
        return VerifyReport(
            records=self.records,
            checkpoints=self.checkpoints,
            head_sha256=self.heads[0],
            findings=findings,
        )

    def add(self, offset: int, record: AuditRecord, problem: Problem, message: str) -> int:
        self.findings.append(
            Tampering(offset=offset, seq=record.seq, problem=problem, message=message)
        )
        return len(self.findings) - 1

    def step(self, offset: int, record: AuditRecord, following: AuditRecord | None) -> None:
        self.records += 1
        self.checkpoints += record.kind == "checkpoint"
        digest = record_hash(record.prev_sha256, record.body())
        intact = digest == record.sha256
        if record.prev_sha256 in self.heads or record.seq == self.expected:
            self.in_place(offset, record, digest, intact)
        elif record.seq > self.expected:
            if following is not None and (
                following.seq == self.expected or following.prev_sha256 in self.heads
            ):
                self.ahead(offset, record, intact)
            else:
                self.after_gap(offset, record, digest, intact)
        else:
            self.behind(offset, record, intact)

    def advance(self, seq: int, record: AuditRecord, digest: str) -> None:
        # Accept a successor linking to the stored hash (content altered) or to the
        # recomputed one (only the stored hash altered).
        self.heads = (record.sha256,) if digest == record.sha256 else (record.sha256, digest)
        self.expected = seq + 1
        self.recent[seq] = record.sha256
        while len(self.recent) > self.window:
            self.recent.popitem(last=False)

    def in_place(self, offset: int, record: AuditRecord, digest: str, intact: bool) -> None:
        """The next record of the chain, by its link or its seq."""
        seq, previous = self.expected, _after(self.expected - 1)
        problems = []
        if not intact:
            problems.append("its content does not match its sha256")
        if record.prev_sha256 not in self.heads:
            problems.append(
                f"its prev_sha256 is not the sha256 of {previous}: that record was rewritten "
                "and re-hashed, or this link was"
            )
        if record.seq != seq:
            problems.append(f"it claims seq {record.seq} but follows {previous}")
        if not problems and record.kind == "checkpoint":
            if record.detail.get("count") != str(seq):
                problems.append(
                    f"checkpoint count {record.detail.get('count')!r} but {seq} records precede it"
                )
            if record.detail.get("head") != record.prev_sha256:
                problems.append(f"checkpoint head is not the sha256 of {previous}")
        if problems:
            self.findings.append(
                Tampering(
                    offset=offset,
                    seq=seq,
                    problem="altered",
                    message=f"seq {seq} at offset {offset}: " + "; ".join(problems),
                )
            )
        if (early := self.early.pop(seq, None)) is not None and early[0] == record.sha256:
            index = early[1]
            first = self.findings[index]
            self.findings[index] = first.model_copy(
                update={
                    "problem": "duplicated",
                    "message": f"seq {seq} at offset {first.offset} is a copy, ahead of its "
                    f"place, of the record at offset {offset}",
                }
            )
        self.advance(seq, record, digest)

    def ahead(self, offset: int, record: AuditRecord, intact: bool) -> None:
        """A record placed before records that precede it; the chain goes on without it."""
        problem: Problem = "reordered" if intact else "altered"
        where = f"seq {record.seq} at offset {offset} appears before seq {self.expected}"
        index = self.add(offset, record, problem, where + ("" if intact else " and is altered"))
        self.early[record.seq] = (record.sha256, index)

    def after_gap(self, offset: int, record: AuditRecord, digest: str, intact: bool) -> None:
        """A record further on than expected: the seqs between are missing, unless they
        were seen ahead of their place or turn up later (then reported as reordered)."""
        gap = _Gap(offset, self.expected, record.seq - 1)
        for seq in [seq for seq in self.early if gap.low <= seq <= gap.high]:
            gap.filled.add(seq)
            self.recent[seq] = self.early.pop(seq)[0]
        problems = []
        if not intact:
            problems.append("its content does not match its sha256")
        if gap.missing():
            self.gaps.append(gap)
        elif record.prev_sha256 != self.recent.get(record.seq - 1):
            problems.append(f"its prev_sha256 is not the sha256 of seq {record.seq - 1}")
        if problems:
            message = f"seq {record.seq} at offset {offset}: " + "; ".join(problems)
            self.add(offset, record, "altered", message)
        self.advance(record.seq, record, digest)

    def behind(self, offset: int, record: AuditRecord, intact: bool) -> None:
        """A seq the chain is already past: late (filling a gap) or seen before."""
        seq = record.seq
        where = f"seq {seq} at offset {offset}"
        gap = next((g for g in self.gaps if g.low <= seq <= g.high and seq not in g.filled), None)
        if gap is not None:
            gap.filled.add(seq)
            if intact:
                message = f"{where} arrives after seq {self.expected - 1}; it belongs before "
                self.add(offset, record, "reordered", message + f"seq {gap.high + 1}")
            else:
                self.add(offset, record, "altered", f"{where} is out of place and altered")
            return
        known = self.recent.get(seq)
        if known is None and seq in self.early:
            known = self.early[seq][0]
        if known is None:
            message = f"{where} appears again, too far back to compare with the first one"
            self.add(offset, record, "duplicated", message)
        elif known == record.sha256:
            self.add(offset, record, "duplicated", f"{where} repeats an earlier record")
        else:
            message = f"{where} is a second, different record with that seq"
            self.add(offset, record, "altered", message)


class ChainWalk:
    """:func:`verify` fed one record at a time, so a chain of any length is walked in
    bounded memory; optionally from a checkpoint an earlier walk found intact, and
    against a witness's checkpoints (``witnessed``: seq -> sha256 as first seen), which
    a chain rewritten and hashed again, or cut off, no longer matches."""

    def __init__(
        self,
        *,
        window: int = 100_000,
        resume: Resume | None = None,
        witnessed: Mapping[int, str] | None = None,
    ) -> None:
        self._verifier = _Verifier(window)
        self._from = 0
        self._from_seq = 0
        self._checkpoint: Resume | None = None
        if resume is not None:
            # The checkpoint itself is walked again: its count and head are checked.
            self._verifier.expected = resume.seq
            self._verifier.heads = (resume.prev_sha256,)
            self._from = resume.offset
            self._from_seq = resume.seq
        self._witnessed = witnessed or {}
        self._seen: set[int] = set()  # witnessed seqs met as checkpoints in this walk
        self._witness_findings: list[Tampering] = []
        self._last_offset = self._from
        self._current: tuple[int, AuditRecord] | None = None

    def feed(self, offset: int, record: AuditRecord) -> None:
        if self._current is not None:
            self._step(*self._current, record)
        self._current = (offset, record)

    def _step(self, offset: int, record: AuditRecord, following: AuditRecord | None) -> None:
        verifier = self._verifier
        verifier.step(offset, record, following)
        self._last_offset = offset
        if record.kind != "checkpoint":
            return
        if not verifier.findings and not verifier.gaps:
            self._checkpoint = Resume(offset=offset, seq=record.seq, prev_sha256=record.prev_sha256)
        testimony = self._witnessed.get(record.seq)
        if testimony is not None:
            self._seen.add(record.seq)
            if testimony != record.sha256:
                self._witness_findings.append(
                    Tampering(
                        offset=offset,
                        seq=record.seq,
                        problem="rehashed",
                        message=f"checkpoint seq {record.seq} at offset {offset} has sha256 "
                        f"{record.sha256[:16]}…, the witness saw {testimony[:16]}…: the chain "
                        "was rewritten and hashed again before this point",
                    )
                )

    def _against_witness(self) -> list[Tampering]:
        """Checkpoints the witness saw that this walk did not meet: past the chain's end
        (its tail was cut off), or within it but no longer checkpoints (rewritten)."""
        end = self._verifier.expected  # the seq the chain would continue with
        unmet = sorted(
            seq for seq in self._witnessed if seq >= self._from_seq and seq not in self._seen
        )
        beyond = [seq for seq in unmet if seq >= end]
        within = [seq for seq in unmet if seq < end]
        findings = list(self._witness_findings)
        if beyond:
            findings.append(
                Tampering(
                    offset=self._last_offset,
                    seq=end,
                    problem="truncated",
                    message=f"the chain ends before seq {end}, but the witness saw "
                    f"{len(beyond)} checkpoint(s) beyond, up to seq {beyond[-1]}: its tail "
                    "was cut off",
                )
            )
        if within:
            findings.append(
                Tampering(
                    offset=self._last_offset,
                    seq=within[0],
                    problem="rehashed",
                    message=f"the witness saw {len(within)} checkpoint(s) the chain no longer "
                    f"has, from seq {within[0]}: the chain was rewritten",
                )
            )
        return findings

    def report(self) -> VerifyReport:
        if self._current is not None:
            self._step(*self._current, None)
            self._current = None
        report = self._verifier.report()
        witnessed = self._against_witness()
        return report.model_copy(
            update={
                "from_offset": self._from,
                "checkpoint": None if witnessed else self._checkpoint,
                "findings": report.findings + witnessed,
            }
        )


def verify(records: Iterable[tuple[int, AuditRecord]], *, window: int = 100_000) -> VerifyReport:
    """Check one partition's records, given in offset order as ``(offset, record)``.

    Each finding names the offset and seq where the chain breaks; a report without
    findings is :attr:`VerifyReport.intact`. ``window`` bounds how far back a repeated
    seq is compared with its original (memory stays bounded on a long chain).
    """
    walk = ChainWalk(window=window)
    for offset, record in records:
        walk.feed(offset, record)
    return walk.report()


# --- reading the trail on Kafka ------------------------------------------------------------


def read(
    settings: Settings,
    topic: str = AUDIT_TOPIC,
    key: str | None = None,
    start: topic_reader.Offsets | None = None,
) -> dict[int, list[tuple[int, AuditRecord]]]:
    """Every chain on ``topic`` (from ``start``, default the beginning): partition →
    (offset, record) in offset order; with ``key``, only the records of that entity
    (matched on the Kafka key before decoding)."""
    from streams.kafka.serde import ValueDeserializer, registry_client

    decode = ValueDeserializer(registry_client(settings))
    start = start or topic_reader.beginning(settings.bootstrap, [topic])
    chains: dict[int, list[tuple[int, AuditRecord]]] = {partition: [] for _, partition in start}
    wanted = key.encode() if key is not None else None
    for message in topic_reader.messages(settings.bootstrap, start, timeout=600):
        if wanted is None or message.key() == wanted:
            record = AuditRecord.model_validate(decode(topic, message.value()))
            chains[message.partition()].append((message.offset(), record))
    return chains


def verify_topic(
    settings: Settings,
    topic: str = AUDIT_TOPIC,
    *,
    resume: Mapping[int, Resume] | None = None,
    witnessed: Mapping[int, Mapping[int, str]] | None = None,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> dict[int, VerifyReport]:
    """Each chain's verdict, by partition: every chain walked from its start (or from
    its ``resume`` checkpoint) to its end, a batch at a time, in bounded memory, and
    compared with the checkpoints the witness saw (``witnessed``: partition -> seq ->
    sha256). ``progress(done, total)`` after each batch, in records."""
    resume = resume or {}
    witnessed = witnessed or {}
    from streams.kafka.serde import ValueDeserializer, registry_client

    decode = ValueDeserializer(registry_client(settings))
    marks = topic_reader.watermarks(settings.bootstrap, [topic])
    starts = {p: resume[p].offset if p in resume else None for _, p in marks}
    walks = {p: ChainWalk(resume=resume.get(p), witnessed=witnessed.get(p)) for _, p in marks}
    total = sum(high - max(low, starts[p] or 0) for (_, p), (low, high) in marks.items())
    done = 0
    tail = topic_reader.ChangelogTail(settings.bootstrap, topic, starts)
    try:
        while True:
            batch = tail.read()
            for partition, messages in batch.items():
                walk = walks[partition]
                for message in messages:
                    walk.feed(
                        message.offset(),
                        AuditRecord.model_validate(decode(topic, message.value())),
                    )
                done += len(messages)
            progress(min(done, total), total)
            if not tail.remaining:
                break
    finally:
        tail.close()
    return {partition: walk.report() for partition, walk in sorted(walks.items())}


class Received(BaseModel):
    """One delivery of an entity to a department, or one look-up it was answered (``via``
    query, ``receipt`` None), as the audit trail records it."""

    via: Literal["delivery", "query"] = "delivery"
    department: str
    subscription: str
    event_id: str
    kind: str
    at_ms: int
    fields: list[str]
    masked: dict[str, str]
    approval: dict[str, str]
    receipt: str | None  # applied / rejected, once the department answered


def who_received(chains: dict[int, list[tuple[int, AuditRecord]]], key: str) -> list[Received]:
    """Which departments received which fields of entity ``key``, when, under which
    approval, and whether they applied it; newest first. Look-ups on the query API that
    were shown the state count; refused ones, a department's question about its own
    deliveries and the authority's audit questions are on the trail too (a ``reason``
    in their detail), but nothing of the entity was received."""
    records = [r for chain in chains.values() for _, r in chain if r.entity_key == key]
    answers = {
        (r.event_id, r.department): r.detail.get("outcome") for r in records if r.kind == "receipt"
    }
    received = [
        Received(
            via="query" if r.kind == "query" else "delivery",
            department=r.department or "",
            subscription=r.subscription or "",
            event_id=r.event_id or "",
            kind=r.detail.get("kind", "") if r.kind == "delivery" else "look-up",
            at_ms=r.at_ms,
            fields=r.fields,
            masked=dict(
                item.split(":", 1) for item in r.detail.get("masked", "").split(",") if item
            ),
            approval=r.approval,
            receipt=answers.get((r.event_id, r.department)) if r.kind == "delivery" else None,
        )
        for r in records
        if r.kind == "delivery"
        or (r.kind == "query" and r.detail.get("status") == "200" and "reason" not in r.detail)
    ]
    return sorted(received, key=lambda d: (d.at_ms, d.department), reverse=True)
