"""The audit trail's hash chain: sealing, resuming, and finding each kind of tampering."""

from __future__ import annotations

import hashlib
import io
import json
from itertools import pairwise
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from govsync.control.schema_files import SCHEMAS_DIR
from streams.contract.records import AUDIT_KINDS, AuditRecord
from streams.contract.schemas import audit_schema, schema_files
from streams.trail.audit import (
    GENESIS,
    Chain,
    ChainWalk,
    Resume,
    Tampering,
    VerifyReport,
    record_hash,
    verify,
)
from tests.unit.examples import STATE, TOPOLOGY

APPROVAL = {
    "by": "大数据局 王五",
    "at": "2026-01-05",
    "purpose": "税务登记信息核验",
    "legal_basis": "《税收征收管理法》第十五条",
    "expires": "2027-01-05",
}


def _values(i: int) -> tuple[Any, int, str, dict[str, Any]]:
    """The i-th event of a plausible trail: deliveries, receipts, now and then a change."""
    at_ms = 1_795_000_000_000 + i * 1_000
    event_id = f"7f1c2a3e-0000-5000-8000-{i:012d}"
    common = {"entity": "enterprise", "entity_key": STATE["uscc"], "subscription": "tax.enterprise"}
    if i % 50 == 49:
        return "topology_change", at_ms, "admin", {"detail": {"version": str(i)}}
    if i % 50 == 48:
        return "replay", at_ms, "admin", {**common, "detail": {"replay": f"r{i}"}}
    if i % 2:
        detail = {"outcome": "applied", "topic": "deliver.tax.enterprise", "offset": str(i)}
        return "receipt", at_ms, "tax", {**common, "event_id": event_id, "detail": detail}
    return (
        "delivery",
        at_ms,
        "worker",
        {
            **common,
            "event_id": event_id,
            "department": "tax",
            "fields": ["uscc", "name", "status"],
            "approval": APPROVAL,
            "detail": {"topic": "deliver.tax.enterprise", "partition": "0", "offset": str(i)},
        },
    )


def _build(
    n: int, every: int = 100, chain: Chain | None = None, start: int = 0
) -> list[AuditRecord]:
    chain = chain or Chain(checkpoint_every=every)
    records: list[AuditRecord] = []
    for i in range(start, start + n):
        kind, at_ms, actor, values = _values(i)
        records += chain.append(kind, at_ms, actor, **values)
    return records


def _at(records: list[AuditRecord]) -> list[tuple[int, AuditRecord]]:
    """Offsets as Kafka gives them on a transactional topic: not dense (commit markers)."""
    return [(_offset(i), record) for i, record in enumerate(records)]


def _offset(index: int) -> int:
    return 1_000 + 2 * index


def _rehashed(record: AuditRecord, **update: Any) -> AuditRecord:
    altered = record.model_copy(update=update)
    return altered.model_copy(update={"sha256": record_hash(altered.prev_sha256, altered.body())})


def _problems(records: list[AuditRecord]) -> list[tuple[str, int, int]]:
    return [(f.problem, f.offset, f.seq) for f in verify(_at(records)).findings]


LONG = _build(2_500)
SHORT = _build(30, every=5)  # 36 records, checkpoints at seq 5, 11, 17, 23, 29, 35


def test_intact_chain_with_checkpoints_verifies() -> None:
    report = verify(_at(LONG))
    assert report.intact, report.findings
    assert (report.records, report.checkpoints) == (2_525, 25)
    assert report.head_sha256 == LONG[-1].sha256
    assert [r.seq for r in LONG] == list(range(2_525))


def test_empty_trail_is_intact_at_genesis() -> None:
    report = verify([])
    assert report.intact
    assert (report.records, report.checkpoints, report.head_sha256) == (0, 0, GENESIS)


def test_records_are_sealed_onto_the_chain() -> None:
    assert LONG[0].prev_sha256 == GENESIS
    for previous, record in pairwise(LONG):
        assert record.prev_sha256 == previous.sha256
    for record in LONG[:200]:
        assert record.sha256 == record_hash(record.prev_sha256, record.body())
        assert "sha256" not in record.body()


_TEXT = st.text(st.characters(codec="utf-8"))


