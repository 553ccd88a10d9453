"""topology.yaml loads, and every kind of mistake is reported with its YAML path."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.config.settings import REPO_ROOT
from streams.contract.topics import changes_topic, delivery_topic, master_topic
from streams.model.topology import (
    CST,
    ROOT,
    Problem,
    TopologyError,
    approval_day_end,
    load_topology,
)

TOPOLOGY = REPO_ROOT / "topology.yaml"
RAW = yaml.safe_load(TOPOLOGY.read_text(encoding="utf-8"))


def _write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _problems(path: Path) -> list[Problem]:
    with pytest.raises(TopologyError) as caught:
        load_topology(path)
    return caught.value.problems


def _mutated(mutate: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    data = copy.deepcopy(RAW)
    mutate(data)
    return data


def _assert_reported(problems: list[Problem], path: str, fragment: str) -> None:
    listing = "\n".join(str(problem) for problem in problems)
    assert any(p.path == path and fragment in p.message for p in problems), listing


def _enterprise(data: dict[str, Any]) -> dict[str, Any]:
    return data["entities"]["enterprise"]["fields"]


def _source(data: dict[str, Any]) -> dict[str, Any]:
    return data["sources"][0]


def _health(data: dict[str, Any]) -> dict[str, Any]:
    return next(source for source in data["sources"] if source["id"] == "health.birth")


def _tax(data: dict[str, Any]) -> dict[str, Any]:
    return data["subscriptions"][0]


def _social(data: dict[str, Any]) -> dict[str, Any]:
    return data["subscriptions"][1]


def _second_source(data: dict[str, Any]) -> None:
    other = copy.deepcopy(_source(data))
    other.update(id="tax.taxpayer", department="tax", table="public.taxpayer")
    other["authoritative"] = ["uscc", "name"]
    data["sources"].append(other)


INVALID: list[tuple[str, Callable[[dict[str, Any]], object], str, str]] = [
    (
        "duplicate source id",
        lambda d: d["sources"].append(copy.deepcopy(_source(d))),
        "sources[7].id",
        "duplicate source id 'market_regulation.enterprise'",
    ),
    (
        "duplicate subscription id",
        lambda d: d["subscriptions"].append(copy.deepcopy(_tax(d))),
        "subscriptions[12].id",
        "duplicate subscription id 'tax.enterprise'",
    ),
    (
        "unknown source department",
        lambda d: _source(d).update(department="customs"),
        "sources[0].department",
        "unknown department 'customs'",
    ),
    (
        "unknown subscription department",
        lambda d: _tax(d).update(department="customs"),
        "subscriptions[0].department",
        "unknown department 'customs'",
    ),
    (
        "unknown source entity",
        lambda d: _source(d).update(entity="vehicle"),
        "sources[0].entity",
        "unknown entity 'vehicle'",
    ),
    (
        "unknown subscription entity",
        lambda d: _tax(d).update(entity="vehicle"),
        "subscriptions[0].entity",
        "unknown entity 'vehicle'",
    ),
    (
        "key not a field",
        lambda d: d["entities"]["enterprise"].update(key="credit_code"),
        "entities.enterprise.key",
        "unknown key field 'credit_code'",
    ),
    (
        "key not a string",
        lambda d: _enterprise(d)["uscc"].update(type="int", standard=None),
        "entities.enterprise.key",
        "the key must be a string",
    ),
    (
        "unknown field in columns",
        lambda d: _source(d)["columns"].update(phone="tel"),
        "sources[0].columns.phone",
        "unknown enterprise field 'phone'",
    ),
    (
        "unknown field in authoritative",
        lambda d: _source(d)["authoritative"].append("phone"),
        "sources[0].authoritative[10]",
        "unknown enterprise field 'phone'",
    ),
    (
        "authoritative field without a column",
        lambda d: _source(d)["columns"].pop("address"),
        "sources[0].authoritative[6]",
        "authoritative for address but maps no column to it",
    ),
    (
        "source does not map the key",
        lambda d: _source(d)["columns"].pop("uscc"),
        "sources[0].columns",
        "must map a column to the entity key uscc",
    ),
    (
        "table not schema-qualified",
        lambda d: _source(d).update(table="enterprise"),
        "sources[0].table",
        "schema-qualified",
    ),
    (
        "MariaDB table qualified by another database",
        lambda d: _health(d).update(table="public.birth_certificate"),
        "sources[4].table",
        "must be health.<table>: MariaDB qualifies a table by its database",
    ),
    (
        "MariaDB table not qualified",
        lambda d: _health(d).update(table="birth_certificate"),
        "sources[4].table",
        "must be health.<table>",
    ),
    (
        "unknown database kind",
        lambda d: _health(d)["database"].update(kind="oracle"),
        "sources[4].database.kind",
        "'postgres' or 'mariadb'",
    ),
    (
        "unknown field in subscription",
        lambda d: _social(d)["fields"].__setitem__(2, "stauts"),
        "subscriptions[1].fields[2]",
        "unknown enterprise field 'stauts'",
    ),
    (
        "field listed twice",
        lambda d: _tax(d)["fields"].append("name"),
        "subscriptions[0].fields[8]",
        "name is listed twice",
    ),
    (
        "subscription without the key",
        lambda d: _tax(d)["fields"].remove("uscc"),
        "subscriptions[0].fields",
        "must include the entity key uscc",
    ),
    (
        "unknown field in mask",
        lambda d: _tax(d).update(mask={"nme": "hash"}),
        "subscriptions[0].mask.nme",
        "unknown enterprise field 'nme'",
    ),
    (
        "mask of a field not received",
        lambda d: _tax(d).update(mask={"legal_rep_id": "partial"}),
        "subscriptions[0].mask.legal_rep_id",
        "does not receive",
    ),
    (
        "unknown mask rule",
        lambda d: _tax(d).update(mask={"name": "blur"}),
        "subscriptions[0].mask.name",
        "got 'blur'",
    ),
    (
        "unknown never_share field",
        lambda d: d.update(never_share=["enterprise.religion"]),
        "never_share[0]",
        "'enterprise.religion' is not a known <entity>.<field>",
    ),
    (
        "code outside the enum",
        lambda d: _source(d)["columns"]["status"]["codes"].update({"5": "closed"}),
        'sources[0].columns.status.codes."5"',
        "'closed' is not a symbol of enterprise.status",
    ),
    (
        "codes on a non-enum field",
        lambda d: _source(d)["columns"].update(name={"column": "ent_name", "codes": {"1": "x"}}),
        "sources[0].columns.name.codes",
        "name is a string field",
    ),
    (
        "enum without symbols",
        lambda d: _enterprise(d)["status"].pop("symbols"),
        "entities.enterprise.fields.status",
        "an enum field needs symbols",
    ),
    (
        "symbols on a non-enum field",
        lambda d: _enterprise(d)["name"].update(symbols=["a"]),
        "entities.enterprise.fields.name.symbols",
        "only enum fields have symbols",
    ),
    (
        "symbol that is not an Avro name",
        lambda d: _enterprise(d)["status"]["symbols"].append("written-off"),
        "entities.enterprise.fields.status.symbols[4]",
        "not a valid Avro enum symbol",
    ),
    (
        "standard on the wrong type",
        lambda d: _enterprise(d)["established_on"].update(type="string"),
        "entities.enterprise.fields.established_on.standard",
        "standard date applies to date fields, not string",
    ),
    (
        "unknown classification",
        lambda d: _enterprise(d)["address"].update(classification="confidential"),
        "entities.enterprise.fields.address.classification",
        "unknown classification 'confidential'",
    ),
    (
        "missing classification",
        lambda d: _enterprise(d)["address"].pop("classification"),
        "entities.enterprise.fields.address.classification",
        "required",
    ),
    (
        "unknown clearance",
        lambda d: d["departments"]["tax"].update(clearance="top"),
        "departments.tax.clearance",
        "unknown clearance label 'top'",
    ),
    (
        "field above clearance",
        lambda d: d["departments"]["tax"].update(clearance="public"),
        "subscriptions[0].fields[3]",
        "address is internal, above tax's clearance public",
    ),
    (
        "never_share field subscribed",
        lambda d: _social(d)["fields"].append("legal_rep_phone"),
        "subscriptions[1].fields[5]",
        "enterprise.legal_rep_phone is on the never_share list",
    ),
    (
        "two authoritative sources",
        _second_source,
        "sources[7].authoritative[1]",
        "enterprise.name already has the authoritative source market_regulation.enterprise",
    ),
    (
        "database shared by two departments",
        lambda d: (_second_source(d), d["sources"][-1].update(authoritative=[])),
        "sources[7].database.name",
        "database market_regulation already belongs to market_regulation (sources[0])",
    ),
    (
        "department capturing from two databases",
        lambda d: d["sources"].append(
            {
                **copy.deepcopy(_source(d)),
                "id": "market_regulation.license",
                "database": {"kind": "postgres", "name": "licensing"},
                "table": "public.license",
                "authoritative": [],
            }
        ),
        "sources[7].database.name",
        "market_regulation already captures from database market_regulation",
    ),
    (
        "subscription id not department.entity",
        lambda d: _tax(d).update(id="tax.enterprises"),
        "subscriptions[0].id",
        "must be tax.enterprise",
    ),
    (
        "department id not snake_case",
        lambda d: d["departments"].update(
            {"Customs Office": {"name": "海关", "clearance": "public"}}
        ),
        'departments."Customs Office"',
        "lower_snake_case",
    ),
    (
        "typo in a key",
        lambda d: _tax(d).update(aproval=_tax(d).pop("approval")),
        "subscriptions[0].aproval",
        "unknown key",
    ),
    (
        "unknown field type",
        lambda d: _enterprise(d)["name"].update(type="text"),
        "entities.enterprise.fields.name.type",
        "got 'text'",
    ),
    (
        "unknown approval state",
        lambda d: _tax(d)["approval"].update(state="granted"),
        "subscriptions[0].approval.state",
        "got 'granted'",
    ),
    (
        "approved without approver",
        lambda d: _tax(d)["approval"].pop("by"),
        "subscriptions[0].approval.by",
        "required once approved",
    ),
    (
        "expires before approval",
        lambda d: _tax(d)["approval"].update(expires="2026-01-01"),
        "subscriptions[0].approval.expires",
        "is before the approval 2026-11-01",
    ),
    (
        "bad duration",
        lambda d: _tax(d)["sla"].update(deliver_within="5 sec"),
        "subscriptions[0].sla.deliver_within",
        "expected a duration such as",
    ),
    (
        "bad partitions",
        lambda d: d["kafka"].update(partitions=0),
        "kafka.partitions",
        "greater than 0",
    ),
]


def test_the_real_topology_loads() -> None:
    topology = load_topology(TOPOLOGY)
    enterprise = topology.entity("enterprise")
    assert enterprise.key == "uscc"
    assert enterprise.fields["legal_rep_phone"].classification == "sensitive"
    assert topology.never_share == ["enterprise.legal_rep_phone"]
    assert list(topology.departments) == [
        "market_regulation",
        "tax",
        "social_security",
        "district_services",
        "public_security",
        "medical_insurance",
        "data_resource_bureau",
        "health",
        "disease_control",
        "real_estate",
        "education",
        "province",
    ]
    assert [d for d, department in topology.departments.items() if department.node] == ["province"]
    assert topology.authority == "data_resource_bureau"
    assert [s.id for s in topology.sources_for("enterprise")] == [
        "market_regulation.enterprise",
        "district_services.enterprise",
    ]
    assert [s.id for s in topology.sources_for("person")] == [
        "public_security.person",
        "social_security.person",
    ]
    assert [s.id for s in topology.sources_for("birth")] == ["health.birth"]
    assert topology.source("health.birth").cdc_topic == "cdc.health.health.birth_certificate"
    assert topology.source("district_services.enterprise").authoritative == ["contact_phone"]
    assert topology.source("social_security.person").authoritative == []
    assert [s.id for s in topology.subscriptions] == [
        "tax.enterprise",
        "social_security.enterprise",
        "social_security.person",
        "medical_insurance.person",
        "public_security.birth",
        "disease_control.birth",
        "tax.birth",
        "education.birth",
        "tax.title",
        "tax.transfer",
        "public_security.title",
        "province.enterprise",
    ]
    assert topology.federation is None  # a node that only sends needs no federation block


def test_source_queries() -> None:
    source = load_topology(TOPOLOGY).source("market_regulation.enterprise")
    assert source.cdc_topic == "cdc.market_regulation.public.enterprise"
    assert source.columns["name"].column == "ent_name"
    status = source.columns["status"]
    assert status.column == "reg_status"
    assert status.codes == {"1": "active", "2": "suspended", "3": "revoked", "4": "deregistered"}
    assert "legal_rep_phone" not in source.columns


def test_topic_names_and_durations() -> None:
    topology = load_topology(TOPOLOGY)
    tax = topology.subscription("tax.enterprise")
    assert changes_topic("enterprise") == "changes.enterprise"
    assert master_topic("enterprise") == "master.enterprise"
    assert delivery_topic(tax) == "deliver.tax.enterprise"
    assert tax.sla.deliver_within == timedelta(seconds=5)
    assert tax.sla.receipt_within == timedelta(hours=1)
    assert topology.kafka.retention == timedelta(days=7)
    assert topology.kafka.dlq_retention == timedelta(days=30)
    shown = topology.model_dump(mode="json")
    assert shown["subscriptions"][1]["sla"] == {"deliver_within": "5s", "receipt_within": "4h"}
    assert shown["kafka"]["dlq_retention"] == "30d"


def test_lookups_of_unknown_names_say_what_is_unknown() -> None:
    topology = load_topology(TOPOLOGY)
    with pytest.raises(KeyError, match="unknown entity 'vehicle'"):
        topology.entity("vehicle")
    with pytest.raises(KeyError, match=r"unknown source 'tax\.x'"):
        topology.source("tax.x")
    assert topology.sources_for("vehicle") == []


@pytest.mark.parametrize(
    ("at", "active"),
    [
        (datetime(2026, 10, 31, 15, 59, 59, tzinfo=UTC), False),  # 23:59:59 CST, day before
        (datetime(2026, 10, 31, 16, 0, tzinfo=UTC), True),  # approval day starts in CST
        (datetime(2027, 12, 31, 15, 59, 59, tzinfo=UTC), True),  # last second of expiry day
        (datetime(2027, 12, 31, 16, 0, tzinfo=UTC), False),
    ],
)
def test_subscription_is_active_between_approval_and_expiry(at: datetime, active: bool) -> None:
    topology = load_topology(TOPOLOGY)
    assert topology.subscription("tax.enterprise").is_active(at) is active
    expected = ["tax.enterprise", "social_security.enterprise"] if active else []
    assert [s.id for s in topology.active_subscriptions("enterprise", at)] == expected
    expected = ["social_security.person", "medical_insurance.person"] if active else []
    assert [s.id for s in topology.active_subscriptions("person", at)] == expected


@pytest.mark.parametrize(
    ("at", "end"),
    [
        (datetime(2026, 10, 31, 15, 59, 59, tzinfo=UTC), datetime(2026, 10, 31, 16, tzinfo=UTC)),
        (datetime(2026, 10, 31, 16, 0, tzinfo=UTC), datetime(2026, 11, 1, 16, tzinfo=UTC)),
        (datetime(2026, 11, 1, 0, 30, tzinfo=CST), datetime(2026, 11, 1, 16, tzinfo=UTC)),
    ],
)
def test_an_approval_day_ends_at_midnight_china_standard_time(at: datetime, end: datetime) -> None:
    assert approval_day_end(at) == end


@pytest.mark.parametrize("state", ["requested", "suspended", "revoked"])
def test_only_approved_subscriptions_are_active(state: str) -> None:
    tax = load_topology(TOPOLOGY).subscription("tax.enterprise")
    changed = tax.model_copy(update={"approval": tax.approval.model_copy(update={"state": state})})
    assert not changed.is_active(datetime(2027, 1, 1, tzinfo=UTC))


def test_is_active_refuses_naive_datetimes() -> None:
    tax = load_topology(TOPOLOGY).subscription("tax.enterprise")
    with pytest.raises(ValueError, match="timezone-aware"):
        tax.is_active(datetime(2027, 1, 1))


def test_unquoted_numeric_codes_are_text(tmp_path: Path) -> None:
    data = _mutated(
        lambda d: _source(d)["columns"]["status"].update(
            codes={1: "active", 2: "suspended", 3: "revoked", 4: "deregistered"}
        )
    )
    topology = load_topology(_write(tmp_path, data))
    assert (
        topology.sources[0].columns["status"].codes
        == RAW["sources"][0]["columns"]["status"]["codes"]
    )


@pytest.mark.parametrize(
    ("mutate", "path", "fragment"),
    [case[1:] for case in INVALID],
    ids=[case[0] for case in INVALID],
)
def test_invalid_topology_is_reported_with_its_path(
    tmp_path: Path, mutate: Callable[[dict[str, Any]], object], path: str, fragment: str
) -> None:
    _assert_reported(_problems(_write(tmp_path, _mutated(mutate))), path, fragment)


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    def break_three_things(data: dict[str, Any]) -> None:
        data["departments"]["tax"]["clearance"] = "public"
        _social(data)["fields"].append("legal_rep_phone")
        _source(data)["columns"]["status"]["codes"]["5"] = "closed"

    problems = _problems(_write(tmp_path, _mutated(break_three_things)))
    # Lowering tax's clearance puts two of its internal fields above it: address, contact_phone.
    _assert_reported(problems, "subscriptions[0].fields[3]", "above tax's clearance public")
    _assert_reported(problems, "subscriptions[0].fields[5]", "above tax's clearance public")
    _assert_reported(problems, "subscriptions[1].fields[5]", "never_share")
    _assert_reported(problems, 'sources[0].columns.status.codes."5"', "'closed'")
    # tax.birth (subscriptions[6]) receives sensitive fields, all above "public" too, as do
    # tax.title and tax.transfer.
    _assert_reported(problems, "subscriptions[6].fields[1]", "above tax's clearance public")
    enterprise = ("subscriptions[0]", "subscriptions[1]", "sources[0]")
    assert len([p for p in problems if p.path.startswith(enterprise)]) == 4


def test_all_structure_problems_are_reported_at_once(tmp_path: Path) -> None:
    def break_structure(data: dict[str, Any]) -> None:
        _tax(data)["sla"]["deliver_within"] = "soon"
        _enterprise(data)["name"]["type"] = "text"
        data["kafka"]["compression"] = "zstd"

    problems = _problems(_write(tmp_path, _mutated(break_structure)))
    assert {p.path for p in problems} == {
        "subscriptions[0].sla.deliver_within",
        "entities.enterprise.fields.name.type",
        "kafka.compression",
    }


def test_error_text_lists_one_problem_per_line(tmp_path: Path) -> None:
    data = _mutated(lambda d: (_tax(d).update(id="tax"), d.update(never_share=["x.y"])))
    with pytest.raises(TopologyError) as caught:
        load_topology(_write(tmp_path, data))
    assert str(caught.value).splitlines() == [
        "subscriptions[0].id: must be tax.enterprise (<department>.<entity>)",
        "never_share[0]: 'x.y' is not a known <entity>.<field>",
    ]


def test_duplicate_yaml_keys_are_reported(tmp_path: Path) -> None:
    text = TOPOLOGY.read_text(encoding="utf-8").replace(
        "  tax:               {name: 税务局, clearance: sensitive}\n",
        "  tax:               {name: 税务局, clearance: sensitive}\n"
        "  tax:               {name: 国家税务总局, clearance: secret}\n",
    )
    path = tmp_path / "topology.yaml"
    path.write_text(text, encoding="utf-8")
    _assert_reported(_problems(path), "departments.tax", "duplicate key (first on line")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("- just\n- a list\n", "must be a mapping, got list"),
        ("departments: {tax: [unclosed\n", "not valid YAML"),
        ("", "the topology is empty"),
    ],
)
def test_unusable_documents_are_reported_at_the_root(
    tmp_path: Path, text: str, fragment: str
) -> None:
    path = tmp_path / "topology.yaml"
    path.write_text(text, encoding="utf-8")
    _assert_reported(_problems(path), ROOT, fragment)


def test_missing_file_is_a_topology_error(tmp_path: Path) -> None:
    _assert_reported(_problems(tmp_path / "nope.yaml"), ROOT, "cannot read")


def test_lifecycle_must_name_a_field_and_its_symbols(tmp_path: Path) -> None:
    def unknown_field(data: dict[str, Any]) -> None:
        data["entities"]["enterprise"]["lifecycle"] = {"field": "state", "ended": ["gone"]}

    def unknown_symbol(data: dict[str, Any]) -> None:
        data["entities"]["enterprise"]["lifecycle"] = {"field": "status", "ended": ["gone"]}

    problems = _problems(_write(tmp_path, _mutated(unknown_field)))
    _assert_reported(problems, "entities.enterprise.lifecycle.field", "state")
    problems = _problems(_write(tmp_path, _mutated(unknown_symbol)))
    _assert_reported(problems, "entities.enterprise.lifecycle.ended[0]", "gone")
