"""The scheduler process (``coditect-tasks scheduler``): fires the due schedules, as any number of
others do beside it.

Nothing is elected. Every scheduler reads the schedules due now (``keys.SCHEDULES_DUE``) and fires
them: the fire's idempotency key makes one run of it whoever gets there, and the compare-and-set
in schedule.lua moves the schedule on once. So killing schedulers leaves a gap only if every one
is gone, and then the catch-up window decides what is made up.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from redis import RedisError

from .. import keys
from ..errors import BrokerUnreachableError
from .book import now_ms

log = logging.getLogger(__name__)

#: Seconds a scheduler sleeps at most: a schedule added or resumed elsewhere is seen this late.
IDLE_SECONDS = 1.0
#: Due schedules one pass fires at most before it looks again.
BATCH = 100


class Scheduler:
    """Fires schedules through ``client`` (a sync ``Client``) until ``stop``."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.fired = 0
        self._stop = threading.Event()

    def tick(self) -> float:
        """Fire everything due now and release what a previous run held back; the seconds until
        the next fire time is due (at most ``IDLE_SECONDS``)."""
        redis = self.client.redis
        for name in redis.smembers(keys.SCHEDULES_BUFFERED):  # a held fire before any later one
            self._fire(self.client.schedules.release, str(name))
        at = now_ms()
        for name in redis.zrangebyscore(keys.SCHEDULES_DUE, "-inf", at, start=0, num=BATCH):
            self._fire(lambda n: self.client.schedules.fire_due(n, at), str(name))
        following = redis.zrange(keys.SCHEDULES_DUE, 0, 0, withscores=True)
        if not following:
            return IDLE_SECONDS
        return max(0.0, min(IDLE_SECONDS, (float(following[0][1]) - now_ms()) / 1000))

    def _fire(self, fire: Callable[[str], str | None], name: str) -> None:
        """One schedule's fire; its failure is logged and the others go on (an outage is raised)."""
        try:
            if fire(name):
                self.fired += 1
        except (BrokerUnreachableError, RedisError):
            raise
        except Exception:  # a revoke the broker refused, a replica that did not answer: next tick
            log.exception("schedule %s: its fire failed; it is tried again", name)

    def run_forever(self) -> None:
        while not self._stop.is_set():
            try:
                pause = self.tick()
            except (BrokerUnreachableError, RedisError) as exc:  # an outage outlasted: try again, nothing was moved on
                log.warning("scheduler: %s", exc)
                pause = IDLE_SECONDS
            self._stop.wait(pause)

    def stop(self) -> None:
        self._stop.set()
