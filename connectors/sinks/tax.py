"""The tax bureau's sink: ``deliver.tax.enterprise`` -> the tax database.

A deregistered company's taxpayer row is marked deregistered and its pending tax
reminders are cancelled — the headline scenario closes in a real database.
"""

from __future__ import annotations

import psycopg

from connectors.subscriber import Delivery

TOPIC = "deliver.tax.enterprise"
NEW_TAXPAYER_OFFICE = "待分配"  # assigned by the bureau after registration


def apply_enterprise(conn: psycopg.Connection, delivery: Delivery) -> None:
    kind, uscc, after = delivery.kind, delivery.key, delivery.after or {}
    if kind == "deregistered":
        conn.execute(
            "UPDATE taxpayer SET status = 'deregistered',"
            " deregistered_at = to_timestamp(%s / 1000.0), updated_at = now() WHERE uscc = %s",
            (delivery.source_ts_ms, uscc),
        )
        conn.execute(
            "UPDATE tax_reminder SET state = 'cancelled', cancelled_reason = %s, updated_at = now()"
            " WHERE uscc = %s AND state = 'pending'",
            (f"企业已注销 (event {delivery.event_id})", uscc),
        )
    elif kind in ("registered", "snapshot", "updated") and after:
        conn.execute(
            "INSERT INTO taxpayer (uscc, name, status, tax_office, registered_on)"
            " VALUES (%(uscc)s, %(name)s, COALESCE(%(status)s, 'active'), %(office)s, current_date)"
            " ON CONFLICT (uscc) DO UPDATE SET"
            "  name = COALESCE(EXCLUDED.name, taxpayer.name),"
            "  status = COALESCE(%(status)s, taxpayer.status),"
            # A company back in business (e.g. a revoked deregistration) is no longer closed.
            "  deregistered_at = CASE WHEN COALESCE(%(status)s, taxpayer.status) = 'deregistered'"
            "    THEN taxpayer.deregistered_at END,"
            "  updated_at = now()",
            {
                "uscc": uscc,
                "name": after.get("name"),
                "status": after.get("status"),
                "office": NEW_TAXPAYER_OFFICE,
            },
        )
    # "deleted": the source row is gone; the bureau keeps its own records, the inbox notes it.


HANDLERS = {TOPIC: apply_enterprise}
