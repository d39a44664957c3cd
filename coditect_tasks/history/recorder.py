"""The recorder: moves transitions from the Redis stream into the database.

Workers never wait on SQL: the engine's scripts append to the stream and move
on. The recorder reads through a consumer group and acknowledges an entry only
after its transaction commits, so a recorder that dies re-reads what it had
not committed, and the store skips what it had (no loss, no duplicates).

Once a run's final transition is written, the recorder retires the run's live state
(``Engine.retire``): it leaves Redis after ``live_retention`` seconds, and reads go to the
history, which holds every node result whole (the stream carries at most
``keys.HISTORY_CAP`` bytes of one; a longer one is read from the live state before it goes).

It is never stuck on one entry: a batch that fails for its data (not for an
outage) is written again entry by entry; an entry that still fails after
``MAX_ATTEMPTS`` reads moves to the dead-letter stream ``keys.HISTORY_DEAD`` with its
error, is counted (``coditect_recorder_dead_letters_total``), and the rest flow on.

On a Redis Cluster of many cells each cell has its own stream (``keys.in_cell``): the recorder
takes them in turn, and waits for new entries on one at a time.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import redis
from sqlalchemy.exc import DataError, DisconnectionError, IntegrityError, InterfaceError, OperationalError

from .. import cells, keys
from ..engine.transitions import Engine
from ..status import TERMINAL
from .store import HistoryStore

log = logging.getLogger(__name__)
BATCH = 500
#: Seconds the recorder lets entries gather after a batch smaller than ``BATCH``: one commit (an
#: fsync) per few hundred entries instead of per handful; under steady load it was most of its CPU.
PACE = 1.0
#: Reads of one entry that fails for its data before it goes to the dead-letter stream.
MAX_ATTEMPTS = 3
#: Database errors that say "unreachable", not "this entry is bad": waited out, never dead-lettered.
OUTAGES = (OperationalError, InterfaceError, DisconnectionError, OSError, redis.RedisError)
#: Errors that say "this entry is bad": the database refused its values, or its fields are malformed.
BAD_DATA = (DataError, IntegrityError, KeyError, ValueError, TypeError)
#: What the recorder reads of a run's hash for its row: the stream carries transitions only.
RUN_FIELDS = ("name", "dag", "submitted_at", "error", "parent", "parent_node", "schedule", "fire_time", "versions")


def _after(entry_id: str) -> str:
    """The stream entry id just after ``entry_id``."""
    ms, _, seq = entry_id.partition("-")
    return f"{ms}-{int(seq or 0) + 1}"


class Recorder:
    def __init__(
        self,
        client: redis.Redis,
        store: HistoryStore,
        consumer: str = "recorder-1",
        retention: float = 600,
        cells: int = 1,
    ) -> None:
        self.client = client
        self.store = store
        self.consumer = consumer
        self.retention = retention
        self.cells = cells
        self.engine = Engine(client, cells=cells)
        self._stop = threading.Event()
        self._failures: dict[str, int] = {}
        self._turn = 0  # the cell whose stream an idle drain waits on next
        for cell in range(cells):
            try:
                client.xgroup_create(keys.in_cell(keys.HISTORY, cell), keys.HISTORY_GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def drain(self, block_ms: int | None = None) -> int:
        """Record everything pending, then everything new; return how many entries were taken off
        the stream (recorded, found already recorded, or dead-lettered).

        With ``block_ms`` it waits that long for the first new entry (on one cell's stream, in turn,
        a share of that long).
        """
        total = 0
        for cell in range(self.cells):
            try:
                total += self._read(cell, "0", None)  # our own unacknowledged entries first (after a crash)
                while count := self._read(cell, ">", None):
                    total += count
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if self.cells == 1:
                    raise
                log.warning("recorder: cell %d skipped this pass (%s)", cell, exc)  # the others go on
        if total == 0 and block_ms is not None:
            self._turn = (self._turn + 1) % self.cells
            total = self._read(self._turn, ">", max(block_ms // self.cells, 50))
        if total == 0:  # idle: no retirement deletes the retired runs whose window ended (a cell a turn)
            self.engine.delete_retired(self._turn)
        return total

    def _read(self, cell: int, start: str, block_ms: int | None) -> int:
        stream = keys.in_cell(keys.HISTORY, cell)
        reply: Any = self.client.xreadgroup(
            keys.HISTORY_GROUP, self.consumer, {stream: start}, count=BATCH, block=block_ms
        )
        if not reply:
            return 0
        trimmed = [str(eid) for eid, fields in reply[0][1] if not fields]  # the stream's cap dropped them
        if trimmed:
            self.client.xack(stream, keys.HISTORY_GROUP, *trimmed)
        entries = [(str(eid), dict(fields)) for eid, fields in reply[0][1] if fields]
        if not entries:
            return 0
        runs = self._run_info({f.get("run", "") for _, f in entries})
        self._whole_results(entries)
        try:
            self.store.apply([(cells.entry_id(eid, cell), fields) for eid, fields in entries], runs)
            done = [eid for eid, _ in entries]
        except OUTAGES:
            raise
        except BAD_DATA:  # some entry's data: find it, keep the others flowing
            done = [eid for eid, fields in entries if self._apply_alone(cell, eid, fields, runs)]
        if done:
            self._acknowledge(stream, done)
            recorded = set(done)
            for eid, fields in entries:
                if eid in recorded and not fields.get("node") and fields.get("status") in TERMINAL:
                    self.engine.retire(fields["run"], self.retention)
        return len(done)

    def _acknowledge(self, stream: str, done: list[str]) -> None:
        """Acknowledge ``done`` and drop every entry before the stream's oldest one still pending
        (up to the last one the group read, if none is): all acknowledged. Trimming frees whole
        listpack nodes, where an ``XDEL`` scanned an entry's node for each entry (8 µs of Redis CPU
        for a node's two entries, 2 % of what a node costs)."""
        self.client.xack(stream, keys.HISTORY_GROUP, *done)
        # entries only ever come later (the engine adds with '*') and pending ones only go: a floor
        # read after the acknowledgement is never too high
        # (calls of their own: a cluster client's pipeline leaves XPENDING's reply unparsed)
        pending: Any = self.client.xpending(stream, keys.HISTORY_GROUP)
        if pending["pending"]:
            floor = str(pending["min"])
        else:
            groups: Any = self.client.xinfo_groups(stream)
            floor = _after(next(str(g["last-delivered-id"]) for g in groups if g["name"] == keys.HISTORY_GROUP))
        self.client.xtrim(stream, minid=floor, approximate=False)

    def _whole_results(self, entries: list[tuple[str, dict[str, str]]]) -> None:
        """Put the whole result in place of one the stream cut at ``HISTORY_CAP`` bytes."""
        cut = [f for _, f in entries if f.get("node") and len(f.get("result", "")) >= keys.HISTORY_CAP]
        if not cut:
            return
        with self.client.pipeline(transaction=False) as pipe:
            for fields in cut:
                pipe.hget(keys.run_prefix(fields["run"]) + "result", fields["node"])
            for fields, whole in zip(cut, pipe.execute(), strict=True):
                if whole is not None:
                    fields["result"] = whole

    def _apply_alone(self, cell: int, entry_id: str, fields: dict[str, str], runs: dict[str, dict[str, str]]) -> bool:
        """Write one entry in its own transaction; True once it is recorded or dead-lettered."""
        try:
            self.store.apply([(cells.entry_id(entry_id, cell), fields)], runs)
            self._failures.pop(entry_id, None)
            return True
        except OUTAGES:
            raise
        except BAD_DATA as exc:
            attempts = self._failures.get(entry_id, 0) + 1
            error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[: keys.HISTORY_CAP]
            if attempts < MAX_ATTEMPTS:
                self._failures[entry_id] = attempts
                log.warning("recorder: entry %s failed (%d/%d): %s", entry_id, attempts, MAX_ATTEMPTS, error)
                return False
            self._failures.pop(entry_id, None)
            log.error(
                "recorder: entry %s moved to %s after %d attempts: %s", entry_id, keys.HISTORY_DEAD, attempts, error
            )
            dead: dict[Any, Any] = {**fields, "entry": entry_id, "refused": error, "attempts": attempts}
            with self.client.pipeline(transaction=True) as pipe:
                pipe.xadd(keys.in_cell(keys.HISTORY_DEAD, cell), dead)
                pipe.hincrby(keys.in_cell(keys.METRICS, cell), "recorder_dead", 1)
                pipe.execute()
            return True

    def _run_info(self, run_ids: set[str]) -> dict[str, dict[str, str]]:
        with self.client.pipeline(transaction=False) as pipe:
            for run_id in run_ids:
                pipe.hmget(keys.run_prefix(run_id) + "run", *RUN_FIELDS)
            replies = pipe.execute()
        return {
            run_id: {k: v for k, v in zip(RUN_FIELDS, reply, strict=True) if v}
            for run_id, reply in zip(run_ids, replies, strict=True)
        }

    def run_forever(self) -> None:
        """Record until ``stop()``; survives Redis and database outages by retrying."""
        while not self._stop.is_set():
            try:
                taken = self.drain(block_ms=1000)
                if taken == 0 and self._failures:
                    self._stop.wait(1.0)  # entries left pending to retry: do not spin on them
                elif 0 < taken < BATCH:
                    self._stop.wait(PACE)  # no backlog: let the next batch gather
            except (redis.RedisError, OSError) as exc:
                log.warning("recorder: Redis unavailable (%s); retrying", exc)
                self._stop.wait(1.0)
            except Exception as exc:  # a database outage must not kill the recorder
                log.warning("recorder: could not record (%s); retrying", exc)
                self._stop.wait(1.0)

    def stop(self) -> None:
        self._stop.set()
