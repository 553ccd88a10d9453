"""The human-resources and social-security bureau's sink.

``deliver.social_security.enterprise``: a deregistered company's employer account closes.
``deliver.social_security.person``: a person's death stops their pension. The legacy
pension register still files people under 15-digit ID numbers, so the delivery's 18-digit
key is looked up by its legacy form and the match confirmed by converting back (GB 11643).
"""

from __future__ import annotations

import psycopg

from connectors.subscriber import Delivery
from streams.model.standards import legacy_resident_id, normalize_resident_id

ENTERPRISE_TOPIC = "deliver.social_security.enterprise"
PERSON_TOPIC = "deliver.social_security.person"


def apply_enterprise(conn: psycopg.Connection, delivery: Delivery) -> None:
    if delivery.kind != "deregistered":
        return
    conn.execute(
        "UPDATE employer_account SET status = 'closed',"
        " closed_on = (to_timestamp(%s / 1000.0) AT TIME ZONE 'Asia/Shanghai')::date"
        " WHERE uscc = %s AND status = 'open'",
        (delivery.source_ts_ms, delivery.key),
    )


def apply_person(conn: psycopg.Connection, delivery: Delivery) -> None:
    """State-based: whatever the kind (a snapshot may be the first news of a death), a
    deceased person's pension stops once."""
    after = delivery.after or {}
    if after.get("status") != "deceased":
        return
    legacy = legacy_resident_id(delivery.key)
    if legacy is None:
        return
    row = conn.execute(
        "SELECT person_no, id_no FROM insured_person WHERE id_no = %s", (legacy,)
    ).fetchone()
    if row is None or normalize_resident_id(row[1]) != delivery.key:
        return
    conn.execute(
        "UPDATE insured_person SET pension_status = 'stopped',"
        " pension_stopped_on = COALESCE(%s::date,"
        "   (to_timestamp(%s / 1000.0) AT TIME ZONE 'Asia/Shanghai')::date),"
        " stop_reason = %s, updated_at = now()"
        " WHERE person_no = %s AND pension_status <> 'stopped'",
        (
            after.get("death_date"),
            delivery.source_ts_ms,
            f"死亡 (event {delivery.event_id})",
            row[0],
        ),
    )


HANDLERS = {ENTERPRISE_TOPIC: apply_enterprise, PERSON_TOPIC: apply_person}
