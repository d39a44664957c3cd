"""Leases: a running attempt proves it is alive by renewing its lease.

The engine gives every attempt a lease in Redis; the attempt's own process renews it
from a background thread while the agent works. If the process dies, hangs at
the kernel level or is cut off from Redis, the lease expires and any worker's
reaper requeues the node within seconds, long before the broker's visibility
timeout would redeliver it.
"""

from __future__ import annotations

import logging
import threading
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
        self._renew = renew
        self._seconds = seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="coditect-lease", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._seconds / 3):
            try:
                if not self._renew(self._seconds):
                    return
            except Exception as exc:  # a Redis outage: keep trying until the block ends
                log.warning("lease renewal failed: %s", exc)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=1)
