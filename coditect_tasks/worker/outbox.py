"""Draining the engine's outbox to a broker the Lua scripts cannot reach (RabbitMQ).

On Redis a script that makes a node ready pushes its message onto the queue in the same
atomic step. RabbitMQ is not reachable from Lua, so the script writes the message to the
outbox (a Redis list) instead, atomically with the state change, and every worker's drainer
thread moves entries to a list of its own, publishes them with publisher confirms, and only
then drops them. A worker that dies mid-publish leaves its list behind; the reaper returns
it to the outbox (reclaim.lua). So a node's message is published at least once; a second
copy is harmless, because ``begin`` drops a stale or duplicate message. On a Redis Cluster each
cell has its own outbox, and each worker a drainer per cell.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from typing import Any

import redis
from kombu.entity import Queue

from ..engine.transitions import Engine

#: Entries one drainer takes per script call.
BATCH = 200
#: Seconds one wait for a new entry blocks (how soon a stopping drainer notices).
WAIT_SECONDS = 1
#: Seconds a publish waits for the broker's confirm before it counts as failed (and goes again).
CONFIRM_SECONDS = 30.0
#: Reconnects and republishes before a batch is given up for now (it stays held: tried again).
PUBLISH_RETRY = {"max_retries": 3, "interval_start": 0.1, "interval_step": 0.5, "interval_max": 2.0}

log = logging.getLogger(__name__)


class Drainer:
    """A thread that publishes the outbox's entries to the app's broker, oldest first."""

    def __init__(self, app: Any, engine: Engine, hostname: str, cell: int = 0) -> None:
        self._app = app
        self._engine = engine
        self._hostname = hostname
        self.cell = cell  # the cell whose outbox it drains
        self._queues: dict[str, Queue] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"coditect-outbox-{cell}", daemon=True)

    def start(self) -> Drainer:
        self._thread.start()
        return self

    def stop(self, timeout: float = WAIT_SECONDS + 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        with self._app.connection_for_write() as connection:
            producer = connection.Producer()
            published = 0
            while not self._stop.is_set():
                try:
                    held = self._engine.take_outbox(self._hostname, published, BATCH, self.cell)
                    published = 0
                    if not held:  # wait for an entry, with no script while none comes: it is all it holds
                        entry = None
                        while entry is None and not self._stop.is_set():
                            entry = self._engine.await_outbox(self._hostname, WAIT_SECONDS, self.cell)
                        if entry is None:
                            continue
                        held = [entry]
                    for entry in reversed(held):  # oldest first
                        self._publish(producer, entry)
                    published = len(held)
                except Exception:  # a broker or Redis outage, a refused declare: the entries stay held
                    log.exception("outbox: publishing failed; the held entries go again")
                    published = 0
                    self._stop.wait(1.0)
            with contextlib.suppress(redis.RedisError):
                self._engine.take_outbox(self._hostname, published, 0, self.cell)  # drop what was confirmed

    def _publish(self, producer: Any, entry: str) -> None:
        name, _, raw = entry.partition("\n")
        try:
            envelope = json.loads(raw)
            body, headers = envelope["body"], envelope["headers"]
        except (ValueError, KeyError, TypeError):
            log.error("outbox: dropped an entry that is not a node message: %.200r", entry)
            return
        queue = self._queue(name)
        producer.publish(
            body,
            exchange=queue.exchange,
            routing_key=queue.routing_key,
            declare=[queue],
            headers=headers,
            content_type=envelope.get("content-type", "application/json"),
            content_encoding=envelope.get("content-encoding", "utf-8"),
            delivery_mode=2,
            retry=True,
            retry_policy=PUBLISH_RETRY,
            confirm_timeout=CONFIRM_SECONDS,
        )

    def _queue(self, name: str) -> Queue:
        """The queue as the app's workers declare it (a quorum queue, its own direct exchange)."""
        if name not in self._queues:
            queues = self._app.amqp.queues
            self._queues[name] = queues[name] if name in queues else queues.new_missing(name)
        return self._queues[name]
