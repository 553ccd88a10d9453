"""一数一源: each canonical field comes from its authoritative source; other sources'
differing values become quality findings, whichever source is captured first."""

from __future__ import annotations

from typing import Any

import pytest

from streams.model.topology import Federation, Feed, Upstream
from streams.transform.authority import Authority, Canonical
from tests.unit.examples import PROVINCE, STATE, TOPOLOGY

MARKET = "market_regulation.enterprise"
DISTRICT = "district_services.enterprise"
HOUSEHOLD = "public_security.person"
LEGACY = "social_security.person"
USCC = STATE["uscc"]
ENTERPRISE = Authority(TOPOLOGY, "enterprise")
PERSON = Authority(TOPOLOGY, "person")

_counter = iter(range(10**6))


def change(
    source: str,
    after: dict[str, Any] | None,
    before: dict[str, Any] | None = None,
    kind: str = "updated",
    key: str = USCC,
) -> dict[str, Any]:
    """A change event as normalize makes it: every entity field present, unmapped ones None."""
    entity = TOPOLOGY.source(source).entity
    fields = TOPOLOGY.entity(entity).fields
    full = None if after is None else {name: after.get(name) for name in fields}
    previous = None if before is None else {name: before.get(name) for name in fields}
    changed = (
        []
        if full is None
        else [n for n in fields if (previous or {}).get(n) != full[n] and full[n] is not None]
        if previous is None
        else [n for n in fields if previous[n] != full[n]]
    )
    n = next(_counter)
    return {
        "event_id": f"event-{n}",
        "kind": kind,
        "entity": entity,
        "key": key,
        "before": previous,
        "after": full,
        "changed_fields": changed,
        "source": source,
        "source_ts_ms": 1_700_000_000_000 + n,
        "source_position": f"lsn={n}",
    }


def market_row(**overrides: Any) -> dict[str, Any]:
    return {**{k: v for k, v in STATE.items() if k != "contact_phone"}, **overrides}


def district_row(**overrides: Any) -> dict[str, Any]:
    row = {"uscc": USCC, "name": STATE["name"], "address": STATE["address"]}
    return {**row, "contact_phone": "13800138000", **overrides}


def registered() -> Canonical:
    return ENTERPRISE.merge(change(MARKET, market_row(), kind="registered"), None).canonical


def test_the_authoritative_source_sets_its_fields() -> None:
    merge = ENTERPRISE.merge(change(MARKET, market_row(), kind="registered"), None)
    assert merge.change["kind"] == "registered"
    assert merge.change["before"] is None
    assert merge.change["after"] == STATE
    assert merge.canonical.provenance["name"].source == MARKET
    assert merge.discrepancies == []


def test_a_field_the_other_source_owns_flows_and_keeps_the_rest() -> None:
    merge = ENTERPRISE.merge(change(DISTRICT, district_row()), registered())
    assert merge.change["after"] == {**STATE, "contact_phone": "13800138000"}
    assert merge.change["changed_fields"] == ["contact_phone"]
    assert merge.change["kind"] == "updated"
    assert merge.canonical.provenance["contact_phone"].source == DISTRICT
    assert merge.canonical.provenance["name"].source == MARKET
    assert merge.discrepancies == []


def test_a_differing_value_never_overwrites_and_is_reported() -> None:
    current = registered()
    stale = change(DISTRICT, district_row(name="旧名称有限公司"))
    merge = ENTERPRISE.merge(stale, current)
    assert merge.canonical.state is not None
    assert merge.canonical.state["name"] == STATE["name"]
    [finding] = merge.discrepancies
    assert finding.field == "name"
    assert finding.key == USCC
    assert (finding.authoritative_source, finding.authoritative_value) == (MARKET, STATE["name"])
    assert (finding.other_source, finding.other_value) == (DISTRICT, "旧名称有限公司")
    assert finding.authoritative_ts_ms == current.provenance["name"].ts_ms
    assert finding.other_ts_ms == stale["source_ts_ms"]
    assert finding.event_id == stale["event_id"]


