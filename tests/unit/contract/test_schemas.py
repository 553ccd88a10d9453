"""Avro schemas generated from the topology: valid, minimal, and committed up to date."""

from __future__ import annotations

import copy
import io
import json
import re
from pathlib import Path
from typing import Any

import fastavro
import pytest
import yaml

from govsync.control.schema_files import SCHEMAS_DIR, write_schema_files
from streams.config.settings import REPO_ROOT
from streams.contract.schemas import (
    change_event_schema,
    delivery_schema,
    entity_state_schema,
    quality_schema,
    schema_files,
)
from streams.model.topology import Topology, load_topology
from streams.transform.masking import mask_delivery
from streams.transform.projection import project
from tests.unit.examples import CHANGE, STATE, TAX, TOPOLOGY

PERSON = {
    "resident_id": "110101199003074514",
    "name": "张三",
    "birth_date": "1990-03-07",
    "status": "registered",
    "death_date": None,
    "address": "北京市东城区示例胡同1号",
    "registered_at": "1990-03-20T01:30:00Z",
}
PERSON_CHANGE = {
    **CHANGE,
    "event_id": "7f1c2a3e-0000-5000-8000-000000000002",
    "entity": "person",
    "key": PERSON["resident_id"],
    "before": PERSON,
    "after": {**PERSON, "status": "deceased", "death_date": "2026-11-20"},
    "changed_fields": ["status", "death_date"],
    "source": "public_security.person",
}
BIRTH = {
    "certificate_no": "Q110000012345",
    "child_name": "李小明",
    "sex": "male",
    "born_at": "2026-12-01T16:30:00.250000Z",
    "mother_id": "110101199003074522",
    "father_id": "110101198805123411",
    "hospital": "北京妇产医院",
    "issued_at": "2026-12-02T01:00:00Z",
}
BIRTH_CHANGE = {
    **CHANGE,
    "event_id": "7f1c2a3e-0000-5000-8000-000000000003",
    "kind": "registered",
    "entity": "birth",
    "key": BIRTH["certificate_no"],
    "before": None,
    "after": BIRTH,
    "changed_fields": list(BIRTH),
    "source": "health.birth",
}
TITLE = {
    "title_no": "京(2020)朝阳区不动产权第0000001号",
    "address": "北京市朝阳区解放路692号",
    "area": "70.74",
    "owner_id": "110101199003074514",
    "owner_name": "张三",
    "version": 2,
    "transferred_at": "2026-12-01T02:00:00Z",
}
TRANSFER = {
    "application_no": "ZY2026120100001",
    "title_no": TITLE["title_no"],
    "seller_id": "110101198805123411",
    "buyer_id": "110101199003074514",
    "price": "3200000.00",
    "from_version": 1,
    "outcome": "registered",
    "reason": None,
    "decided_at": "2026-12-01T02:00:00Z",
}


def _registered(entity: str, source: str, state: dict[str, Any], number: int) -> dict[str, Any]:
    return {
        **CHANGE,
        "event_id": f"7f1c2a3e-0000-5000-8000-00000000000{number}",
        "kind": "registered",
        "entity": entity,
        "key": next(iter(state.values())),
        "before": None,
        "after": state,
        "changed_fields": list(state),
        "source": source,
    }


CHANGES = {
    "enterprise": CHANGE,
    "person": PERSON_CHANGE,
    "birth": BIRTH_CHANGE,
    "title": _registered("title", "real_estate.title", TITLE, 4),
    "transfer": _registered("transfer", "real_estate.transfer", TRANSFER, 5),
}


def _round_trip(schema: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    parsed = fastavro.parse_schema(schema)
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, parsed, record)
    buffer.seek(0)
    return fastavro.schemaless_reader(buffer, parsed)


def _all_schemas(topology: Topology) -> list[dict[str, Any]]:
    return [
        *(entity_state_schema(topology, name) for name in topology.entities),
        *(change_event_schema(topology, name) for name in topology.entities),
        *(delivery_schema(topology, sub) for sub in topology.subscriptions),
    ]


def _state_fields(schema: dict[str, Any]) -> dict[str, Any]:
    before = next(f for f in schema["fields"] if f["name"] == "before")
    return {field["name"]: field for field in before["type"][1]["fields"]}


def test_every_schema_parses_with_fastavro_and_survives_json() -> None:
    for schema in [*_all_schemas(TOPOLOGY), quality_schema()]:
        assert json.loads(json.dumps(schema)) == schema
        fastavro.parse_schema(json.loads(json.dumps(schema)))


def test_state_schema_names_types_and_nullability() -> None:
    schema = entity_state_schema(TOPOLOGY, "enterprise")
    assert (schema["namespace"], schema["name"]) == ("govsync.enterprise", "EnterpriseState")
    fields = {field["name"]: field for field in schema["fields"]}
    assert list(fields) == list(TOPOLOGY.entity("enterprise").fields)
    assert fields["uscc"]["type"] == "string"
    assert "default" not in fields["uscc"]
    assert fields["registered_capital"] == {
        "name": "registered_capital",
        "type": ["null", "string"],
        "default": None,
        "doc": "classification: public",
    }
    assert fields["legal_rep_id"]["doc"] == "classification: sensitive"
    status = fields["status"]["type"][1]
    assert status["type"] == "enum"
    assert status["name"] == "EnterpriseStatus"
    assert status["symbols"] == ["active", "suspended", "revoked", "deregistered"]


