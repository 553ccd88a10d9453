"""The worker's advert in its stage consumers' client.id: written and read back."""

from __future__ import annotations

from streams.contract import members
from streams.contract.members import Advert

ADVERT = Advert(instance="3", host="box-a", metrics_url="http://10.0.0.5:40123/metrics")


def test_an_advert_reads_back_from_its_client_id() -> None:
    client_id = ADVERT.client_id()
    assert client_id == (
        "govsync-worker;instance=3;host=box-a;metrics=http://10.0.0.5:40123/metrics"
    )
    assert members.parse(client_id) == ADVERT


def test_fields_in_any_order_and_unknown_fields_are_ignored() -> None:
    text = "govsync-worker;zone=b;metrics=http://h:1/metrics;host=h;instance=x.1"
    assert members.parse(text) == Advert(instance="x.1", host="h", metrics_url="http://h:1/metrics")


def test_other_clients_and_incomplete_adverts_are_not_workers() -> None:
    assert members.parse("rdkafka") is None
    assert members.parse("govsync-worker") is None  # an older worker
    assert members.parse("govsync-worker;instance=1;host=h") is None
    assert members.parse("govsync-workers;instance=1;host=h;metrics=u") is None