def test_only_differences_the_change_asserts_are_reported_again() -> None:
    first = ENTERPRISE.merge(change(DISTRICT, district_row(name="旧名称")), registered())
    assert len(first.discrepancies) == 1
    phone_only = change(
        DISTRICT,
        district_row(name="旧名称", contact_phone="13900139000"),
        before=district_row(name="旧名称"),
    )
    again = ENTERPRISE.merge(phone_only, first.canonical)
    assert again.discrepancies == []
    assert again.change["changed_fields"] == ["contact_phone"]


def test_a_non_owner_arriving_first_is_checked_when_the_owner_speaks() -> None:
    early = ENTERPRISE.merge(
        change(DISTRICT, district_row(name="旧名称", contact_phone=None)), None
    )
    assert early.discrepancies == []
    assert early.canonical.state is None  # it owns nothing it sent: no entity yet
    assert not early.changes_state
    owner = ENTERPRISE.merge(change(MARKET, market_row(), kind="snapshot"), early.canonical)
    assert owner.change["kind"] == "snapshot"
    [finding] = owner.discrepancies
    assert (finding.field, finding.other_value, finding.authoritative_value) == (
        "name",
        "旧名称",
        STATE["name"],
    )


def test_the_owner_changing_a_value_reveals_a_stored_disagreement() -> None:
    agreed = ENTERPRISE.merge(change(DISTRICT, district_row()), registered())
    assert agreed.discrepancies == []
    renamed = change(MARKET, market_row(name="新名称有限公司"), before=market_row())
    merge = ENTERPRISE.merge(renamed, agreed.canonical)
    [finding] = merge.discrepancies
    assert (finding.authoritative_value, finding.other_value) == ("新名称有限公司", STATE["name"])
    assert finding.other_source == DISTRICT


def test_deregistration_is_a_lifecycle_change_of_the_canonical_state() -> None:
    merge = ENTERPRISE.merge(
        change(MARKET, market_row(status="deregistered"), before=market_row()), registered()
    )
    assert merge.change["kind"] == "deregistered"
    assert merge.change["changed_fields"] == ["status"]


def test_delete_by_the_key_owner_ends_the_entity_other_deletes_clear_their_fields() -> None:
    with_phone = ENTERPRISE.merge(change(DISTRICT, district_row()), registered()).canonical
    cleared = ENTERPRISE.merge(change(DISTRICT, None, before=district_row()), with_phone)
    assert cleared.change["kind"] == "updated"
    assert cleared.canonical.state is not None
    assert cleared.canonical.state["contact_phone"] is None
    assert DISTRICT not in cleared.canonical.observed
    gone = ENTERPRISE.merge(change(MARKET, None, before=market_row()), cleared.canonical)
    assert gone.change["kind"] == "deleted"
    assert gone.change["after"] is None
    assert gone.canonical.state is None


def test_a_repeated_change_changes_nothing() -> None:
    current = registered()
    merge = ENTERPRISE.merge(change(MARKET, market_row(), before=market_row()), current)
    assert not merge.changes_state


@pytest.mark.parametrize("legacy_first", [True, False])
def test_legacy_register_is_checked_against_household_registration(legacy_first: bool) -> None:
    person = {
        "resident_id": "110105196911106075",
        "name": "贾强",
        "birth_date": "1969-11-10",
        "status": "registered",
        "address": "北京市朝阳区人民路1号",
    }
    household = change(HOUSEHOLD, person, kind="snapshot", key=person["resident_id"])
    legacy = change(
        LEGACY,
        {"resident_id": person["resident_id"], "name": "贾强", "birth_date": "1969-11-01"},
        kind="snapshot",
        key=person["resident_id"],
    )
    first, second = (legacy, household) if legacy_first else (household, legacy)
    merged = PERSON.merge(first, None)
    merged = PERSON.merge(second, merged.canonical)
    assert merged.canonical.state is not None
    assert merged.canonical.state["birth_date"] == "1969-11-10"
    findings = [d.field for d in merged.discrepancies]
    assert findings == ["birth_date"]


def test_canonical_round_trips_through_its_changelog_encoding() -> None:
    canonical = ENTERPRISE.merge(change(DISTRICT, district_row(name="旧")), registered()).canonical
    assert Canonical.from_json(canonical.to_json()) == canonical