def test_change_schema_envelope() -> None:
    schema = change_event_schema(TOPOLOGY, "enterprise")
    assert (schema["namespace"], schema["name"]) == ("govsync.enterprise", "EnterpriseChange")
    assert [field["name"] for field in schema["fields"]] == list(CHANGE)
    kind = schema["fields"][1]["type"]
    assert kind["name"] == "ChangeKind"
    assert kind["symbols"] == ["registered", "updated", "deregistered", "snapshot", "deleted"]
    assert _state_fields(schema).keys() == STATE.keys()


def test_change_event_round_trips() -> None:
    schema = change_event_schema(TOPOLOGY, "enterprise")
    assert _round_trip(schema, CHANGE) == CHANGE
    registered = {**CHANGE, "kind": "registered", "before": None, "changed_fields": list(STATE)}
    assert _round_trip(schema, registered) == registered
    assert _round_trip(change_event_schema(TOPOLOGY, "person"), PERSON_CHANGE) == PERSON_CHANGE


def test_tax_delivery_schema_holds_exactly_tax_fields() -> None:
    schema = delivery_schema(TOPOLOGY, TAX)
    assert (schema["namespace"], schema["name"]) == ("govsync.deliver.tax", "EnterpriseDelivery")
    assert [field["name"] for field in schema["fields"]] == [*CHANGE, "subscription"]
    state = _state_fields(schema)
    assert set(state) == set(TAX.fields)
    assert list(state) == [
        "uscc",
        "name",
        "status",
        "registered_capital",
        "address",
        "contact_phone",
        "enterprise_type",
        "industry",
    ]
    assert state["uscc"]["type"] == "string"
    assert all(state[name]["type"][0] == "null" for name in state if name != "uscc")
    assert state["status"]["type"][1]["namespace"] == "govsync.deliver.tax.enums"


def test_projected_delivery_round_trips() -> None:
    assert {subscription.entity for subscription in TOPOLOGY.subscriptions} == set(CHANGES)
    for subscription in TOPOLOGY.subscriptions:
        entity = TOPOLOGY.entity(subscription.entity)
        projected = project(CHANGES[subscription.entity], subscription, entity)
        assert projected is not None
        delivery = mask_delivery(projected, subscription, b"k" * 32)
        assert _round_trip(delivery_schema(TOPOLOGY, subscription), delivery) == delivery


def test_enum_field_named_state_does_not_collide_with_the_record() -> None:
    data = TOPOLOGY.model_dump()
    data["entities"]["enterprise"]["fields"]["state"] = {
        "type": "enum",
        "symbols": ["open", "closed"],
        "classification": "public",
    }
    topology = Topology.model_validate(data)
    for schema in _all_schemas(topology):
        fastavro.parse_schema(schema)


def test_committed_schema_files_match_the_topology() -> None:
    expected = schema_files(TOPOLOGY)
    hint = "schemas/ is stale: run `python -m govsync.control.schema_files`"
    for name, text in expected.items():
        path = SCHEMAS_DIR / name
        assert path.exists(), hint
        assert path.read_text(encoding="utf-8") == text, hint
    generated_looking = re.compile(
        r"(quality|receipts|audit|trace)\.avsc|[a-z0-9_]+\.(state|change)\.avsc|deliver\..+\.avsc"
    )
    stale = [p.name for p in SCHEMAS_DIR.iterdir() if generated_looking.fullmatch(p.name)]
    assert sorted(stale) == sorted(expected), hint
    assert "quality.avsc" in expected
    assert json.loads(expected["quality.avsc"]) == quality_schema()


def test_write_schema_files_replaces_stale_generated_files(tmp_path: Path) -> None:
    (tmp_path / "deliver.customs.enterprise.avsc").write_text("{}")
    (tmp_path / "receipt.avsc").write_text("{}")
    written = write_schema_files(TOPOLOGY, tmp_path)
    assert sorted(p.name for p in written) == sorted(schema_files(TOPOLOGY))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*schema_files(TOPOLOGY), "receipt.avsc"]
    )
    text = (tmp_path / "deliver.tax.enterprise.avsc").read_text(encoding="utf-8")
    assert text.endswith("}\n")
    assert json.loads(text) == delivery_schema(TOPOLOGY, TAX)


@pytest.mark.parametrize(
    "subscription_id",
    [
        "tax.enterprise",
        "social_security.enterprise",
        "social_security.person",
        "medical_insurance.person",
    ],
)
def test_reordering_a_subscription_keeps_its_schema(subscription_id: str, tmp_path: Path) -> None:
    raw = yaml.safe_load((REPO_ROOT / "topology.yaml").read_text(encoding="utf-8"))
    shuffled = copy.deepcopy(raw)
    for sub in shuffled["subscriptions"]:
        sub["fields"].reverse()
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(shuffled, allow_unicode=True, sort_keys=False), encoding="utf-8")
    reordered = load_topology(path)
    assert delivery_schema(reordered, reordered.subscription(subscription_id)) == delivery_schema(
        TOPOLOGY, TOPOLOGY.subscription(subscription_id)
    )
