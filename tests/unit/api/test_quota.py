"""The per-department token bucket behind the API's 429."""

from __future__ import annotations

from govsync.api.quota import Quota


def test_a_department_gets_its_rate_and_is_told_when_to_come_back() -> None:
    now = [100.0]
    quota = Quota(rate=2, clock=lambda: now[0])
    assert [quota.take("tax"), quota.take("tax")] == [0.0, 0.0]
    assert quota.take("tax") == 0.5  # the next token in half a second
    assert quota.take("social_security") == 0.0  # each department has its own bucket
    now[0] += 0.5
    assert quota.take("tax") == 0.0
    now[0] += 60  # a long pause fills the bucket to the rate, not beyond
    assert [quota.take("tax") for _ in range(3)] == [0.0, 0.0, 0.5]
