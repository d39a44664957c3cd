"""Noting the node messages a worker holds but has not begun, off the consumer's thread.

The consumer (one thread for the whole pool) receives every message; a Redis round trip there
per message (a write, so an fsync with ``appendfsync always``) made it the pool's bottleneck
under load. So ``note`` only queues the node, and one thread writes whatever has gathered in
one script call. Safe because the note is a hint with a fallback: a worker that dies before
its notes are written leaves messages that are neither queued nor noted, and the reaper's
queued-node check (reap.lua) requeues them as lost in transit.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque

import redis

from .. import keys
from ..engine.transitions import Engine

#: Most nodes noted in one script call.
BATCH = 500

log = logging.getLogger(__name__)


class Reservations:
    """A thread that writes this worker's noted nodes, in batches, as they arrive.

    Its notes carry an epoch that ``forget`` makes the worker's current one: a note of an earlier
    epoch (a write stuck in an outage across a consumer restart) is refused by the script.
    """

    def __init__(self, engine: Engine, hostname: str) -> None:
        self._engine = engine
        self._hostname = hostname
        self.epoch = uuid.uuid4().hex
        self._pending: deque[tuple[str, str, str]] = deque()
        self._wake = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="coditect-reservations", daemon=True)

    def start(self) -> Reservations:
        self._thread.start()
        return self

    def forget(self) -> None:
        """Start with no notes, in this epoch: after a lost broker connection Celery drops the
        messages it held but had not begun, so old notes would vouch for messages nobody holds,
        and the queued-node check (reap.lua) would wait on them forever."""
        key = keys.reserved(self._hostname)
        with self._engine.client.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.sadd(key, f"@epoch:{self.epoch}")  # not a note: reclaim and reap read only run|node
            # listed from now, so that reclaim removes the set once this worker is gone
            pipe.zadd(keys.RESERVERS, {self._hostname: time.time()})
            pipe.execute()

    def note(self, run_id: str, node_id: str, task_id: str) -> None:
        """Queue a note that this worker holds message ``task_id`` of node ``node_id`` (never blocks)."""
        self._pending.append((run_id, node_id, task_id))
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = [self._pending.popleft() for _ in range(min(BATCH, len(self._pending)))]
                try:
                    self._engine.reserve(self._hostname, self.epoch, batch)
                except redis.RedisError as exc:  # the reaper's queued-node check covers these
                    log.warning("could not note %d received node(s): %s", len(batch), exc)
            if self._stop:
                return

    def stop(self, timeout: float = 5.0) -> None:
        """Write what is pending, then end the thread."""
        self._stop = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
