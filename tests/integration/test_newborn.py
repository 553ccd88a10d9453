"""Newborn (出生一件事): the hospital's birth certificate (health, MariaDB) reaches public
security, which registers the child under a newly issued resident ID; that registration,
captured as the authoritative person change, enrols the child at medical insurance and
applies for its social security card; disease control opens its vaccination card and tax
pre-fills the parents' infant-care deduction; education expects a pupil in six years.
Eight departments with the data authority, one certificate."""

from __future__ import annotations

import uuid
from datetime import date

import pymysql
import pytest

from connectors.sinks.disease_control import FIRST_DOSES
from connectors.sinks.tax import INFANT_CARE_MONTHLY
from streams.config import mariadb
from streams.contract.topics import changes_topic
from streams.model.standards import normalize_resident_id, resident_id_check_digit
from tests.integration.companies import WAIT, wait_for
from tests.integration.conftest import Stack

pytestmark = pytest.mark.stack

BIRTH_DELIVERIES = (
    "deliver.public_security.birth",
    "deliver.disease_control.birth",
    "deliver.tax.birth",
    "deliver.education.birth",
)
PERSON_DELIVERIES = ("deliver.medical_insurance.person", "deliver.social_security.person")


def resident(stack: Stack, *, male: bool) -> str:
    """A living registered resident of the seed (GB 11643: the 17th digit's parity is sex)."""
    rows = stack.sql(
        "public_security",
        "SELECT id_no FROM household_registration WHERE hukou_status = '1'"
        " AND substr(id_no, 17, 1) = ANY(%s) AND birth_certificate_no IS NULL"
        " ORDER BY random() LIMIT 1",
        (list("13579" if male else "02468"),),
    )
    return str(rows[0][0])


def issue_certificate(stack: Stack, mother: str, father: str, born_at: str) -> str:
    certificate_no = f"Q{uuid.uuid4().int % 10**12:012d}"
    with (
        pymysql.connect(**mariadb.connection_args(stack.settings, "health")) as conn,
        conn.cursor() as cursor,
    ):
        cursor.execute(
            "INSERT INTO birth_certificate (certificate_no, child_name, sex, born_at,"
            " mother_id, father_id, hospital) VALUES (%s, '新生测试', '1', %s, %s, %s,"
            " '北京大学第三医院')",
            (certificate_no, born_at, mother, father),
        )
        conn.commit()
    return certificate_no


def test_a_birth_certificate_registers_the_child_and_reaches_every_department(
    stack: Stack,
) -> None:
    mother, father = resident(stack, male=False), resident(stack, male=True)
    start = stack.offsets(*BIRTH_DELIVERIES, *PERSON_DELIVERIES, changes_topic("person"))
    # Half past midnight in Beijing: the day of birth is the 2nd, in UTC still the 1st.
    certificate = issue_certificate(stack, mother, father, "2026-12-02 00:30:00.250")

    records = stack.read_until(
        start,
        lambda rs: {r.topic for r in rs if r.key == certificate} >= set(BIRTH_DELIVERIES),
        timeout=WAIT,
    )
    for topic in BIRTH_DELIVERIES:
        [delivery] = [r.value for r in records if r.topic == topic and r.key == certificate]
        assert delivery is not None and delivery["kind"] == "registered", topic
        assert delivery["after"]["born_at"] == "2026-12-01T16:30:00.250000Z", topic

    def registered() -> list[tuple]:
        return stack.sql(
            "public_security",
            "SELECT id_no, birth_date, domicile, updated_at FROM household_registration"
            " WHERE birth_certificate_no = %s",
            (certificate,),
        )

    wait_for(lambda: bool(registered()), f"public security to register {certificate}")
    [(child, born_on, domicile, registered_at)] = registered()
    assert normalize_resident_id(child) == child  # a valid GB 11643 number
    assert born_on == date(2026, 12, 2) and child[6:14] == "20261202"
    assert int(child[16]) % 2 == 1  # a boy
    [(mothers_home,)] = stack.sql(
        "public_security", "SELECT domicile FROM household_registration WHERE id_no = %s", (mother,)
    )
    assert domicile == mothers_home and child[:6] == mother[:6]

    # The registration is the person change the other departments act on.
    records = stack.read_until(
        start,
        lambda rs: {r.topic for r in rs if r.key == child} >= set(PERSON_DELIVERIES),
        timeout=WAIT,
    )
    [person] = [r.value for r in records if r.topic == changes_topic("person") and r.key == child]
    assert person is not None and person["source"] == "public_security.person"
    assert person["kind"] == "registered"

    def enrolled() -> list[tuple]:
        return stack.sql(
            "medical_insurance",
            "SELECT status, event_id::text, enrolled_at FROM insured_member WHERE id_no = %s",
            (child,),
        )

    wait_for(lambda: bool(enrolled()), f"medical insurance to enrol {child}")
    [(status, enrolment_event, enrolled_at)] = enrolled()
    # Never before the registration it refers to: the enrolment is the registration's own
    # change, applied after the registration committed.
    assert status == "active"
    assert enrolment_event == person["event_id"]
    assert enrolled_at >= registered_at

    def carded() -> bool:
        sql = "SELECT 1 FROM card_application WHERE id_no = %s"
        return bool(stack.sql("social_security", sql, (child,)))

    wait_for(carded, f"social security to apply for {child}'s card")
    wait_for(
        lambda: len(
            stack.sql(
                "disease_control",
                "SELECT 1 FROM vaccination_due WHERE certificate_no = %s",
                (certificate,),
            )
        )
        == len(FIRST_DOSES),
        f"disease control to open {certificate}'s vaccination card",
    )

    def deductions() -> dict[str, int]:
        return dict(
            stack.sql(
                "tax",
                "SELECT parent_id, monthly_amount FROM infant_care_deduction"
                " WHERE certificate_no = %s",
                (certificate,),
            )
        )

    def expected() -> list[tuple]:
        return stack.sql(
            "education",
            "SELECT entry_year, sex FROM expected_pupil WHERE certificate_no = %s",
            (certificate,),
        )

    # Born 2 December 2026 (Beijing): six on 2 December 2032, after the 31 August cutoff.
    wait_for(lambda: bool(expected()), f"education to expect {certificate}'s pupil")
    assert expected() == [(2033, "male")]
    wait_for(lambda: len(deductions()) == 2, "tax to pre-fill both parents' deductions")
    assert deductions() == {mother: INFANT_CARE_MONTHLY // 2, father: INFANT_CARE_MONTHLY // 2}


def test_a_birth_whose_mother_is_not_registered_is_refused_with_its_reason(stack: Stack) -> None:
    start = stack.offsets("deliver.public_security.birth")
    stranger = "11010119900101998"  # nobody the seed registers
    unknown_mother = stranger + resident_id_check_digit(stranger)
    certificate = issue_certificate(
        stack, unknown_mother, resident(stack, male=True), "2026-12-03 09:00:00.000"
    )
    stack.read_until(start, lambda rs: any(r.key == certificate for r in rs), timeout=WAIT)

    def refused() -> list[tuple]:
        return stack.sql(
            "public_security",
            "SELECT outcome, reason FROM govsync_inbox WHERE entity_key = %s",
            (certificate,),
        )

    wait_for(lambda: bool(refused()), f"public security to answer {certificate}")
    [(status, reason)] = refused()
    assert status == "rejected"
    assert unknown_mother in reason and "no active household registration" in reason
    assert not stack.sql(
        "public_security",
        "SELECT 1 FROM household_registration WHERE birth_certificate_no = %s",
        (certificate,),
    )
