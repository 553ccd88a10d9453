"""Federation in the topology: a node's upstreams and what they feed it load as inbound
sources with their mirrored topics, and every mistake in a federation block is reported
with its YAML path."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.config.settings import REPO_ROOT
from streams.contract import headers
from streams.contract.topics import (
    changes_topic,
    mirrored_topic,
    normalize_inputs,
    topic_specs,
    upstream_delivery_topic,
)
from streams.model.topology import Topology, load_topology
from tests.unit.model.test_topology import _assert_reported, _problems, _write

PROVINCE_YAML = REPO_ROOT / "deploy" / "federation" / "province.yaml"
PROVINCE_RAW = yaml.safe_load(PROVINCE_YAML.read_text(encoding="utf-8"))
CITY_RAW = yaml.safe_load((REPO_ROOT / "topology.yaml").read_text(encoding="utf-8"))
FEED_AT = "federation.upstreams[0].entities.enterprise"
SENT = [
    "uscc",
    "name",
    "status",
    "legal_rep_name",
    "registered_capital",
    "address",
    "established_on",
    "enterprise_type",
    "industry",
]


def _province(mutate: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    data = copy.deepcopy(PROVINCE_RAW)
    mutate(data)
    return data


def _upstream(data: dict[str, Any]) -> dict[str, Any]:
    return data["federation"]["upstreams"][0]


def _feed(data: dict[str, Any]) -> dict[str, Any]:
    return _upstream(data)["entities"]["enterprise"]


def _city_fed_by_province(feed: dict[str, Any]) -> dict[str, Any]:
    """The city's topology receiving enterprises from the province as well, with
    ``feed`` as what the province sends."""
    data = copy.deepcopy(CITY_RAW)
    data["federation"] = {
        "node": "city",
        "upstreams": [
            {
                "node": "province",
                "bootstrap": "127.0.0.1:29092",
                "registry": "http://127.0.0.1:28080",
                "login": "city",
                "entities": {"enterprise": feed},
            }
        ],
    }
    return data


def test_the_province_node_loads_with_the_city_as_its_upstream() -> None:
    topology = load_topology(PROVINCE_YAML)
    assert topology.federation is not None
    assert topology.federation.node == "province"
    (upstream,) = topology.federation.upstreams
    assert (upstream.node, upstream.login, upstream.bootstrap) == (
        "city",
        "province",
        "127.0.0.1:19092",
    )
    assert topology.sources == []  # everything it holds comes from the city
    (inbound,) = topology.inbound
    assert (inbound.id, inbound.entity, inbound.upstream) == (
        "city.enterprise",
        "enterprise",
        upstream,
    )
    assert inbound.feed.fields == SENT
    assert inbound.feed.authoritative is None
    assert inbound.feed.owned == SENT  # the authority for all it sends, by default
    assert topology.inbound_for("enterprise") == [inbound]
    assert topology.inbound_for("person") == []
    assert topology.changed_entities == ["enterprise"]


def test_the_upstreams_deliveries_are_mirrored_under_its_name_and_read_by_normalize() -> None:
    topology = load_topology(PROVINCE_YAML)
    (inbound,) = topology.inbound
    assert upstream_delivery_topic(inbound) == "deliver.province.enterprise"
    assert mirrored_topic(inbound) == "city.deliver.province.enterprise"
    assert normalize_inputs(topology) == ["city.deliver.province.enterprise"]
    specs = {spec.name: spec for spec in topic_specs(topology)}
    mirrored = specs["city.deliver.province.enterprise"]
    assert mirrored.partitions == topology.kafka.partitions
    assert mirrored.config == specs[changes_topic("enterprise")].config  # retained alike
    # No MirrorMaker-made topic is needed before the first record: normalize subscribes.
    assert changes_topic("enterprise") in specs


def test_the_city_as_an_upstream_stays_a_plain_node_with_its_province_subscription() -> None:
    city = load_topology(REPO_ROOT / "topology.yaml")
    assert city.federation is None
    assert city.inbound == []
    assert city.inbound_for("enterprise") == []
    assert city.changed_entities == sorted({s.entity for s in city.sources})
    assert normalize_inputs(city) == [s.cdc_topic for s in city.sources]
    assert city.departments["province"].node
    assert city.subscription("province.enterprise").fields_in(city.entity("enterprise")) == SENT


def test_a_feed_may_own_fewer_fields_than_it_sends(tmp_path: Path) -> None:
    data = _city_fed_by_province(
        {"fields": ["uscc", "legal_rep_phone"], "authoritative": ["legal_rep_phone"]}
    )
    topology: Topology = load_topology(_write(tmp_path, data))
    (inbound,) = topology.inbound_for("enterprise")
    assert (inbound.id, inbound.feed.owned) == ("province.enterprise", ["legal_rep_phone"])
    assert topology.changed_entities == sorted({s.entity for s in topology.sources})
    assert normalize_inputs(topology)[-1] == "province.deliver.city.enterprise"


INVALID: list[tuple[str, Callable[[dict[str, Any]], object], str, str]] = [
    (
        "unknown entity in a feed",
        lambda d: _upstream(d)["entities"].update(vehicle={"fields": ["plate"]}),
        "federation.upstreams[0].entities.vehicle",
        "unknown entity 'vehicle'",
    ),
    (
        "unknown field sent",
        lambda d: _feed(d)["fields"].append("phone"),
        f"{FEED_AT}.fields[9]",
        "unknown enterprise field 'phone'",
    ),
    (
        "unknown authoritative field",
        lambda d: _feed(d).update(authoritative=["uscc", "phone"]),
        f"{FEED_AT}.authoritative[1]",
        "unknown enterprise field 'phone'",
    ),
    (
        "authoritative field not sent",
        lambda d: _feed(d).update(fields=["uscc", "name"], authoritative=["uscc", "status"]),
        f"{FEED_AT}.authoritative[1]",
        "status is not among the fields it sends",
    ),
    (
        "feed without the key",
        lambda d: _feed(d)["fields"].remove("uscc"),
        f"{FEED_AT}.fields",
        "must include the entity key uscc",
    ),
    (
        "upstream is this node",
        lambda d: _upstream(d).update(node="province"),
        "federation.upstreams[0].node",
        "is this node itself",
    ),
    (
        "upstream named twice",
        lambda d: d["federation"]["upstreams"].append(copy.deepcopy(_upstream(d))),
        "federation.upstreams[1].node",
        "also federation.upstreams[0]",
    ),
    (
        "upstream node not snake_case",
        lambda d: _upstream(d).update(node="City-Node"),
        "federation.upstreams[0].node",
        "lower_snake_case",
    ),
    (
        "this node not snake_case",
        lambda d: d["federation"].update(node="Province"),
        "federation.node",
        "lower_snake_case",
    ),
    (
        "login not a department id",
        lambda d: _upstream(d).update(login="Province Node"),
        "federation.upstreams[0].login",
        "must be a department id",
    ),
    (
        "feed without fields",
        lambda d: _feed(d).update(fields=[]),
        f"{FEED_AT}.fields",
        "at least 1 item",
    ),
    (
        "typo in a feed key",
        lambda d: _feed(d).update(authoritive=["uscc"]),
        f"{FEED_AT}.authoritive",
        "unknown key",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "path", "fragment"),
    [case[1:] for case in INVALID],
    ids=[case[0] for case in INVALID],
)
def test_invalid_federation_is_reported_with_its_path(
    tmp_path: Path, mutate: Callable[[dict[str, Any]], object], path: str, fragment: str
) -> None:
    _assert_reported(_problems(_write(tmp_path, _province(mutate))), path, fragment)


def test_a_field_a_source_owns_cannot_be_owned_by_a_feed_too(tmp_path: Path) -> None:
    """一数一源: the city's market regulation owns enterprise.name already."""
    data = _city_fed_by_province(
        {
            "fields": ["uscc", "name", "legal_rep_phone"],
            "authoritative": ["legal_rep_phone", "name"],
        }
    )
    problems = _problems(_write(tmp_path, data))
    _assert_reported(
        problems,
        f"{FEED_AT}.authoritative[1]",
        "enterprise.name already has the authoritative source market_regulation.enterprise",
    )
    assert len(problems) == 1  # legal_rep_phone has no other owner


def test_a_feed_without_authoritative_is_reported_only_at_paths_it_has(tmp_path: Path) -> None:
    problems = _problems(_write(tmp_path, _province(lambda d: _feed(d)["fields"].append("phone"))))
    conflict = _problems(_write(tmp_path, _city_fed_by_province({"fields": ["uscc", "name"]})))
    assert [p.path for p in problems] == [f"{FEED_AT}.fields[9]"]
    assert [p.path for p in conflict] == [f"{FEED_AT}.fields[0]", f"{FEED_AT}.fields[1]"]


def test_the_upstream_header_round_trips() -> None:
    name, value = headers.upstream("city", "city.deliver.province.enterprise", 2, 41, 1_795)
    assert name == headers.UPSTREAM
    assert headers.parse_upstream(value.decode()) == (
        "city",
        "city.deliver.province.enterprise",
        2,
        41,
        1_795,
    )
    for bad in (None, "", "city/topic/2/41", "city/topic/x/41/1"):
        assert headers.parse_upstream(bad) is None