@settings(max_examples=300)
@given(
    text=_TEXT,
    detail=st.dictionaries(_TEXT, _TEXT, max_size=4),
    fields=st.lists(_TEXT, max_size=4),
    seq=st.integers(0, 2**63 - 1),
)
def test_the_hash_is_over_the_json_it_always_was(
    text: str, detail: dict[str, str], fields: list[str], seq: int
) -> None:
    """Records sealed before orjson were hashed over json.dumps' canonical form; every
    one of them must still verify, so both must write the same bytes."""
    body = {"seq": seq, "actor": text, "detail": detail, "fields": fields, "approval": APPROVAL}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    expected = hashlib.sha256(GENESIS.encode() + canonical.encode()).hexdigest()
    assert record_hash(GENESIS, body) == expected


def test_a_checkpoint_follows_every_n_records_with_count_and_head() -> None:
    checkpoints = [r for r in LONG if r.kind == "checkpoint"]
    assert [r.seq for r in checkpoints] == [100 + 101 * k for k in range(25)]
    first = LONG[100]
    assert first.detail == {"count": "100", "head": LONG[99].sha256}
    assert first.actor == "govsync"
    assert first.at_ms == LONG[99].at_ms


def test_hash_is_canonical_and_covers_the_link_and_the_position() -> None:
    record = LONG[10]
    body = record.body()
    assert record_hash(record.prev_sha256, dict(reversed(body.items()))) == record.sha256
    assert record_hash(GENESIS, body) != record.sha256
    assert record_hash(record.prev_sha256, {**body, "seq": 11}) != record.sha256
    assert record_hash(record.prev_sha256, {**body, "prev_sha256": GENESIS}) != record.sha256


def test_append_refuses_checkpoints_and_a_chain_needs_a_rhythm() -> None:
    with pytest.raises(ValueError, match="checkpoints"):
        Chain().append("checkpoint", 0, "admin")
    with pytest.raises(ValueError, match="checkpoint_every"):
        Chain(checkpoint_every=0)


@pytest.mark.parametrize(
    "update",
    [
        {"fields": ["uscc", "name", "status", "legal_rep_id"]},
        {"approval": {**APPROVAL, "purpose": "其他用途"}},
        {"approval": {}},
        {"detail": {"topic": "deliver.tax.enterprise", "partition": "0", "offset": "9"}},
        {"at_ms": 1_795_000_000_001},
        {"actor": "social_security"},
        {"department": "social_security"},
        {"entity_key": "91310000MA1FL8XQ31"},
        {"event_id": None},
        {"kind": "topology_change"},
        {"seq": 1_234},
        {"prev_sha256": "f" * 64},
        {"sha256": "e" * 64},
    ],
)
def test_altering_one_field_of_one_record_is_found_there(update: dict[str, Any]) -> None:
    assert LONG[1_001].kind == "delivery"
    records = list(LONG)
    records[1_001] = records[1_001].model_copy(update=update)
    assert records[1_001] != LONG[1_001]
    assert _problems(records) == [("altered", _offset(1_001), 1_001)]


def test_altering_a_checkpoint_is_found_there() -> None:
    records = list(LONG)
    records[100] = records[100].model_copy(update={"detail": {"count": "99", "head": GENESIS}})
    assert _problems(records) == [("altered", _offset(100), 100)]


def test_a_rehashed_alteration_breaks_the_next_link() -> None:
    records = list(LONG)
    records[1_000] = _rehashed(records[1_000], approval={**APPROVAL, "expires": "2099-12-31"})
    [finding] = verify(_at(records)).findings
    assert (finding.problem, finding.offset, finding.seq) == ("altered", _offset(1_001), 1_001)
    assert "seq 1000" in finding.message


def test_a_rehashed_checkpoint_with_a_wrong_count_is_found() -> None:
    records = _build(10, every=10)
    assert records[-1].kind == "checkpoint"
    records[-1] = _rehashed(records[-1], detail={**records[-1].detail, "count": "9"})
    [finding] = verify(_at(records)).findings
    assert (finding.problem, finding.seq) == ("altered", 10)
    assert "checkpoint count '9'" in finding.message


def test_a_rehashed_last_record_shows_only_against_a_published_head() -> None:
    """The chain's limit: nothing follows the last record, so only an anchored head helps."""
    records = [*SHORT[:-1], _rehashed(SHORT[-1], at_ms=0)]
    report = verify(_at(records))
    assert report.intact
    assert report.head_sha256 != SHORT[-1].sha256


