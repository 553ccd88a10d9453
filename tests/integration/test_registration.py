"""Company registration (企业开办): market regulation registers a company; tax makes it a
taxpayer with its tax types (税种认定) and social security opens its employer account (参保
登记), each in its own database. A deregistration right behind the registration arrives
after it everywhere."""

from __future__ import annotations

import pytest

from connectors.sinks.tax import tax_types
from tests.integration.companies import (
    DELIVERIES,
    WAIT,
    insert,
    new_company,
    update,
    wait_for,
)
from tests.integration.conftest import Stack

pytestmark = pytest.mark.stack


def test_a_registration_reaches_tax_and_social_security_and_a_deregistration_follows_it(
    stack: Stack,
) -> None:
    # A real-estate developer: its tax types include those of its industry.
    company = new_company(ent_type="2", industry_code="K")
    key = company.credit_code
    start = stack.offsets(*DELIVERIES)
    insert(stack, company)
    update(stack, key, "reg_status = '4'")  # committed right behind the registration

    def both_everywhere(records: list) -> bool:
        return all(sum(r.topic == t and r.key == key for r in records) >= 2 for t in DELIVERIES)

    records = stack.read_until(start, both_everywhere, timeout=WAIT)
    for topic in DELIVERIES:
        kinds = [r.value["kind"] for r in records if r.topic == topic and r.key == key]
        assert kinds == ["registered", "deregistered"], topic
    registered = next(r.value for r in records if r.key == key)
    assert registered["after"].get("status") == "active"

    def applied(database: str) -> bool:
        rows = stack.sql(
            database, "SELECT kind FROM govsync_inbox WHERE entity_key = %s ORDER BY 1", (key,)
        )
        return rows == [("deregistered",), ("registered",)]

    wait_for(lambda: applied("tax"), f"the tax sink to apply both changes of {key}")
    wait_for(lambda: applied("social_security"), f"social security to apply both of {key}")

    [(status, kind, industry, deregistered_at)] = stack.sql(
        "tax",
        "SELECT status, enterprise_type, industry, deregistered_at FROM taxpayer WHERE uscc = %s",
        (key,),
    )
    assert (status, kind, industry) == ("deregistered", "joint_stock_company", "K")
    assert deregistered_at is not None
    assigned = dict(
        stack.sql("tax", "SELECT tax_type, basis FROM taxpayer_tax_type WHERE uscc = %s", (key,))
    )
    assert assigned == dict(tax_types("joint_stock_company", "K"))
    assert {"企业所得税", "土地增值税"} <= set(assigned)

    [(account_no, name, account_status, opened_on, closed_on)] = stack.sql(
        "social_security",
        "SELECT account_no, name, status, opened_on, closed_on FROM employer_account"
        " WHERE uscc = %s",
        (key,),
    )
    assert account_no.startswith("SBN")
    assert name == company.ent_name
    # Opened by the registration, then closed by the deregistration behind it: applied in
    # the other order, the close would have found no account and the account would be open.
    assert account_status == "closed"
    assert opened_on is not None and closed_on is not None and opened_on <= closed_on
