"""A standby's MirrorMaker configuration, read back from the file govsync writes: every
topic of the primary under its own name, committed records only, every committing
group's offsets translated, nothing written to the primary."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from govsync.stack import standby
from streams.config.settings import Settings
from streams.contract.topics import INDEX_GROUP, LEDGER_TAIL_GROUP, STANDBY_SYNC_SECONDS
from tests.unit.stack.test_mirror import properties

PRIMARY = standby.Primary(bootstrap="10.0.0.1:9092", registry="http://10.0.0.1:8080")


@pytest.fixture()
def config(tmp_path: Path) -> dict[str, str]:
    settings = Settings(state_dir=tmp_path)
    path = standby.render(settings, PRIMARY)
    assert stat.S_IMODE(Path(path).stat().st_mode) == 0o600  # it holds the admin password
    return properties(path)


def test_every_topic_is_copied_under_its_own_name_committed_records_only(
    config: dict[str, str],
) -> None:
    assert config["clusters"] == "primary, standby"
    assert config["primary.bootstrap.servers"] == PRIMARY.bootstrap
    assert config["primary->standby.enabled"] == "true"
    assert config["standby->primary.enabled"] == "false"
    assert config["replication.policy.class"].endswith(".IdentityReplicationPolicy")
    assert config["topics"] == ".*"
    assert config["primary.consumer.isolation.level"] == "read_committed"
    assert config["sync.topic.configs.enabled"] == "true"  # the changelogs stay compacted
    assert config["offset-syncs.topic.location"] == "target"  # nothing written there
    assert 'username="admin"' in config["primary.sasl.jaas.config"]


def test_committed_offsets_are_translated_for_every_group_that_commits(
    config: dict[str, str],
) -> None:
    assert config["sync.group.offsets.enabled"] == "true"
    assert config["emit.checkpoints.enabled"] == "true"
    assert config["sync.group.offsets.interval.seconds"] == str(STANDBY_SYNC_SECONDS)
    assert config["groups"] == ".*"
    excluded = config["groups.exclude"].split(", ")
    assert LEDGER_TAIL_GROUP in excluded and INDEX_GROUP in excluded
    assert "govsync-route" not in excluded


def test_what_is_not_copied_is_kafkas_own_and_mirrormakers() -> None:
    topics = {
        "deliver.tax.enterprise",
        "govsync.audit",
        "govsync-connect-offsets",  # Debezium's source offsets: capture resumes from them
        "__consumer_offsets",
        "__debezium-heartbeat.cdc.market_regulation",
        "mm2-offset-syncs.standby.internal",
        "primary.checkpoints.internal",
    }
    assert standby.mirrored_topics(topics) == {
        "deliver.tax.enterprise",
        "govsync.audit",
        "govsync-connect-offsets",
    }


def test_a_standby_without_the_primarys_secrets_is_refused(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    with pytest.raises(standby.StackError, match="copy the primary's"):
        standby.follow(settings, PRIMARY)
    assert not settings.path("secrets").exists()  # nothing generated in their place


def test_a_partition_is_copied_once_it_holds_the_primarys_last_record() -> None:
    last = (b"k", b"v", 1_700_000_000_000)
    earlier, later = (b"k", b"v0", 1_699_999_999_999), (b"k", b"v2", 1_700_000_000_001)
    primary = {
        ("deliver.tax.enterprise", 0): last,
        ("deliver.tax.enterprise", 1): last,
        ("govsync.audit", 0): last,
        ("govsync.audit", 1): None,  # empty there: nothing to copy
        ("cdc.health.message", 0): last,
    }
    here = {
        ("deliver.tax.enterprise", 0): {earlier, last},
        ("deliver.tax.enterprise", 1): {earlier},  # not copied to the end yet
        ("govsync.audit", 0): set(),  # nothing copied yet
        ("cdc.health.message", 0): {last, later},  # written there since it was read
    }
    assert standby.behind(primary, here) == {"deliver.tax.enterprise": 1, "govsync.audit": 1}


def test_a_take_over_without_a_primary_to_follow_is_refused(tmp_path: Path) -> None:
    with pytest.raises(standby.StackError, match="follows no primary"):
        standby.promote(Settings(state_dir=tmp_path))


def test_a_primary_that_does_not_answer_is_not_drained_but_refused(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    lost = standby.Primary(bootstrap="127.0.0.1:1", registry="http://127.0.0.1:1")
    with pytest.raises(standby.StackError, match="promote --now"):
        standby.drain(settings, lost, timeout=0)
