"""The pacer: lets a rate limit's waiters go as soon as its window frees units, and ends waiting
nodes (a sleep, a timeout) at their deadline.

A concurrency limit's waiter goes in the script that ends a holder's attempt: nothing polls for
it. A rate window frees units by the clock alone, so something must wake at that time: every
worker runs this thread, which sleeps until the next limit is due (``LIMITS_DUE``) and calls
``pace``; a script that makes an earlier time due publishes it, which wakes the pacers early.
Two workers' pacers racing are harmless: ``pace`` is one atomic script and finds nothing the
second time.
"""

from __future__ import annotations

import logging
import threading

from .. import keys
from ..engine.transitions import Engine

#: Seconds a pacer sleeps at most between two looks (a wake-up it missed costs no more than this).
IDLE_SECONDS = 1.0

log = logging.getLogger(__name__)


class Pacer:
    """A thread that calls ``Engine.pace`` whenever a limit's rate window frees units."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="coditect-pacer", daemon=True)

    def start(self) -> Pacer:
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(IDLE_SECONDS + 1.0)

    def _run(self) -> None:
        pubsub = None
        while not self._stop.is_set():
            try:
                if pubsub is None:
                    pubsub = self._engine.client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
                    pubsub.subscribe(keys.CLOCK_CHANNEL)
                due = self._engine.pace()
                wait = IDLE_SECONDS if due is None else min(due, IDLE_SECONDS)
                if wait > 0:
                    pubsub.get_message(timeout=wait)  # a publish of an earlier time ends it early
            except Exception as exc:  # the pacer must outlive any one failure: nothing else ends sleeps
                log.warning("pacing failed: %s", exc)
                if pubsub is not None:
                    pubsub.close()
                pubsub = None
                self._stop.wait(IDLE_SECONDS)
        if pubsub is not None:
            pubsub.close()