def test_removing_one_record_is_found_at_its_seq() -> None:
    records = LONG[:1_000] + LONG[1_001:]
    [finding] = verify(_at(records)).findings
    assert (finding.problem, finding.offset, finding.seq) == ("removed", _offset(1_000), 1_000)
    assert finding.message == "1 record(s) missing between seq 999 and seq 1001"


def test_removing_the_last_but_one_record_is_found() -> None:
    records = LONG[:-2] + LONG[-1:]
    assert _problems(records) == [("removed", _offset(2_523), 2_523)]


def test_removing_the_first_records_is_found() -> None:
    [finding] = verify(_at(LONG[2:])).findings
    assert (finding.problem, finding.offset, finding.seq) == ("removed", _offset(0), 0)
    assert finding.message == "2 record(s) missing between the start of the chain and seq 2"


def test_removing_a_run_including_a_checkpoint_is_one_finding() -> None:
    records = LONG[:95] + LONG[105:]
    [finding] = verify(_at(records)).findings
    assert (finding.problem, finding.seq) == ("removed", 95)
    assert finding.message.startswith("10 record(s) missing between seq 94 and seq 105")


@pytest.mark.parametrize("index", [0, 99, 100, 1_000, 2_523])
def test_swapping_two_adjacent_records_is_one_reordering(index: int) -> None:
    records = list(LONG)
    records[index], records[index + 1] = records[index + 1], records[index]
    [finding] = verify(_at(records)).findings
    assert finding.problem == "reordered"
    assert {finding.seq} < {index, index + 1}
    assert finding.offset in {_offset(index), _offset(index + 1)}


def test_a_record_moved_later_is_one_reordering() -> None:
    records = LONG[:500] + LONG[501:600] + [LONG[500]] + LONG[600:]
    [finding] = verify(_at(records)).findings
    assert (finding.problem, finding.offset, finding.seq) == ("reordered", _offset(599), 500)
    assert "arrives after seq 599" in finding.message


def test_a_record_moved_earlier_is_one_reordering() -> None:
    records = [*LONG[:500], LONG[600], *LONG[500:600], *LONG[601:]]
    [finding] = verify(_at(records)).findings
    assert (finding.problem, finding.offset, finding.seq) == ("reordered", _offset(500), 600)
    assert "appears before seq 500" in finding.message


def test_a_duplicate_is_found_where_it_repeats() -> None:
    records = [*LONG[:1_001], LONG[1_000], *LONG[1_001:]]
    [finding] = verify(_at(records)).findings
    assert (finding.problem, finding.offset, finding.seq) == ("duplicated", _offset(1_001), 1_000)


def test_a_duplicate_far_later_or_ahead_of_its_place_is_found() -> None:
    later = [*LONG[:1_500], LONG[1_000], *LONG[1_500:]]
    assert _problems(later) == [("duplicated", _offset(1_500), 1_000)]
    ahead = [*LONG[:900], LONG[1_000], *LONG[900:]]
    assert _problems(ahead) == [("duplicated", _offset(900), 1_000)]


def test_a_forged_record_reusing_a_seq_is_altered() -> None:
    forged = _rehashed(LONG[1_000], actor="forger")
    records = [*LONG[:1_500], forged, *LONG[1_500:]]
    assert _problems(records) == [("altered", _offset(1_500), 1_000)]


def test_duplicates_beyond_the_window_are_still_reported() -> None:
    records = [*LONG[:2_000], LONG[10], *LONG[2_000:]]
    [finding] = verify(_at(records), window=100).findings
    assert (finding.problem, finding.seq) == ("duplicated", 10)


def test_independent_tamperings_are_each_found_once() -> None:
    records = list(LONG)
    records[300] = records[300].model_copy(update={"actor": "forger"})
    records[1_200], records[1_201] = records[1_201], records[1_200]
    records = records[:2_000] + records[2_001:]
    problems = [(problem, seq) for problem, _, seq in _problems(records)]
    assert problems == [("altered", 300), ("reordered", 1_201), ("removed", 2_000)]


@pytest.mark.parametrize("split", [0, 1, 99, 100, 1_234])
def test_a_resumed_chain_continues_seamlessly(split: int) -> None:
    first = _build(split)
    resumed = Chain.resume(first[-1] if first else None, checkpoint_every=100)
    records = first + _build(2_500 - split, chain=resumed, start=split)
    assert records == LONG
    assert verify(_at(records)).intact


