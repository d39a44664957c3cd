"""Leases: a running attempt proves it is alive by renewing its lease.

The engine gives every attempt a lease in Redis; the attempt's own process renews it
from a background thread while the agent works. If the process dies, hangs at
the kernel level or is cut off from Redis, the lease expires and any worker's
reaper requeues the node within seconds, long before the broker's visibility
timeout would redeliver it.

One thread per process renews every lease held in it: a thread started and joined per
call cost each node a thread start (a wait for the new thread to be scheduled) on a busy pool.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from types import TracebackType

from ..keys import LEASE_SECONDS

log = logging.getLogger(__name__)


class LeaseKeeper:
    """Renew a lease every third of its length until the ``with`` block ends.

    ``renew`` returns False once the attempt has been superseded; the keeper
    then stops renewing (the attempt's result will be fenced out anyway).
    """

    def __init__(self, renew: Callable[[float], bool], seconds: float = LEASE_SECONDS) -> None:
        self.renew = renew
        self.seconds = seconds
        self.due = 0.0

    def __enter__(self) -> LeaseKeeper:
        _RENEWER.hold(self)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        _RENEWER.release(self)


class _Renewer:
    """The process's renewing thread and the leases it keeps (started on first use, and again in
    a forked child, which inherits no threads)."""

    def __init__(self) -> None:
        self._after_fork()
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        """A forked child inherits no thread, and maybe a lock held by one: start afresh."""
        self._held: set[LeaseKeeper] = set()
        self._changed = threading.Condition()
        self._pid = 0

    def hold(self, keeper: LeaseKeeper) -> None:
        with self._changed:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                self._held = set()
                threading.Thread(target=self._run, name="coditect-lease", daemon=True).start()
            keeper.due = time.monotonic() + keeper.seconds / 3
            self._held.add(keeper)
            self._changed.notify()

    def release(self, keeper: LeaseKeeper) -> None:
        with self._changed:
            self._held.discard(keeper)

    def _run(self) -> None:
        while True:
            with self._changed:
                now = time.monotonic()
                due = [k for k in self._held if k.due <= now]
                for keeper in due:
                    keeper.due = now + keeper.seconds / 3
                if not due:
                    soonest = min((k.due for k in self._held), default=None)
                    self._changed.wait(None if soonest is None else soonest - now)
                    continue
            for keeper in due:
                try:
                    if not keeper.renew(keeper.seconds):
                        self.release(keeper)
                except Exception as exc:  # a Redis outage: keep trying until the block ends
                    log.warning("lease renewal failed: %s", exc)


_RENEWER = _Renewer()
