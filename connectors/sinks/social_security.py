"""The human-resources and social-security bureau's sink.

``deliver.social_security.enterprise``: a registered company's employer account opens
(参保登记); a deregistered company's closes.
``deliver.social_security.person``: a registered newborn's card is applied for; a
person's death stops their pension. The legacy
pension register still files people under 15-digit ID numbers, so the delivery's 18-digit
key is looked up by its legacy form and the match confirmed by converting back (GB 11643).
"""

from __future__ import annotations

import psycopg

from connectors.sinks.newborn import is_newborn
from connectors.subscriber import Delivery
from streams.model.standards import legacy_resident_id, normalize_resident_id

ENTERPRISE_TOPIC = "deliver.social_security.enterprise"
PERSON_TOPIC = "deliver.social_security.person"


def apply_enterprise(conn: psycopg.Connection, delivery: Delivery) -> None:
    if delivery.kind == "registered" and delivery.after:
        conn.execute(
            "INSERT INTO employer_account (account_no, uscc, name, status, opened_on)"
            " VALUES ('SBN' || lpad(nextval('employer_account_no')::text, 9, '0'), %s, %s, 'open',"
            "  (to_timestamp(%s / 1000.0) AT TIME ZONE 'Asia/Shanghai')::date)"
            " ON CONFLICT (uscc) DO NOTHING",
            (delivery.key, delivery.after.get("name"), delivery.source_ts_ms),
        )
        return
    if delivery.kind != "deregistered":
        return
    conn.execute(
        "UPDATE employer_account SET status = 'closed',"
        " closed_on = (to_timestamp(%s / 1000.0) AT TIME ZONE 'Asia/Shanghai')::date"
        " WHERE uscc = %s AND status = 'open'",
        (delivery.source_ts_ms, delivery.key),
    )


def apply_person(conn: psycopg.Connection, delivery: Delivery) -> None:
    """A newborn, once registered, gets a social security card application (社保卡申领,
    keyed by the ID: this subscription does not receive names). A death is state-based:
    whatever the kind (a snapshot may be the first news of it), the pension stops once."""
    after = delivery.after or {}
    if is_newborn(delivery.kind, after, delivery.source_ts_ms):
        conn.execute(
            "INSERT INTO card_application (id_no, status, applied_on, event_id)"
            " VALUES (%s, 'applied',"
            "  (to_timestamp(%s / 1000.0) AT TIME ZONE 'Asia/Shanghai')::date, %s)"
            " ON CONFLICT (id_no) DO NOTHING",
            (delivery.key, delivery.source_ts_ms, delivery.event_id),
        )
        return
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
