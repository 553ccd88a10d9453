"""A standby node: this stack following a primary node, ready to take over its work.

A node's record of truth is its Kafka topics; everything else is rebuilt from them (the
route's stores from their changelogs, the indexes from the trail) except the schema
registry, whose ids every record carries. So a standby is:

- **Kafka's MirrorMaker 2** copying every topic of the primary here under the same name
  (``IdentityReplicationPolicy``), committed records only, and translating every consumer
  group's committed offsets to this cluster's every few seconds (a copy sits at another
  offset here: transaction markers take offsets on the primary and are not copied);
- **the primary's schemas**, exported from its registry and imported into this node's
  empty one with their ids (Apicurio's own export and import), so mirrored records decode
  here and this node's writers find the same ids;
- the **same secrets** as the primary (Kafka and registry passwords, masking, receipt and
  signing keys), copied by the operators: departments log in unchanged after a take-over,
  and a masked value stays the same pseudonym;
- this node's own **indexer and ACL keeper**, on the mirrored trail and approvals, so
  trace and who-received answer at once after a take-over.

``promote`` is the take-over: the mirror stops, and the worker and the query API start
here. The stages resume from the translated offsets, so they read again a few seconds of
input: deliveries are not repeated (the route's dedup by event_id), nor is the audit
trail (the ledger skips what its chain already holds, stages/ledger.py). Capture moves
separately: Debezium's offsets come with the mirrored ``govsync-connect-offsets``.

MirrorMaker copies each topic and each group's offsets on its own schedule, so at any
moment a group's translated offset may already be past inputs whose outputs (a delivery,
an audit record) are not copied yet: a standby taking over then would never write them.
So while the primary is reachable, ``promote`` first drains: it waits for the primary's
stages to stop, for the last committed record of every partition to be here, and for
one more translation of the offsets. Only ``--now`` (the primary lost) skips that, and
the role file says the take-over was not drained.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import httpx
import psycopg
from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, Message
from confluent_kafka.admin import AdminClient
from pydantic import BaseModel

from govsync.control import access
from govsync.index import store as index_store
from govsync.index import witness
from govsync.stack import background, jvm, kafka, mirror, postgres, registry, supervision
from govsync.stack.process import StackError
from streams.config import tls
from streams.config.secrets import write_private
from streams.config.settings import Settings
from streams.contract.topics import (
    CDC_PREFIX,
    STANDBY_NOT_COPIED,
    STANDBY_SOURCE,
    STANDBY_SYNC_SECONDS,
    STANDBY_TARGET,
    STANDBY_UNSYNCED_GROUPS,
)
from streams.kafka import admin, credentials, topic_reader
from streams.kafka.admin import AdminError
from streams.kafka.members import stage_members
from streams.model.topology import Topology, load_topology

NAME = "standby-mirror"
REGISTRY_API = "/apis/registry/v3"
DRAIN_TIMEOUT_S = 300.0
# A record as both clusters hold it: MirrorMaker keeps key, value and timestamp, and
# copies a partition in order, so a copy holding the primary's last record holds it all.
Fingerprint = tuple[bytes | None, bytes | None, int]
COPY_TAIL = 64  # offsets read at the end of each copy, for records written since


class Primary(BaseModel):
    """The node this one follows."""

    bootstrap: str
    registry: str  # its schema registry's base URL


class Role(BaseModel):
    """What this node is to a primary: following it, or promoted in its place."""

    primary: Primary
    following_since: datetime
    promoted_at: datetime | None = None
    # Whether every record the primary's stages committed was copied before the take-over
    # (False: taken over with --now, the primary lost).
    drained: bool | None = None


def _role_file(settings: Settings) -> Path:
    return settings.path("standby", "role.json")


def role(settings: Settings) -> Role | None:
    path = _role_file(settings)
    return Role.model_validate_json(path.read_text()) if path.exists() else None


def render(settings: Settings, primary: Primary) -> str:
    """MirrorMaker's configuration (owner-only: it holds the admin password). It logs in
    at both clusters as ``admin``: it reads every topic and group there, and writes every
    topic and group offset here, which is what the admin principal is for."""
    password = credentials.password(settings, credentials.ADMIN)
    jaas = credentials.jaas(credentials.ADMIN, password)
    return jvm.render_config(
        "standby-mirror.properties",
        settings.path("standby", "mirror-maker.properties"),
        primary=STANDBY_SOURCE,
        standby=STANDBY_TARGET,
        primary_bootstrap=primary.bootstrap,
        primary_jaas=jaas,
        standby_bootstrap=settings.bootstrap,
        client_protocol=settings.kafka_protocol,
        standby_jaas=jaas,
        tls_config=tls.java_client_config(settings, f"{STANDBY_TARGET}."),
        topics_exclude=", ".join(STANDBY_NOT_COPIED),
        groups_exclude=", ".join(STANDBY_UNSYNCED_GROUPS),
        sync_seconds=STANDBY_SYNC_SECONDS,
    )


def follow(
    settings: Settings, primary: Primary, progress: Callable[[str], None] = lambda _: None
) -> Role:
    """Make this stack a standby of ``primary``; again, to take the primary's schemas anew
    (after a ``topology apply`` there). Refused once promoted."""
    current = role(settings)
    if current is not None and current.promoted_at is not None:
        raise StackError(
            f"this node took over from {current.primary.bootstrap} at "
            f"{current.promoted_at:%Y-%m-%d %H:%M:%S}Z; it follows no primary any more"
        )
    _check_secrets(settings, primary)
    progress("fetching Kafka, Connect and Apicurio from Maven Central (first run only)")
    jvm.ensure_dist(settings)
    topology = load_topology(settings.topology)
    progress("starting PostgreSQL")
    postgres.start(settings)
    index_store.ensure(settings)
    witness.ensure(settings)
    progress("starting Kafka")
    kafka.start(settings)
    progress("creating Kafka users and ACLs")
    access.apply(admin.admin_client(settings.bootstrap), settings, topology)
    progress("copying the primary's schemas, with their ids")
    copy_schemas(settings, topology, primary)
    progress("starting MirrorMaker (every topic, and the groups' offsets)")
    supervision.stop(settings, NAME)
    config = render(settings, primary)
    supervision.start(
        settings, mirror.mirror_maker(settings, NAME, config, STANDBY_TARGET), wait=True
    )
    _wait_for_topics(settings, primary)
    progress("starting the indexer and the ACL keeper")
    background.start_indexer(settings)
    background.start_acl(settings)
    following = Role(
        primary=primary,
        following_since=current.following_since if current else datetime.now(UTC),
    )
    write_private(_role_file(settings), following.model_dump_json(indent=2))
    return following


def promote(
    settings: Settings,
    progress: Callable[[str], None] = lambda _: None,
    *,
    now: bool = False,
    timeout: float = DRAIN_TIMEOUT_S,
) -> Role:
    """Take over: drain the copy (unless ``now``, or taken over already), stop copying,
    and run the stages and the query API here."""
    current = role(settings)
    if current is None:
        raise StackError("this node follows no primary: nothing to take over from")
    drained = current.drained
    if current.promoted_at is None:
        if not now:
            drain(settings, current.primary, progress, timeout)
        drained = not now
    progress("stopping MirrorMaker")
    supervision.stop(settings, NAME)
    promoted = current.model_copy(
        update={"promoted_at": current.promoted_at or datetime.now(UTC), "drained": drained}
    )
    write_private(_role_file(settings), promoted.model_dump_json(indent=2))
    progress("starting the worker")
    background.start_worker(settings)
    progress("starting the query API")
    background.start_api(settings)
    return promoted


def drain(
    settings: Settings,
    primary: Primary,
    progress: Callable[[str], None] = lambda _: None,
    timeout: float = DRAIN_TIMEOUT_S,
) -> None:
    """Wait until the primary's stages have stopped, every record they committed is here,
    and the groups' offsets are translated once more. Refused after ``timeout``, or when
    the primary cannot be asked: never an undrained take-over unless asked for (--now)."""
    deadline = time.monotonic() + timeout
    without = (
        "`govsync standby promote --now` takes over without draining, and without what is "
        "not copied yet"
    )

    def waited(what: str) -> None:
        if time.monotonic() > deadline:
            raise StackError(f"{what} after {timeout:.0f}s; {without}")
        time.sleep(1)

    try:
        while running := sorted({m.stage for m in stage_members(_client(primary))}):
            progress(f"waiting for the primary's stages to stop: {', '.join(running)} run")
            waited(
                f"the primary's stages {', '.join(running)} still run: stop its worker "
                "instances first, leaving its Kafka up until this returns"
            )
        while left := uncopied(settings, primary):
            progress(f"copying the primary's last records: {_partitions(left)} to go")
            waited(
                f"MirrorMaker has not copied the last records of {_partitions(left)} (e.g. "
                f"{min(left)}); see {settings.path('logs', f'{NAME}.log')}"
            )
    except (AdminError, KafkaException, topic_reader.StalledRead) as exc:
        raise StackError(
            f"cannot drain the copy: the primary at {primary.bootstrap} does not answer "
            f"({exc}); if it is lost, {without}"
        ) from exc
    progress(f"waiting {2 * STANDBY_SYNC_SECONDS}s for the groups' final offsets")
    time.sleep(2 * STANDBY_SYNC_SECONDS)


def uncopied(settings: Settings, primary: Primary) -> dict[str, int]:
    """Per copied topic, its partitions whose last committed record on the primary is not
    among the last records here yet. The primary is read first, so a record written there
    meanwhile (Debezium's heartbeats, Connect's offsets) is never waited for."""
    topics = sorted(mirrored_topics(set(_client(primary).list_topics(timeout=15).topics)))
    last = {
        tp: _fingerprint(records[-1]) if records else None
        for tp, records in topic_reader.tails(primary.bootstrap, topics).items()
    }
    here = {
        tp: {_fingerprint(m) for m in records}
        for tp, records in topic_reader.tails(settings.bootstrap, topics, COPY_TAIL).items()
    }
    return behind(last, here)


def behind(
    primary: dict[tuple[str, int], Fingerprint | None],
    here: dict[tuple[str, int], set[Fingerprint]],
) -> dict[str, int]:
    """Per topic, how many partitions do not hold the primary's last record among their
    last records here (a partition empty on the primary has nothing to copy)."""
    found: dict[str, int] = {}
    for (topic, partition), last in primary.items():
        if last is not None and last not in here.get((topic, partition), set()):
            found[topic] = found.get(topic, 0) + 1
    return found


def _fingerprint(message: Message) -> Fingerprint:
    return message.key(), message.value(), message.timestamp()[1]


def _partitions(by_topic: dict[str, int]) -> str:
    count = sum(by_topic.values())
    topics = len(by_topic)
    return f"{count} partition{'s' * (count != 1)} of {topics} topic{'s' * (topics != 1)}"


def _client(primary: Primary) -> AdminClient:
    return admin.admin_client(primary.bootstrap)


def mirrored_topics(topics: set[str]) -> set[str]:
    """The topics MirrorMaker copies (not those its ``topics.exclude`` names)."""
    return {t for t in topics if not any(re.fullmatch(x, t) for x in STANDBY_NOT_COPIED)}


def _wait_for_topics(settings: Settings, primary: Primary, timeout: float = 180.0) -> None:
    """Until MirrorMaker has made every topic of the primary here (it looks every few
    seconds), so what follows can read them."""
    wanted = mirrored_topics(set(_client(primary).list_topics(timeout=15).topics))
    here = admin.admin_client(settings.bootstrap)
    deadline = time.monotonic() + timeout
    while missing := wanted - set(here.list_topics(timeout=15).topics):
        if time.monotonic() > deadline:
            raise StackError(
                f"MirrorMaker made {len(wanted) - len(missing)} of the primary's {len(wanted)} "
                f"topics here in {timeout:.0f}s (missing e.g. {sorted(missing)[0]}); see "
                f"{settings.path('logs', f'{NAME}.log')}"
            )
        time.sleep(1)


def _check_secrets(settings: Settings, primary: Primary) -> None:
    """The secrets here must be the primary's: MirrorMaker logs in there with them, and the
    departments will log in here with theirs after a take-over."""
    secrets = settings.path("secrets")
    if not (secrets / f"kafka-{credentials.ADMIN}.password").exists():
        raise StackError(
            f"{secrets} holds no secrets: copy the primary's <state>/secrets there first "
            "(the same logins and keys serve the departments after a take-over)"
        )
    client = AdminClient(
        {
            "bootstrap.servers": primary.bootstrap,
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanisms": credentials.MECHANISM,
            "sasl.username": credentials.ADMIN,
            "sasl.password": credentials.password(settings, credentials.ADMIN),
        }
    )
    try:
        client.list_topics(timeout=15)
    except Exception as exc:  # confluent-kafka raises KafkaException with the broker's reason
        raise StackError(
            f"cannot log in to the primary at {primary.bootstrap} as {credentials.ADMIN} with "
            f"{secrets}: {exc} (are these the primary's secrets?)"
        ) from exc


def copy_schemas(settings: Settings, topology: Topology, primary: Primary) -> int:
    """Replace this node's registry content with the primary's, ids kept (an import keeps
    them only into an empty registry, so the registry's database is made anew); how many
    bytes the export had."""
    auth = (credentials.ADMIN, credentials.registry_password(settings, credentials.ADMIN))
    exported = httpx.get(f"{primary.registry}{REGISTRY_API}/admin/export", auth=auth, timeout=120)
    if exported.status_code != 200:
        raise StackError(
            f"the primary's registry at {primary.registry} refused the export: "
            f"HTTP {exported.status_code} {exported.text[:200]}"
        )
    supervision.stop(settings, registry.NAME)
    with psycopg.connect(settings.pg_conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{postgres.REGISTRY_DATABASE}" WITH (FORCE)')
    postgres.ensure_databases(settings, [postgres.REGISTRY_DATABASE])
    registry.start(settings, topology)
    imported = httpx.post(
        f"{settings.registry_base_url}{REGISTRY_API}/admin/import",
        content=exported.content,
        headers={"Content-Type": "application/zip"},
        auth=auth,
        timeout=300,
        verify=tls.http_verify(settings),
    )
    if imported.status_code >= 300:
        raise StackError(
            f"this node's registry refused the primary's schemas: HTTP {imported.status_code} "
            f"{imported.text[:200]}"
        )
    return len(exported.content)


class StandbyStatus(BaseModel):
    role: Role | None
    mirror: Literal["up", "down"]
    # Records of each capture topic the primary has and this node not yet. Exact there:
    # Connect writes them without transactions, so offsets match on both clusters (the
    # stages' topics have transaction markers on the primary only).
    capture_behind: dict[str, int]
    # Per copied topic, its partitions whose last committed record is not here yet.
    uncopied: dict[str, int]
    # Groups with committed offsets on the primary, and whether MirrorMaker has given
    # each its translated offsets here yet.
    groups: dict[str, bool]


def status(settings: Settings) -> StandbyStatus:
    current = role(settings)
    mirror = "up" if supervision.is_running(settings, NAME) else "down"
    if current is None or current.promoted_at is not None:
        return StandbyStatus(role=current, mirror=mirror, capture_behind={}, uncopied={}, groups={})
    here = admin.admin_client(settings.bootstrap)
    capture = sorted(t for t in here.list_topics(timeout=15).topics if t.startswith(CDC_PREFIX))
    primary_ends = topic_reader.end_offsets(current.primary.bootstrap, capture)
    local_ends = topic_reader.end_offsets(settings.bootstrap, capture)
    records_behind = dict.fromkeys(capture, 0)
    for (topic, partition), end in primary_ends.items():
        records_behind[topic] += max(0, end - local_ends.get((topic, partition), 0))
    return StandbyStatus(
        role=current,
        mirror=mirror,
        capture_behind=records_behind,
        uncopied=uncopied(settings, current.primary),
        groups=translated(settings, _groups(current.primary.bootstrap)),
    )


def _groups(bootstrap: str) -> list[str]:
    client = admin.admin_client(bootstrap)  # kept: the request dies with its client
    listed = client.list_consumer_groups().result(timeout=15)
    return sorted(g.group_id for g in listed.valid if g.group_id not in STANDBY_UNSYNCED_GROUPS)


def translated(settings: Settings, groups: list[str]) -> dict[str, bool]:
    """Whether MirrorMaker has given each group committed offsets here yet."""
    client = admin.admin_client(settings.bootstrap)
    found = {}
    for group in groups:
        future = client.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])
        partitions = future[group].result().topic_partitions or []
        found[group] = any(tp.offset >= 0 for tp in partitions)
    return found
