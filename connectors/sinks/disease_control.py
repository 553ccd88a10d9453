"""Disease control's sink: ``deliver.disease_control.birth`` -> vaccination records.

预防接种证: a newborn's vaccination card is opened from the birth certificate, with the
doses due at birth and in the first month (hepatitis B and BCG), so the clinic calls the
family without their having to register the child themselves.
"""

from __future__ import annotations

from datetime import timedelta

import psycopg

from connectors.subscriber import Delivery
from streams.model.standards import local_day

BIRTH_TOPIC = "deliver.disease_control.birth"
# (vaccine, dose, days after birth): the national immunization schedule's first doses.
FIRST_DOSES = (("乙肝疫苗", 1, 0), ("卡介苗", 1, 0), ("乙肝疫苗", 2, 30))


def apply_birth(conn: psycopg.Connection, delivery: Delivery) -> None:
    after = delivery.after or {}
    if delivery.kind != "registered" or not after.get("born_at"):
        return
    certificate, born_on = delivery.key, local_day(after["born_at"])
    conn.execute(
        "INSERT INTO vaccination_card (certificate_no, child_name, born_at, hospital, event_id)"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (certificate_no) DO NOTHING",
        (
            certificate,
            after.get("child_name"),
            after["born_at"],
            after.get("hospital"),
            delivery.event_id,
        ),
    )
    with conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO vaccination_due (certificate_no, vaccine, dose, due_on)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
            [
                (certificate, vaccine, dose, born_on + timedelta(days=days))
                for vaccine, dose, days in FIRST_DOSES
            ],
        )


HANDLERS = {BIRTH_TOPIC: apply_birth}
