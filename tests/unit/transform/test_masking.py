"""Masking: partial keeps only the ends, hash is keyed per department, drop removes."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.model.topology import Mask, Subscription
from streams.transform.masking import department_key, keyed_hash, mask_delivery, partial
from tests.unit.examples import TOPOLOGY

SOCIAL = TOPOLOGY.subscription("social_security.enterprise")


def test_partial_keeps_the_first_and_last_characters() -> None:
    assert partial("110101199003074514", 4) == "1101**********4514"
    assert partial("13800138000", 3) == "138*****000"


@given(st.text(min_size=0, max_size=40), st.integers(min_value=1, max_value=8))
def test_partial_never_reveals_more_than_both_ends(value: str, keep: int) -> None:
    masked = partial(value, keep)
    assert len(masked) == len(value)
    if len(value) <= 2 * keep:
        assert masked == "*" * len(value)
    else:
        assert masked == value[:keep] + "*" * (len(value) - 2 * keep) + value[-keep:]


def test_hashes_of_one_value_differ_between_departments(tmp_path: Path) -> None:
    tax, social = department_key(tmp_path, "tax"), department_key(tmp_path, "social_security")
    assert tax != social
    assert keyed_hash("张三", tax) != keyed_hash("张三", social)
    assert keyed_hash("张三", tax) == keyed_hash("张三", department_key(tmp_path, "tax"))
    assert len(keyed_hash("张三", tax)) == 64


def test_department_keys_are_private_files(tmp_path: Path) -> None:
    department_key(tmp_path, "tax")
    [path] = [p for p in tmp_path.iterdir()]
    assert path.name == "mask-tax.key"
    assert path.stat().st_mode & 0o777 == 0o600


def test_masks_apply_to_before_and_after_and_drop_removes_the_value() -> None:
    state = {
        "uscc": "91310000MA1FL8XQ30",
        "name": "上海示例贸易有限公司",
        "status": "active",
        "legal_rep_name": "张三",
        "legal_rep_id": "110101199003074514",
    }
    delivery = {"before": state, "after": {**state, "legal_rep_id": None}, "kind": "updated"}
    masked = mask_delivery(delivery, SOCIAL, b"k" * 32)
    assert masked["before"]["legal_rep_id"] == "1101**********4514"
    assert masked["before"]["legal_rep_name"] == keyed_hash("张三", b"k" * 32)
    assert masked["after"]["legal_rep_id"] is None
    assert masked["before"]["name"] == state["name"]
    dropping = SOCIAL.model_copy(update={"mask": {"legal_rep_name": Mask(rule="drop")}})
    dropped = mask_delivery(delivery, dropping, b"k" * 32)
    assert "legal_rep_name" not in dropped["before"]
    assert "legal_rep_name" not in dropped["after"]


def test_keep_is_only_for_partial() -> None:
    with pytest.raises(ValueError, match="keep applies to the partial rule"):
        Mask(rule="hash", keep=2)
    assert Mask(rule="partial").kept == 3


def test_a_subscription_is_unchanged_without_masks() -> None:
    plain = Subscription.model_validate({**SOCIAL.model_dump(), "mask": {}})
    delivery = {"before": None, "after": {"uscc": "x"}}
    assert mask_delivery(delivery, plain, b"k") is delivery
