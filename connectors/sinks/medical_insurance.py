"""The medical insurance bureau's sink: ``deliver.medical_insurance.person`` ends a
deceased member's insurance relationship."""

from __future__ import annotations

import psycopg

from connectors.subscriber import Delivery

PERSON_TOPIC = "deliver.medical_insurance.person"


def apply_person(conn: psycopg.Connection, delivery: Delivery) -> None:
    after = delivery.after or {}
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