def test_an_owned_value_sent_before_the_entity_exists_waits_for_the_key_owner() -> None:
    """Only the key's owner registers an entity: a district phone captured before market
    regulation's row creates nothing (no half-empty company reaches any department) and
    is applied when the company is registered."""
    early = ENTERPRISE.merge(change(DISTRICT, district_row(), kind="snapshot"), None)
    assert early.canonical.state is None
    assert not early.changes_state
    assert early.canonical.held["contact_phone"].value == "13800138000"

    registered = ENTERPRISE.merge(change(MARKET, market_row(), kind="snapshot"), early.canonical)
    assert registered.change["kind"] == "snapshot"
    assert registered.change["before"] is None
    assert registered.change["after"] == {**STATE, "contact_phone": "13800138000"}
    assert registered.canonical.held == {}
    assert registered.canonical.provenance["contact_phone"].source == DISTRICT
    assert registered.canonical.provenance["name"].source == MARKET
    restored = Canonical.from_json(early.canonical.to_json())
    assert restored == early.canonical


# --- federation: an upstream node is a source like a table ----------------------------------

PROVINCIAL = Authority(PROVINCE, "enterprise")
FROM_CITY = "city.enterprise"


def inbound(
    source: str,
    after: dict[str, Any] | None,
    before: dict[str, Any] | None = None,
    kind: str = "snapshot",
) -> dict[str, Any]:
    """A change as normalize makes it from an upstream node's delivery."""
    n = next(_counter)
    return {
        "event_id": f"event-{n}",
        "kind": kind,
        "entity": "enterprise",
        "key": USCC,
        "before": before,
        "after": after,
        "changed_fields": [] if after is None else [k for k, v in after.items() if v is not None],
        "source": source,
        "source_ts_ms": 1_700_000_000_000 + n,
        "source_position": f"lsn={n}",
    }


def test_a_change_from_an_upstream_node_creates_the_entity_and_owns_its_fields() -> None:
    fields = PROVINCE.entity("enterprise").fields
    assert PROVINCIAL.owner == dict.fromkeys(fields, FROM_CITY)
    assert PROVINCIAL.owned_by(FROM_CITY) == list(fields)
    state = {name: STATE[name] for name in fields}
    merge = PROVINCIAL.merge(inbound(FROM_CITY, state), None)
    assert merge.changes_state
    assert merge.change["kind"] == "snapshot"
    assert (merge.change["before"], merge.change["after"]) == (None, state)
    assert {p.source for p in merge.canonical.provenance.values()} == {FROM_CITY}
    assert merge.discrepancies == []
    ended = PROVINCIAL.merge(
        inbound(FROM_CITY, {**state, "status": "deregistered"}, state, "updated"), merge.canonical
    )
    assert ended.change["kind"] == "deregistered"


def test_a_feed_owning_one_field_waits_for_the_key_owner_like_any_source() -> None:
    """The city receiving the phone number the province holds (it owns nothing else)."""
    province = Upstream(
        node="province",
        bootstrap="127.0.0.1:29092",
        registry="http://127.0.0.1:28080",
        login="city",
        entities={
            "enterprise": Feed(
                fields=["uscc", "name", "legal_rep_phone"], authoritative=["legal_rep_phone"]
            )
        },
    )
    fed = TOPOLOGY.model_copy(update={"federation": Federation(node="city", upstreams=[province])})
    authority = Authority(fed, "enterprise")
    assert authority.owner["legal_rep_phone"] == "province.enterprise"
    assert authority.owner["name"] == MARKET
    assert authority.owned_by("province.enterprise") == ["legal_rep_phone"]
    sent = {"uscc": USCC, "name": "别名", "legal_rep_phone": "13900139000"}
    early = authority.merge(inbound("province.enterprise", sent), None)
    assert early.canonical.state is None  # the key's owner is market regulation
    assert early.canonical.held["legal_rep_phone"].value == "13900139000"
    registered = authority.merge(change(MARKET, market_row(), kind="snapshot"), early.canonical)
    assert registered.change["after"]["legal_rep_phone"] == "13900139000"
    assert registered.canonical.provenance["legal_rep_phone"].source == "province.enterprise"
    # Its differing name was observed, and is a finding now the owner has spoken.
    [finding] = registered.discrepancies
    assert (finding.field, finding.other_source) == ("name", "province.enterprise")
