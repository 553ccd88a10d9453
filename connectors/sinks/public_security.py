"""Public security's sink: ``deliver.public_security.birth`` -> household registration,
``deliver.public_security.title`` -> the titles residents hold (for 落户).

出生登记: a newborn's birth certificate becomes a household registration under a newly
issued resident ID, in the mother's household. The new row is itself captured (public
security is the authoritative source of people), so every department subscribing to
people learns of the newborn from this registration, never before it.
"""

from __future__ import annotations

from datetime import date

import psycopg

from connectors.subscriber import Delivery, Rejected
from streams.model.standards import local_day, resident_id_check_digit

BIRTH_TOPIC = "deliver.public_security.birth"
TITLE_TOPIC = "deliver.public_security.title"


def issue_resident_id(conn: psycopg.Connection, division: str, born_on: date, sex: str) -> str:
    """The next free resident ID (GB 11643) for the division and day: the sequence number's
    last digit is odd for a male, even for a female."""
    prefix = f"{division}{born_on:%Y%m%d}"
    taken = {
        row[0][14:17]
        for row in conn.execute(
            "SELECT id_no FROM household_registration WHERE id_no LIKE %s FOR UPDATE",
            (prefix + "%",),
        )
    }
    for sequence in range(1 if sex == "male" else 2, 1000, 2):
        if f"{sequence:03d}" not in taken:
            first17 = f"{prefix}{sequence:03d}"
            return first17 + resident_id_check_digit(first17)
    raise Rejected(f"no resident ID number is left for {prefix} ({sex})")


def apply_birth(conn: psycopg.Connection, delivery: Delivery) -> None:
    """Only a new certificate registers a newborn: a snapshot of older certificates (born
    before govsync) is registered already."""
    after = delivery.after or {}
    if delivery.kind != "registered" or not after:
        return
    certificate = delivery.key
    if conn.execute(
        "SELECT 1 FROM household_registration WHERE birth_certificate_no = %s", (certificate,)
    ).fetchone():
        return
    mother = conn.execute(
        "SELECT id_no, domicile FROM household_registration"
        " WHERE id_no = %s AND hukou_status = '1'",
        (after.get("mother_id"),),
    ).fetchone()
    if mother is None:
        raise Rejected(
            f"birth certificate {certificate}: the mother {after.get('mother_id')} has no"
            " active household registration here"
        )
    if not after.get("born_at") or after.get("sex") not in ("male", "female"):
        raise Rejected(f"birth certificate {certificate}: no time of birth or sex")
    born_on = local_day(after["born_at"])
    id_no = issue_resident_id(conn, mother[0][:6], born_on, after["sex"])
    conn.execute(
        "INSERT INTO household_registration"
        " (id_no, full_name, birth_date, domicile, hukou_status, birth_certificate_no)"
        " VALUES (%s, %s, %s, %s, '1', %s)",
        (id_no, after.get("child_name") or "", born_on, mother[1], certificate),
    )


def apply_title(conn: psycopg.Connection, delivery: Delivery) -> None:
    """Who holds which title, at its version (an older version never overwrites a newer)."""
    after = delivery.after
    if not after:
        return
    conn.execute(
        "INSERT INTO residence_property (title_no, owner_id, owner_name, address, version)"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (title_no) DO UPDATE SET"
        "  owner_id = EXCLUDED.owner_id, owner_name = EXCLUDED.owner_name,"
        "  address = EXCLUDED.address, version = EXCLUDED.version"
        " WHERE residence_property.version < EXCLUDED.version",
        (
            delivery.key,
            after.get("owner_id"),
            after.get("owner_name"),
            after.get("address"),
            after.get("version"),
        ),
    )


HANDLERS = {BIRTH_TOPIC: apply_birth, TITLE_TOPIC: apply_title}
