"""一数一源 on the real stack: market regulation owns a company's name and address, the
district service centre only the contact phone it collects. The district's differing
copies never reach master or any department; they land on govsync.quality."""

from __future__ import annotations

from streams.contract.topics import QUALITY_TOPIC
from streams.kafka.topic_reader import Record
from tests.integration.companies import (
    MASTER,
    SOCIAL,
    TAX,
    WAIT,
    insert,
    new_company,
    update,
)
from tests.integration.conftest import Stack

MARKET = "market_regulation.enterprise"
DISTRICT = "district_services.enterprise"
TOPICS = (MASTER, TAX, SOCIAL, QUALITY_TOPIC)


def of(records: list[Record], topic: str, key: str) -> list[Record]:
    return [r for r in records if r.topic == topic and r.key == key]


def registered(stack: Stack) -> tuple[str, str, str]:
    """A new company, registered at market regulation and on master; (uscc, name, address)."""
    company = new_company()
    start = stack.offsets(MASTER)
    insert(stack, company)
    stack.read_until(start, lambda rs: bool(of(rs, MASTER, company.credit_code)), timeout=WAIT)
    return company.credit_code, company.ent_name, company.address


def district_insert(stack: Stack, uscc: str, name: str, address: str, phone: str) -> None:
    stack.sql(
        "district_services",
        "INSERT INTO enterprise_contact (credit_code, company_name, address, contact_phone)"
        " VALUES (%s, %s, %s, %s)",
        (uscc, name, address, phone),
    )


def test_a_differing_name_goes_to_quality_and_the_owned_phone_flows(stack: Stack) -> None:
    uscc, name, address = registered(stack)
    start = stack.offsets(*TOPICS)
    district_insert(stack, uscc, name + "（旧称）", address, "13800138000")

    records = stack.read_until(
        start, lambda rs: all(of(rs, t, uscc) for t in (QUALITY_TOPIC, TAX, MASTER)), timeout=WAIT
    )
    [finding] = [r.value for r in of(records, QUALITY_TOPIC, uscc)]
    assert finding is not None
    assert finding["field"] == "name"
    assert finding["entity"] == "enterprise"
    assert (finding["authoritative_source"], finding["authoritative_value"]) == (MARKET, name)
    assert (finding["other_source"], finding["other_value"]) == (DISTRICT, name + "（旧称）")
    assert finding["authoritative_ts_ms"] is not None
    assert finding["authoritative_ts_ms"] <= finding["other_ts_ms"]

    [master] = [r.value for r in of(records, MASTER, uscc)]
    assert master is not None
    assert master["name"] == name  # never overwritten by the non-authoritative copy
    assert master["contact_phone"] == "13800138000"  # the field the district owns
    [delivery] = [r.value for r in of(records, TAX, uscc)]
    assert delivery is not None
    assert delivery["changed_fields"] == ["contact_phone"]
    assert delivery["after"]["contact_phone"] == "138*****000"  # masked for tax: partial
    assert delivery["after"]["name"] == name
    assert delivery["source"] == DISTRICT
    # Social security does not receive the phone: nothing it subscribes to changed.
    assert of(records, SOCIAL, uscc) == []


def test_agreeing_copies_raise_nothing_until_the_owner_changes(stack: Stack) -> None:
    uscc, name, address = registered(stack)
    start = stack.offsets(*TOPICS)
    district_insert(stack, uscc, name, address, "13900139000")
    stack.read_until(start, lambda rs: bool(of(rs, TAX, uscc)), timeout=WAIT)

    renamed = name.replace("有限公司", "集团有限公司")
    update(stack, uscc, "ent_name = %s", (renamed,))
    records = stack.read_until(
        start,
        lambda rs: bool(of(rs, QUALITY_TOPIC, uscc))
        and any(r.value and r.value["name"] == renamed for r in of(rs, MASTER, uscc)),
        timeout=WAIT,
    )
    [finding] = [r.value for r in of(records, QUALITY_TOPIC, uscc)]
    assert finding is not None
    assert (finding["field"], finding["authoritative_value"], finding["other_value"]) == (
        "name",
        renamed,
        name,
    )
    names = [r.value["name"] for r in of(records, MASTER, uscc) if r.value is not None]
    assert names[-1] == renamed


def test_the_district_changing_a_field_it_does_not_own_changes_nothing_downstream(
    stack: Stack,
) -> None:
    uscc, name, address = registered(stack)
    district_insert(stack, uscc, name, address, "13700137000")
    stack.read_until(
        stack.offsets(MASTER),
        lambda rs: any(r.value and r.value["contact_phone"] for r in of(rs, MASTER, uscc)),
        timeout=WAIT,
    )
    start = stack.offsets(*TOPICS)
    stack.sql(
        "district_services",
        "UPDATE enterprise_contact SET address = %s WHERE credit_code = %s",
        ("北京市海淀区不存在路1号", uscc),
    )
    # The finding is written in the same transaction as any master record or delivery
    # the address change would have caused: once it is visible, so would they be.
    stack.read_until(start, lambda rs: bool(of(rs, QUALITY_TOPIC, uscc)), timeout=WAIT)
    update(stack, uscc, "reg_capital = reg_capital + 1")
    records = stack.read_until(
        start, lambda rs: bool(of(rs, TAX, uscc)) and bool(of(rs, MASTER, uscc)), timeout=WAIT
    )
    [finding] = [r.value for r in of(records, QUALITY_TOPIC, uscc)]
    assert finding is not None
    assert (finding["field"], finding["other_value"]) == ("address", "北京市海淀区不存在路1号")
    masters = [r.value for r in of(records, MASTER, uscc)]
    assert len(masters) == 1  # only the capital change
    assert masters[0] is not None
    assert masters[0]["address"] == address
    [delivery] = [r.value for r in of(records, TAX, uscc)]
    assert delivery is not None
    assert delivery["changed_fields"] == ["registered_capital"]
