"""A department's request quota: a token bucket per department in each API process.

uvicorn's worker processes share nothing, so each holds its share of the quota
(``rate / workers``): a department spread over the processes gets the whole rate, one
that lands on a single process gets its share of it, never more than the rate overall.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Quota:
    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # department -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, department: str) -> float:
        """0 when the request may go on; otherwise the seconds until it may (Retry-After)."""
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.get(department, (self.rate, now))
            tokens = min(self.rate, tokens + (now - at) * self.rate)
            if tokens >= 1:
                self._buckets[department] = (tokens - 1, now)
                return 0.0
            self._buckets[department] = (tokens, now)
            return (1 - tokens) / self.rate
