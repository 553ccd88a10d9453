"""The medical insurance bureau's sink: ``deliver.medical_insurance.person`` enrols a
newborn once registered (城乡居民医保参保登记) and ends a deceased member's
insurance relationship.

An enrolment is driven by the household registration's own change, not by the birth
certificate: it can only ever follow the registration it refers to."""

from __future__ import annotations

import psycopg

from connectors.sinks.newborn import is_newborn
from connectors.subscriber import Delivery

PERSON_TOPIC = "deliver.medical_insurance.person"


def apply_person(conn: psycopg.Connection, delivery: Delivery) -> None:
    after = delivery.after or {}
    if is_newborn(delivery.kind, after, delivery.source_ts_ms):
        conn.execute(
            "INSERT INTO insured_member (member_no, id_no, name, status, enrolled_on, event_id)"
            " VALUES ('YBN' || lpad(nextval('insured_member_no')::text, 9, '0'), %s, %s,"
            "  'active', (to_timestamp(%s / 1000.0) AT TIME ZONE 'Asia/Shanghai')::date, %s)"
            " ON CONFLICT (id_no) DO NOTHING",
            (delivery.key, after.get("name") or "", delivery.source_ts_ms, delivery.event_id),
        )
        return
    if after.get("status") != "deceased":
        return
    conn.execute(
        "UPDATE insured_member SET status = 'terminated',"
        " terminated_on = COALESCE(%s::date,"
        "   (to_timestamp(%s / 1000.0) AT TIME ZONE 'Asia/Shanghai')::date),"
        " terminate_reason = %s"
        " WHERE id_no = %s AND status = 'active'",
        (
            after.get("death_date"),
            delivery.source_ts_ms,
            f"死亡 (event {delivery.event_id})",
            delivery.key,
        ),
    )


HANDLERS = {PERSON_TOPIC: apply_person}
