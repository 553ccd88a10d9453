"""deploy/kubernetes/strimzi/, checked without a cluster: each custom resource against the
vendored Strimzi CRD's schema, each built-in one against Kubernetes' own, the committed
files against a fresh render, and the KafkaUsers' ACLs against the embedded stack's."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from confluent_kafka.admin import AclOperation

from connectors.sinks import SINKS, process_name
from govsync.control import access, strimzi
from streams.config.settings import REPO_ROOT, Settings
from tests.unit.examples import TOPOLOGY

CRDS = REPO_ROOT / "deploy" / "kubernetes" / "crds" / "strimzi-1.2.0"
KUBERNETES_VERSION = "1.37.0"  # the newest kubernetes-validate 1.37.0 bundles
DURING = datetime(2026, 12, 1, tzinfo=UTC)  # every example subscription is active
RESOURCES = strimzi.render(TOPOLOGY, Settings(), at=DURING, sinks=SINKS)


def _structural(schema: Any) -> Any:
    """A CRD's OpenAPI v3 structural schema as JSON Schema, as strict as the API server
    with field validation: unknown fields are refused (where the schema does not preserve
    them), ``nullable`` admits null, ``x-kubernetes-*`` keys are dropped."""
    if isinstance(schema, list):
        return [_structural(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {
        key: value if key in ("enum", "required", "pattern", "default") else _structural(value)
        for key, value in schema.items()
        if not key.startswith("x-kubernetes-") and key != "nullable"
    }
    if schema.get("x-kubernetes-int-or-string"):
        converted["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if schema.get("nullable") and "type" in converted:
        converted["type"] = [converted["type"], "null"]
    if (
        schema.get("type") == "object"  # not the value validations of oneOf and the like
        and "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        converted["additionalProperties"] = False
    return converted


@cache
def _crd_schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> the served version's schema, for every vendored CRD."""
    schemas = {}
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text(encoding="utf-8"))
        for version in crd["spec"]["versions"]:
            if version["served"]:
                api = f"{crd['spec']['group']}/{version['name']}"
                schema = _structural(version["schema"]["openAPIV3Schema"])
                schema["properties"]["metadata"] = {"type": "object"}  # the API server's part
                schemas[api, crd["spec"]["names"]["kind"]] = schema
    return schemas


def _validate_custom(resource: dict) -> None:
    schema = _crd_schemas()[resource["apiVersion"], resource["kind"]]
    jsonschema.validate(resource, schema, cls=jsonschema.Draft4Validator)


def _as_json(resource: dict) -> dict:
    """As kubectl sends it: YAML parsed to JSON types (no Python-only values)."""
    return json.loads(json.dumps(resource))


def _custom(resource: dict) -> bool:
    return resource["apiVersion"].startswith("kafka.strimzi.io/")


def test_the_vendored_crds_cover_every_custom_kind_rendered() -> None:
    kinds = {(r["apiVersion"], r["kind"]) for r in RESOURCES if _custom(r)}
    assert kinds <= set(_crd_schemas())
    assert {kind for _, kind in kinds} == {
        "Kafka",
        "KafkaNodePool",
        "KafkaConnect",
        "KafkaConnector",
        "KafkaTopic",
        "KafkaUser",
    }


@pytest.mark.parametrize(
    "resource",
    [r for r in RESOURCES if _custom(r)],
    ids=lambda r: f"{r['kind']}/{r['metadata']['name']}",
)
def test_custom_resources_validate_against_strimzis_crds(resource: dict) -> None:
    _validate_custom(_as_json(resource))


@pytest.mark.parametrize(
    "resource",
    [r for r in RESOURCES if not _custom(r)],
    ids=lambda r: f"{r['kind']}/{r['metadata']['name']}",
)
def test_built_in_resources_validate_against_kubernetes_schemas(resource: dict) -> None:
    kubernetes_validate.validate(_as_json(resource), KUBERNETES_VERSION, strict=True)


def test_a_broken_resource_is_refused() -> None:
    topic = copy.deepcopy(next(r for r in RESOURCES if r["kind"] == "KafkaTopic"))
    topic["spec"]["partitions"] = "six"
    with pytest.raises(jsonschema.ValidationError, match="six"):
        _validate_custom(topic)
    user = copy.deepcopy(next(r for r in RESOURCES if r["kind"] == "KafkaUser"))
    user["spec"]["authentication"]["typo"] = "scram-sha-512"
    with pytest.raises(jsonschema.ValidationError, match="typo"):
        _validate_custom(user)
    deployment = copy.deepcopy(next(r for r in RESOURCES if r["kind"] == "Deployment"))
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_kafkauser_acls_equal_the_embedded_stacks() -> None:
    principal_of = {strimzi.kubernetes_name(p): p for p in access.principals(TOPOLOGY)}
    resource_type_of = {name: kind for kind, name in strimzi.RESOURCE_TYPES.items()}
    pattern_of = {name: pattern for pattern, name in strimzi.PATTERN_TYPES.items()}
    operation_of = {strimzi.operation_name(op): op for op in AclOperation}
    rendered = set()
    users = [r for r in RESOURCES if r["kind"] == "KafkaUser"]
    for user in users:
        for acl in user["spec"].get("authorization", {}).get("acls", []):
            resource = acl["resource"]
            assert acl["host"] == "*"
            rendered |= {
                (
                    principal_of[user["metadata"]["name"]],
                    resource_type_of[resource["type"]],
                    resource.get("name", "kafka-cluster"),
                    pattern_of[resource["patternType"]],
                    operation_of[operation],
                )
                for operation in acl["operations"]
            }
    assert rendered == access.grants(TOPOLOGY, DURING)
    assert sorted(u["metadata"]["name"] for u in users) == sorted(["admin", *principal_of])


def test_topics_are_the_ones_apply_creates() -> None:
    from streams.contract.topics import topic_specs

    rendered = {
        r["spec"]["topicName"]: (r["spec"]["partitions"], r["spec"]["config"])
        for r in RESOURCES
        if r["kind"] == "KafkaTopic"
    }
    assert rendered == {s.name: (s.partitions, s.config) for s in topic_specs(TOPOLOGY)}


def test_connectors_hold_no_embedded_addresses_or_secret_files() -> None:
    text = json.dumps([r for r in RESOURCES if r["kind"] == "KafkaConnector"])
    assert "${file:" not in text
    assert Settings().host not in text
    assert "${secrets:govsync/connect:password}" in text


def test_committed_files_match_a_fresh_render() -> None:
    hint = "deploy/kubernetes/strimzi/ is stale: run `govsync topology render --target strimzi`"
    expected = strimzi.files(strimzi.render(TOPOLOGY, Settings(), sinks=SINKS))
    directory = Path(strimzi.OUTPUT_DIR)
    committed = {p.name: p.read_text(encoding="utf-8") for p in directory.glob("*.yaml")}
    assert committed == expected, hint


def test_an_unknown_target_is_refused() -> None:
    from typer.testing import CliRunner

    from govsync.cli import app

    result = CliRunner().invoke(app, ["topology", "render", "--target", "helm"])
    assert result.exit_code == 2
    assert "unknown target 'helm'" in result.output


def test_every_reference_sink_runs_under_its_embedded_name() -> None:
    deployments = {r["metadata"]["name"] for r in RESOURCES if r["kind"] == "Deployment"}
    assert {f"govsync-{process_name(d)}" for d in SINKS} <= deployments
