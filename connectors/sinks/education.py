"""The education bureau's sink: ``deliver.education.birth`` -> school-place forecast.

学位预测: every birth is a pupil six years on, so the bureau plans school places from the
births themselves rather than from a survey. It needs only when and which sex (最小必要):
no names, no parents.
"""

from __future__ import annotations

from datetime import date

import psycopg

from connectors.subscriber import Delivery
from streams.model.standards import local_day

BIRTH_TOPIC = "deliver.education.birth"
SCHOOL_YEAR_CUTOFF = (8, 31)  # a child six by 31 August starts school that September


def entry_year(born_on: date) -> int:
    """The September a child born that day starts primary school."""
    six = born_on.year + 6
    return six if (born_on.month, born_on.day) <= SCHOOL_YEAR_CUTOFF else six + 1


def apply_birth(conn: psycopg.Connection, delivery: Delivery) -> None:
    after = delivery.after or {}
    if delivery.kind != "registered" or not after.get("born_at"):
        return
    conn.execute(
        "INSERT INTO expected_pupil (certificate_no, entry_year, sex, event_id)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT (certificate_no) DO NOTHING",
        (
            delivery.key,
            entry_year(local_day(after["born_at"])),
            after.get("sex"),
            delivery.event_id,
        ),
    )


HANDLERS = {BIRTH_TOPIC: apply_birth}
