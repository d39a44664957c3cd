"""Where a submitted run's nodes stand among others waiting for workers: its priority and
fairness key (checked here), and the agents' median durations its critical path is weighed with."""

from __future__ import annotations

import time

from .. import keys
from ..cells import added, shares
from ..dag.critical import median_seconds
from ..dag.spec import PRIORITIES
from ..errors import InvalidArgumentError
from ..steps import Ask, Steps

#: Seconds a client trusts the agents' median durations it read (the critical path's weights).
MEDIANS_TTL_SECONDS = 30.0
#: Characters a fairness key may have at most.
MAX_FAIRNESS_KEY = 256


def check_ordering(priority: int | None, fairness_key: str | None) -> None:
    """``InvalidArgumentError`` for a priority outside 0–9 or a fairness key that is not 1–256 characters."""
    if priority is not None and (isinstance(priority, bool) or priority not in PRIORITIES):
        raise InvalidArgumentError(f"priority must be a whole number from 0 to 9 (higher goes first), got {priority!r}")
    if fairness_key is not None and not (isinstance(fairness_key, str) and 0 < len(fairness_key) <= MAX_FAIRNESS_KEY):
        raise InvalidArgumentError(f"fairness_key must be a string of 1 to {MAX_FAIRNESS_KEY} characters")


class Medians:
    """Agent → median node duration from the engine's histograms (``keys.METRICS``), read again
    every ``MEDIANS_TTL_SECONDS``."""

    def __init__(self, cells: int = 1) -> None:
        self.cells = cells
        self._seconds: dict[str, float] = {}
        self._read = -MEDIANS_TTL_SECONDS

    def read(self) -> Steps[dict[str, float]]:
        if time.monotonic() - self._read > MEDIANS_TTL_SECONDS:
            counters = added((yield Ask(lambda t: shares(t.redis, keys.METRICS, self.cells))))
            self._seconds = median_seconds(counters, keys.DURATION_BUCKETS)
            self._read = time.monotonic()
        return self._seconds
