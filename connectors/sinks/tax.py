"""The tax bureau's sink: ``deliver.tax.enterprise`` -> the tax database.

A registered company becomes a taxpayer with its tax types (税种认定), chosen by its legal
form and industry; a deregistered company's taxpayer row is marked deregistered and its
pending tax reminders are cancelled. ``deliver.tax.birth`` pre-fills the parents'
infant-care deduction; ``deliver.tax.title`` keeps the property tax source at the title's
version and ``deliver.tax.transfer`` assesses deed tax on a registered transfer.
"""

from __future__ import annotations

from decimal import Decimal

import psycopg

from connectors.subscriber import Delivery
from streams.model.standards import local_day

TOPIC = "deliver.tax.enterprise"
BIRTH_TOPIC = "deliver.tax.birth"
# 3岁以下婴幼儿照护专项附加扣除: 2,000 yuan a month per child, pre-filled half for each
# parent (they may move it all to one of them).
INFANT_CARE_MONTHLY = 2000
TITLE_TOPIC = "deliver.tax.title"
TRANSFER_TOPIC = "deliver.tax.transfer"
DEED_TAX_RATE = Decimal("0.03")  # 契税法: 3%-5% by province; reliefs (first home) apply on claim
NEW_TAXPAYER_OFFICE = "待分配"  # assigned by the bureau after registration

# 税种认定, simplified from the bureau's rules: what every business files, what its legal
# form adds (a company pays corporate income tax; a partnership's or sole proprietor's
# owners pay individual income tax on business income), what its industry adds (GB/T
# 4754 sections: B mining, K real estate).
EVERY_BUSINESS = ("增值税", "城市维护建设税", "教育费附加", "印花税")
BY_LEGAL_FORM = {
    "limited_company": ("企业所得税",),
    "joint_stock_company": ("企业所得税",),
    "partnership": ("个人所得税(经营所得)",),
    "sole_proprietorship": ("个人所得税(经营所得)",),
}
BY_INDUSTRY = {"B": ("资源税",), "K": ("土地增值税", "房产税", "城镇土地使用税")}


def tax_types(enterprise_type: str | None, industry: str | None) -> list[tuple[str, str]]:
    """(tax type, the rule that assigns it) for a business of this form and industry."""
    assigned = [(tax, "every business") for tax in EVERY_BUSINESS]
    assigned += [
        (t, f"legal form {enterprise_type}") for t in BY_LEGAL_FORM.get(enterprise_type or "", ())
    ]
    assigned += [(t, f"industry {industry}") for t in BY_INDUSTRY.get(industry or "", ())]
    return assigned


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
            "INSERT INTO taxpayer (uscc, name, status, tax_office, registered_on,"
            "  enterprise_type, industry)"
            " VALUES (%(uscc)s, %(name)s, COALESCE(%(status)s, 'active'), %(office)s, current_date,"
            "  %(type)s, %(industry)s)"
            " ON CONFLICT (uscc) DO UPDATE SET"
            "  name = COALESCE(EXCLUDED.name, taxpayer.name),"
            "  status = COALESCE(%(status)s, taxpayer.status),"
            "  enterprise_type = COALESCE(%(type)s, taxpayer.enterprise_type),"
            "  industry = COALESCE(%(industry)s, taxpayer.industry),"
            # A company back in business (e.g. a revoked deregistration) is no longer closed.
            "  deregistered_at = CASE WHEN COALESCE(%(status)s, taxpayer.status) = 'deregistered'"
            "    THEN taxpayer.deregistered_at END,"
            "  updated_at = now()",
            {
                "uscc": uscc,
                "name": after.get("name"),
                "status": after.get("status"),
                "office": NEW_TAXPAYER_OFFICE,
                "type": after.get("enterprise_type"),
                "industry": after.get("industry"),
            },
        )
        # A type once assigned stays (ending one is the bureau's decision); a new form or
        # industry adds what it requires.
        with conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO taxpayer_tax_type (uscc, tax_type, basis, since, event_id)"
                " VALUES (%s, %s, %s,"
                "  (to_timestamp(%s / 1000.0) AT TIME ZONE 'Asia/Shanghai')::date, %s)"
                " ON CONFLICT DO NOTHING",
                [
                    (uscc, tax, basis, delivery.source_ts_ms, delivery.event_id)
                    for tax, basis in tax_types(after.get("enterprise_type"), after.get("industry"))
                ],
            )
    # "deleted": the source row is gone; the bureau keeps its own records, the inbox notes it.


def apply_birth(conn: psycopg.Connection, delivery: Delivery) -> None:
    """A birth pre-fills the parents' infant-care deduction (出生一件事: nobody has to claim
    what the state already knows)."""
    after = delivery.after or {}
    if delivery.kind != "registered" or not after.get("born_at"):
        return
    parents = [p for p in (after.get("mother_id"), after.get("father_id")) if p]
    with conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO infant_care_deduction"
            " (parent_id, certificate_no, monthly_amount, since, event_id)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            [
                (
                    parent,
                    delivery.key,
                    INFANT_CARE_MONTHLY // len(parents),
                    local_day(after["born_at"]).replace(day=1),
                    delivery.event_id,
                )
                for parent in parents
            ],
        )


def apply_title(conn: psycopg.Connection, delivery: Delivery) -> None:
    """The property tax source follows the title; a version older than the one held (a
    replay of history) never overwrites a newer one."""
    after = delivery.after
    if not after:
        return
    conn.execute(
        "INSERT INTO property_register (title_no, owner_id, address, area_m2, version)"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (title_no) DO UPDATE SET"
        "  owner_id = EXCLUDED.owner_id, address = EXCLUDED.address,"
        "  area_m2 = EXCLUDED.area_m2, version = EXCLUDED.version"
        " WHERE property_register.version < EXCLUDED.version",
        (
            delivery.key,
            after.get("owner_id"),
            after.get("address"),
            after.get("area"),
            after.get("version"),
        ),
    )


def apply_transfer(conn: psycopg.Connection, delivery: Delivery) -> None:
    """A registered transfer is assessed deed tax on its price; a refused one owes none
    (its delivery is still received, so the refusal's trace ends here too)."""
    after = delivery.after or {}
    if after.get("outcome") != "registered" or after.get("price") is None:
        return
    price = Decimal(after["price"])
    conn.execute(
        "INSERT INTO deed_tax (application_no, title_no, buyer_id, price, rate, amount, event_id)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (application_no) DO NOTHING",
        (
            delivery.key,
            after.get("title_no"),
            after.get("buyer_id"),
            price,
            DEED_TAX_RATE,
            (price * DEED_TAX_RATE).quantize(Decimal("0.01")),
            delivery.event_id,
        ),
    )


HANDLERS = {
    TOPIC: apply_enterprise,
    BIRTH_TOPIC: apply_birth,
    TITLE_TOPIC: apply_title,
    TRANSFER_TOPIC: apply_transfer,
}