def test_resuming_after_a_checkpoint() -> None:
    assert LONG[201].kind == "checkpoint"
    resumed = Chain.resume(LONG[201], checkpoint_every=100)
    assert (resumed.head_sha256, resumed.next_seq) == (LONG[201].sha256, 202)
    assert _build(5, chain=resumed, start=200) == LONG[202:207]


def _avro_round_trip(record: AuditRecord) -> AuditRecord:
    parsed = fastavro.parse_schema(audit_schema())
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, parsed, record.model_dump())
    buffer.seek(0)
    return AuditRecord.model_validate(fastavro.schemaless_reader(buffer, parsed))


@pytest.mark.parametrize("index", [0, 1, 48, 49, 100])
def test_avro_round_trip_keeps_the_record_and_its_hash(index: int) -> None:
    record = LONG[index]
    read = _avro_round_trip(record)
    assert read == record
    assert record_hash(read.prev_sha256, read.body()) == record.sha256


def test_audit_schema_holds_every_field_and_is_generated() -> None:
    schema = audit_schema()
    assert (schema["namespace"], schema["name"]) == ("govsync.audit", "AuditRecord")
    assert [field["name"] for field in schema["fields"]] == list(AuditRecord.model_fields)
    kind = next(field for field in schema["fields"] if field["name"] == "kind")
    assert kind["type"]["symbols"] == AUDIT_KINDS
    assert json.loads(schema_files(TOPOLOGY)["audit.avsc"]) == schema
    assert (SCHEMAS_DIR / "audit.avsc").read_text(encoding="utf-8") == schema_files(TOPOLOGY)[
        "audit.avsc"
    ]


_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "seq": st.integers(-(2**63), 2**63 - 1),
    "kind": st.sampled_from(AUDIT_KINDS),
    "at_ms": st.integers(-(2**63), 2**63 - 1),
    "actor": _TEXT,
    "event_id": st.none() | _TEXT,
    "entity": st.none() | _TEXT,
    "entity_key": st.none() | _TEXT,
    "department": st.none() | _TEXT,
    "subscription": st.none() | _TEXT,
    "fields": st.lists(_TEXT, max_size=4),
    "approval": st.dictionaries(_TEXT, _TEXT, max_size=4),
    "detail": st.dictionaries(_TEXT, _TEXT, max_size=4),
    "prev_sha256": _TEXT | st.text("0123456789abcdef", min_size=64, max_size=64),
    "sha256": _TEXT | st.text("0123456789abcdef", min_size=64, max_size=64),
}
assert set(_VALUES) == set(AuditRecord.model_fields)


@st.composite
def _alteration(draw: st.DrawFn, fields: list[str], last: int) -> tuple[int, str, Any]:
    index = draw(st.integers(0, last))
    name = draw(st.sampled_from(fields))
    value = draw(_VALUES[name].filter(lambda v: v != getattr(SHORT[index], name)))
    return index, name, value


@settings(deadline=None)  # verifies a whole chain per example: slow under CI load
@given(_alteration(list(_VALUES), last=len(SHORT) - 1))
def test_any_single_record_alteration_is_detected_there(alteration: tuple[int, str, Any]) -> None:
    index, name, value = alteration
    records = list(SHORT)
    records[index] = records[index].model_copy(update={name: value})
    assert _problems(records) == [("altered", _offset(index), index)]


@settings(deadline=None)
@given(_alteration([name for name in _VALUES if name != "sha256"], last=len(SHORT) - 2))
def test_any_rehashed_alteration_before_the_end_is_detected(
    alteration: tuple[int, str, Any],
) -> None:
    index, name, value = alteration
    records = list(SHORT)
    records[index] = _rehashed(records[index], **{name: value})
    findings: list[Tampering] = verify(_at(records)).findings
    assert findings
    assert {f.offset for f in findings} <= {_offset(index), _offset(index + 1)}


def test_an_optional_field_added_later_leaves_earlier_hashes_valid() -> None:
    """Empty values are not hashed: a record written before a field existed and read back
    with it at its default still has the same body, so old chains keep verifying."""
    (record,) = Chain().append("receipt", 1, "tax", event_id="e1")
    assert "fields" not in record.body() and "department" not in record.body()
    assert record_hash(record.prev_sha256, record.body()) == record.sha256


# --- walking from a checkpoint (audit verify --incremental) -------------------------------


