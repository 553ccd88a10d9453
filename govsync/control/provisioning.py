"""`govsync topology apply`: make Kafka, the registry and Connect match the topology.

Order matters: topics first (Debezium must not create them with default settings),
then schemas (the worker serializes against registered schemas only), then the
connectors (which start producing at once). Every step is idempotent.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal, Protocol

from pydantic import BaseModel

from connectors.sources import debezium
from govsync.control import access
from streams.config.settings import Settings
from streams.contract import approvals, schemas
from streams.contract.topics import topic_specs
from streams.kafka import admin, applied, lifecycle, serde
from streams.model.topology import Topology


class ApplyReport(BaseModel):
    """What an apply did, or with ``dry_run`` what it would do (the plan): nothing changed."""

    dry_run: bool = False
    topics: dict[str, str]
    schemas: dict[str, int]  # topic -> registered schema id
    new_schemas: list[str] = []  # dry run: topics whose schema is not registered yet
    connectors: dict[str, str]
    acls: dict[str, int]
    registry_users: Literal["unchanged", "updated, registry restarted"]
    changes: list[applied.Change]
    # Subscriptions whose approval block the data authority recorded as its decision
    # (--as-authority), and those whose block differs from the decision in force but was
    # not recorded: an apply by anyone else does not change who may receive what.
    decided: list[str] = []
    undecided: list[str] = []


class RegistryUsers(Protocol):
    """A schema registry whose logins govsync manages (the embedded stack's Apicurio reads
    its users at start-up). A registry run by someone else is left alone."""

    def users_outdated(self, settings: Settings, topology: Topology) -> bool:
        """A principal of ``topology`` has no registry login yet."""
        ...

    def restart(self, settings: Settings, topology: Topology) -> None: ...


def apply(
    topology: Topology,
    settings: Settings,
    text: str,
    registry_users: RegistryUsers | None = None,
    dry_run: bool = False,
    as_authority: bool = False,
) -> ApplyReport:
    """Make the cluster match ``topology`` (parsed from ``text``), then publish ``text`` as
    the applied topology, which running workers follow: publishing comes last, so they
    never serve a subscription whose topic or schema does not exist yet. With ``dry_run``
    nothing is changed and the report is the plan.

    ``registry_users`` is the embedded stack's hook for logins of new principals: the
    registry restarts with them, capture paused meanwhile (Debezium's converter does not
    retry a refused connection).

    ``as_authority``: the topology's approval blocks become the data authority's decisions,
    signed with its key and written as its principal (the key must be here)."""
    client = admin.admin_client(settings.bootstrap)
    serde.ensure_reachable(settings)
    # Read before the topics are made: a topic just created has no leader for a moment.
    in_force = lifecycle.decisions(settings, topology)
    topics = admin.ensure_topics(client, topic_specs(topology), dry_run=dry_run)
    acls = access.apply(client, settings, approvals.effective(topology, in_force), dry_run)
    restart = registry_users is not None and registry_users.users_outdated(settings, topology)
    if restart and not dry_run:
        assert registry_users is not None
        with debezium.paused(topology, settings):
            registry_users.restart(settings, topology)
    schema_registry = serde.registry_client(settings)
    wanted = schemas.value_schemas(topology)
    registered: dict[str, int] = {}
    new: list[str] = []
    for topic, schema in wanted.items():
        if not dry_run:
            registered[topic] = serde.register(schema_registry, topic, schema)
        elif (schema_id := serde.registered_id(schema_registry, topic, schema)) is not None:
            registered[topic] = schema_id
        else:
            new.append(topic)
    connectors = debezium.apply(topology, settings, dry_run=dry_run)
    changes = applied.publish(settings.bootstrap, text, topology, dry_run=dry_run)
    differing = approvals.differing(topology, in_force)
    decided = differing if as_authority and dry_run else []
    if as_authority and differing and not dry_run:
        decided = record_approvals(settings, topology, differing, in_force)
        in_force = lifecycle.decisions(settings, topology)
        acls = access.reconcile_acls(client, approvals.effective(topology, in_force))
    return ApplyReport(
        dry_run=dry_run,
        topics=topics,
        schemas=registered,
        new_schemas=new,
        connectors=connectors,
        acls=acls,
        registry_users="updated, registry restarted" if restart else "unchanged",
        changes=changes,
        decided=decided,
        undecided=[] if as_authority else differing,
    )


def record_approvals(
    settings: Settings,
    topology: Topology,
    subscriptions: list[str],
    in_force: dict[str, approvals.Decision],
) -> list[str]:
    """The authority's decisions: each of ``subscriptions`` as its approval block says."""
    if topology.authority is None:
        raise approvals.Refused("the topology names no data authority (authority:)")
    now = datetime.now(UTC)
    for subscription in subscriptions:
        decision = approvals.decide(
            approvals.Action.APPLY,
            topology,
            subscription,
            in_force.get(subscription),
            None,
            principal=topology.authority,
            now=now,
        )
        lifecycle.publish(settings, decision, topology.authority)
    return subscriptions
