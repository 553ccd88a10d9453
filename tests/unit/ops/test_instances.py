"""Worker instances from the stage groups' members."""

from __future__ import annotations

from govsync.ops.instances import instances
from streams.contract.members import Advert
from streams.kafka.members import StageMember


def member(stage: str, advert: Advert | None, partitions: list[str]) -> StageMember:
    return StageMember(
        stage=stage,
        group_instance_id=f"govsync-{stage}-{advert.instance if advert else 'old'}",
        advert=advert,
        partitions=partitions,
    )


def test_members_of_every_stage_group_make_one_instance_each() -> None:
    a = Advert(instance="10", host="box-a", metrics_url="http://box-a:40001/metrics")
    b = Advert(instance="2", host="box-b", metrics_url="http://box-b:40002/metrics")
    found = instances(
        [
            member("normalize", a, ["cdc.x/0"]),
            member("route", a, ["changes.e/0", "changes.e/1"]),
            member("route", b, ["changes.e/2"]),
            member("route", None, ["changes.e/3"]),  # not advertising: not listed
        ]
    )
    assert [(i.id, i.host, i.metrics_url) for i in found] == [
        ("2", "box-b", "http://box-b:40002/metrics"),
        ("10", "box-a", "http://box-a:40001/metrics"),
    ]
    assert found[1].stages == {"normalize": ["cdc.x/0"], "route": ["changes.e/0", "changes.e/1"]}