def _walk(records: list[tuple[int, AuditRecord]], resume: Resume | None = None) -> VerifyReport:
    walk = ChainWalk(resume=resume)
    for offset, record in records:
        walk.feed(offset, record)
    return walk.report()


def test_a_walk_remembers_the_last_checkpoint_it_found_intact_up_to() -> None:
    report = _walk(_at(SHORT))
    assert report.intact and report.checkpoint is not None
    last = max(i for i, r in enumerate(SHORT) if r.kind == "checkpoint")
    assert report.checkpoint == Resume(
        offset=_offset(last), seq=SHORT[last].seq, prev_sha256=SHORT[last].prev_sha256
    )


def test_no_checkpoint_is_remembered_past_a_finding() -> None:
    tampered = [*SHORT]
    tampered[2] = tampered[2].model_copy(update={"actor": "someone"})
    report = _walk(_at(tampered))
    assert not report.intact and report.checkpoint is None


def test_a_walk_from_a_checkpoint_reads_only_the_rest_and_still_finds_tampering() -> None:
    at = _at(SHORT)
    checkpoint = _walk(at[:20]).checkpoint  # checkpoints at indexes 5, 11, 17
    assert checkpoint is not None and checkpoint.offset == _offset(17)
    rest = at[17:]
    resumed = _walk(rest, checkpoint)
    assert resumed.intact and resumed.records == len(rest)
    assert (resumed.from_offset, resumed.head_sha256) == (_offset(17), SHORT[-1].sha256)
    altered = [*rest]
    altered[4] = (altered[4][0], altered[4][1].model_copy(update={"actor": "someone"}))
    assert [f.problem for f in _walk(altered, checkpoint).findings] == ["altered"]
    # A tail that no longer starts at the checkpoint's link is caught at once.
    assert not _walk(at[18:], checkpoint).intact


# --- against a witness ---------------------------------------------------------------------


def _testimony(records: list[AuditRecord]) -> dict[int, str]:
    """What a witness saw: every checkpoint's seq and hash."""
    return {r.seq: r.sha256 for r in records if r.kind == "checkpoint"}


def _walked(records: list[AuditRecord], witnessed: dict[int, str]) -> list[tuple[str, int]]:
    walk = ChainWalk(witnessed=witnessed)
    for offset, record in _at(records):
        walk.feed(offset, record)
    return [(f.problem, f.seq) for f in walk.report().findings]


def test_a_chain_as_the_witness_saw_it_is_intact() -> None:
    assert _walked(SHORT, _testimony(SHORT)) == []
    # A chain that grew since the witness last looked is intact too.
    assert _walked(SHORT, _testimony(SHORT[:20])) == []


def test_a_tail_cut_off_is_named_against_the_witness() -> None:
    """Verified alone, a chain cut after seq 19 is intact; the witness saw seq 23 and more."""
    cut = SHORT[:20]
    assert verify(_at(cut)).intact
    assert _walked(cut, _testimony(SHORT)) == [("truncated", 20)]


def test_a_tail_rewritten_and_hashed_again_is_named_against_the_witness() -> None:
    """A record changed at seq 14 and every later one re-hashed: a walk alone finds the
    new chain intact; its checkpoints from seq 17 on differ from the witness's."""
    forged = list(SHORT[:14])
    chain = Chain(forged[-1].sha256, 14, checkpoint_every=5)
    for record in SHORT[14:]:
        if record.kind == "checkpoint":
            continue
        actor = "forger" if record.seq == 14 else record.actor
        forged += chain.append(record.kind, record.at_ms, actor, event_id=record.event_id)
    assert verify(_at(forged)).intact
    findings = _walked(forged, _testimony(SHORT))
    assert findings and {problem for problem, _ in findings} == {"rehashed"}
    assert findings[0] == ("rehashed", 17)


def test_an_incremental_walk_checks_only_the_testimony_after_its_start() -> None:
    testimony = _testimony(SHORT)
    start = next(r for r in SHORT if r.kind == "checkpoint" and r.seq == 17)
    offset = _offset(SHORT.index(start))
    walk = ChainWalk(
        resume=Resume(offset=offset, seq=17, prev_sha256=start.prev_sha256), witnessed=testimony
    )
    for at, record in _at(SHORT):
        if at >= offset:
            walk.feed(at, record)
    assert walk.report().intact
