"""Person master data on the real stack: household registration (public security) is the
authoritative source; the legacy pension register keys people by 15-digit ID numbers and
joins them on the converted 18-digit key. A death reaches social security, which stops
the pension in the legacy register, and medical insurance, which ends the membership."""

from __future__ import annotations

import uuid
from datetime import date

from streams.contract.topics import QUALITY_TOPIC, changes_topic, master_topic
from streams.kafka.topic_reader import Record
from streams.model.standards import legacy_resident_id
from tests.integration.companies import WAIT, new_resident_id, wait_for
from tests.integration.conftest import Stack

CHANGES = changes_topic("person")
MASTER = master_topic("person")
SOCIAL = "deliver.social_security.person"
MEDICAL = "deliver.medical_insurance.person"
HOUSEHOLD = "public_security.person"
LEGACY = "social_security.person"


def of(records: list[Record], topic: str, key: str) -> list[Record]:
    return [r for r in records if r.topic == topic and r.key == key]


def birth_date(id18: str) -> date:
    return date(int(id18[6:10]), int(id18[10:12]), int(id18[12:14]))


def register_person(stack: Stack, id18: str, name: str) -> None:
    stack.sql(
        "public_security",
        "INSERT INTO household_registration (id_no, full_name, birth_date, domicile)"
        " VALUES (%s, %s, %s, '北京市海淀区学府路1号')",
        (id18, name, birth_date(id18)),
    )


def insure_legacy(stack: Stack, id18: str, name: str, born: date) -> str:
    legacy = legacy_resident_id(id18)
    assert legacy is not None and len(legacy) == 15
    stack.sql(
        "social_security",
        "INSERT INTO insured_person (person_no, id_no, name, birth_date, pension_status)"
        " VALUES (%s, %s, %s, %s, 'receiving')",
        (f"T{uuid.uuid4().hex[:12]}", legacy, name, born),
    )
    return legacy


def insure_medical(stack: Stack, id18: str, name: str) -> None:
    stack.sql(
        "medical_insurance",
        "INSERT INTO insured_member (member_no, id_no, name, enrolled_on)"
        " VALUES (%s, %s, %s, '2010-01-01')",
        (f"T{uuid.uuid4().hex[:12]}", id18, name),
    )


def test_a_death_stops_the_pension_and_ends_medical_insurance(stack: Stack) -> None:
    id18, name = new_resident_id(), f"测试{uuid.uuid4().hex[:4]}"
    start = stack.offsets(CHANGES, MASTER, QUALITY_TOPIC)
    register_person(stack, id18, name)
    legacy = insure_legacy(stack, id18, name, birth_date(id18))
    insure_medical(stack, id18, name)

    # The legacy record arrives keyed by the 18-digit number, beside the household one.
    records = stack.read_until(
        start,
        lambda rs: {r.value["source"] for r in of(rs, CHANGES, id18) if r.value}
        == {HOUSEHOLD, LEGACY}
        and bool(of(rs, MASTER, id18)),
        timeout=WAIT,
    )
    [master] = [r.value for r in of(records, MASTER, id18)]
    assert master is not None
    assert master["resident_id"] == id18
    assert master["name"] == name
    assert master["status"] == "registered"
    assert of(records, QUALITY_TOPIC, id18) == []  # the two agree

    start = stack.offsets(SOCIAL, MEDICAL)
    stack.sql(
        "public_security",
        "UPDATE household_registration SET hukou_status = '2', death_date = '2026-11-20',"
        " updated_at = now() WHERE id_no = %s",
        (id18,),
    )
    records = stack.read_until(
        start, lambda rs: all(of(rs, t, id18) for t in (SOCIAL, MEDICAL)), timeout=WAIT
    )
    for topic in (SOCIAL, MEDICAL):
        [delivery] = [r.value for r in of(records, topic, id18)]
        assert delivery is not None
        assert delivery["kind"] == "deregistered", topic
        assert delivery["changed_fields"] == ["status", "death_date"]
        # Social security's subscription drops the name: it joins on the ID.
        named = {"name": name} if topic == MEDICAL else {}
        assert delivery["after"] == {
            "resident_id": id18,
            **named,
            "status": "deceased",
            "death_date": "2026-11-20",
            "birth_date": birth_date(id18).isoformat(),
        }
        assert delivery["source"] == HOUSEHOLD

    def pension_stopped() -> bool:
        rows = stack.sql(
            "social_security",
            "SELECT pension_status, pension_stopped_on FROM insured_person WHERE id_no = %s",
            (legacy,),
        )
        return rows == [("stopped", date(2026, 11, 20))]

    def membership_ended() -> bool:
        rows = stack.sql(
            "medical_insurance",
            "SELECT status, terminated_on FROM insured_member WHERE id_no = %s",
            (id18,),
        )
        return rows == [("terminated", date(2026, 11, 20))]

    wait_for(pension_stopped, f"social security to stop the pension of legacy {legacy}")
    wait_for(membership_ended, f"medical insurance to end the membership of {id18}")


def test_a_legacy_record_that_disagrees_is_a_quality_finding_not_master(stack: Stack) -> None:
    id18, name = new_resident_id(), f"测试{uuid.uuid4().hex[:4]}"
    wrong_birth = birth_date(id18).replace(day=1 if birth_date(id18).day != 1 else 2)
    start = stack.offsets(MASTER, QUALITY_TOPIC)
    insure_legacy(stack, id18, name, wrong_birth)
    register_person(stack, id18, name)

    records = stack.read_until(
        start,
        lambda rs: bool(of(rs, QUALITY_TOPIC, id18)) and bool(of(rs, MASTER, id18)),
        timeout=WAIT,
    )
    [finding] = [r.value for r in of(records, QUALITY_TOPIC, id18)]
    assert finding is not None
    assert finding["entity"] == "person"
    assert finding["field"] == "birth_date"
    assert (finding["authoritative_source"], finding["authoritative_value"]) == (
        HOUSEHOLD,
        birth_date(id18).isoformat(),
    )
    assert (finding["other_source"], finding["other_value"]) == (LEGACY, wrong_birth.isoformat())
    [master] = [r.value for r in of(records, MASTER, id18)]
    assert master is not None
    assert master["birth_date"] == birth_date(id18).isoformat()
