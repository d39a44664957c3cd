"""The recorder: moves transitions from the Redis stream into the database.

Workers never wait on SQL: the engine's scripts append to the stream and move
on. The recorder reads through a consumer group and acknowledges an entry only
after its transaction commits, so a recorder that dies re-reads what it had
not committed, and the store skips what it had (no loss, no duplicates).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import redis

from .. import keys
from .store import HistoryStore

log = logging.getLogger(__name__)
BATCH = 500


class Recorder:
    def __init__(self, client: redis.Redis, store: HistoryStore, consumer: str = "recorder-1") -> None:
        self.client = client
        self.store = store
        self.consumer = consumer
        self._stop = threading.Event()
        try:
            client.xgroup_create(keys.HISTORY, keys.HISTORY_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def drain(self, block_ms: int | None = None) -> int:
        """Record everything pending, then everything new; return how many entries were recorded.

        With ``block_ms`` it waits that long for the first new entry.
        """
        total = self._read("0", None)  # our own unacknowledged entries first (after a crash)
        while True:
            count = self._read(">", block_ms if total == 0 else None)
            total += count
            if count == 0:
                return total

    def _read(self, start: str, block_ms: int | None) -> int:
        reply: Any = self.client.xreadgroup(
            keys.HISTORY_GROUP, self.consumer, {keys.HISTORY: start}, count=BATCH, block=block_ms
        )
        if not reply:
            return 0
        entries = [(str(eid), dict(fields)) for eid, fields in reply[0][1] if fields]
        if not entries:
            return 0
        runs = self._run_info({f["run"] for _, f in entries})
        self.store.apply(entries, runs)
        ids = [eid for eid, _ in entries]
        with self.client.pipeline(transaction=True) as pipe:
            pipe.xack(keys.HISTORY, keys.HISTORY_GROUP, *ids)
            pipe.xdel(keys.HISTORY, *ids)
            pipe.execute()
        return len(entries)

    def _run_info(self, run_ids: set[str]) -> dict[str, dict[str, str]]:
        with self.client.pipeline(transaction=False) as pipe:
            for run_id in run_ids:
                pipe.hmget(keys.run_prefix(run_id) + "run", "name", "dag", "submitted_at", "error")
            replies = pipe.execute()
        return {
            run_id: {k: v for k, v in zip(("name", "dag", "submitted_at", "error"), reply, strict=True) if v}
            for run_id, reply in zip(run_ids, replies, strict=True)
        }

    def run_forever(self) -> None:
        """Record until ``stop()``; survives Redis and database outages by retrying."""
        while not self._stop.is_set():
            try:
                self.drain(block_ms=1000)
            except (redis.RedisError, OSError) as exc:
                log.warning("recorder: Redis unavailable (%s); retrying", exc)
                self._stop.wait(1.0)
            except Exception as exc:  # a database outage must not kill the recorder
                log.warning("recorder: could not record (%s); retrying", exc)
                self._stop.wait(1.0)

    def stop(self) -> None:
        self._stop.set()
