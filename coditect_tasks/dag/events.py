"""A run's transitions as one ordered stream: everything so far, then each new one as it happens.

Every transition the engine makes is an entry of the history stream, whose id orders it. The
recorder moves entries into the history database and deletes them from the stream, so what
happened so far is in the database, in the stream, or (for an entry the recorder takes between
the two reads) in both. A follower therefore subscribes to the run's events channel first (the
engine publishes each new transition there while anyone listens), then reads the stream, then
the database, merges by id, and goes on with the channel: nothing falls between the reads, and
an id seen twice counts once. A follower that hears nothing for ``RECHECK_SECONDS`` reads again,
which also covers a dropped subscription.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import redis
import redis.asyncio as aioredis

from .. import keys
from ..status import TERMINAL

#: Seconds of silence after which a follower reads the run's transitions again.
RECHECK_SECONDS = 5.0
#: Stream entries read per XRANGE while looking for one run's.
PAGE = 1000


@dataclass(frozen=True)
class Event:
    """One transition of a run (``node`` None) or of one of its nodes."""

    id: str  # the history stream's entry id: orders events, and is the SSE event id
    node: str | None
    status: str
    ts: str
    attempt: int | None = None
    worker: str | None = None
    error: str | None = None

    @property
    def terminal(self) -> bool:
        """The run's last event: after it, the stream ends."""
        return self.node is None and self.status in TERMINAL

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def parse(cls, entry_id: str, fields: dict[str, Any]) -> Event:
        attempt = fields.get("attempt")
        return cls(
            id=entry_id,
            node=fields.get("node") or None,
            status=str(fields["status"]),
            ts=str(fields["at"]),
            attempt=int(attempt) if attempt not in (None, "") else None,
            worker=fields.get("worker") or None,
            error=fields.get("error") or None,
        )


def order(entry_id: str) -> tuple[int, int]:
    """A stream id ('<ms>-<seq>') as a sortable pair; ids compare as numbers, not strings."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class Cursor:
    """Where a follower is: the last id it gave out, and whether the run has ended."""

    def __init__(self, after: str | None = None) -> None:
        self.last = order(after) if after else (-1, -1)
        self.done = False

    def replay(self, stream: Iterable[tuple[str, dict[str, Any]]], recorded: Iterable[dict[str, Any]]) -> list[Event]:
        """The events of both reads not given out yet, in order."""
        found = {eid: Event.parse(eid, fields) for eid, fields in stream}
        for row in recorded:
            found.setdefault(row["id"], Event.parse(row["id"], row))
        return self._take(sorted(found.values(), key=lambda e: order(e.id)))

    def live(self, message: str) -> list[Event]:
        """The event of one channel message ('<id> <JSON>'), unless given out already."""
        entry_id, _, body = message.partition(" ")
        return self._take([Event.parse(entry_id, json.loads(body))])

    def _take(self, events: list[Event]) -> list[Event]:
        taken = []
        for event in events:
            if self.done or order(event.id) <= self.last:
                continue
            self.last = order(event.id)
            self.done = event.terminal
            taken.append(event)
        return taken


def run_entries(client: redis.Redis, run_id: str) -> list[tuple[str, dict[str, Any]]]:
    """The history stream's entries of one run (those the recorder has not taken yet), read from the
    run's first entry on (``first_event``), not from the stream's start: the stream holds every
    run's unrecorded entries. A run whose live state is gone was recorded whole: none."""
    found: list[tuple[str, dict[str, Any]]] = []
    start = _start(*client.hmget(keys.run_prefix(run_id) + "run", "first_event", "status"))
    while start is not None:
        page: Any = client.xrange(keys.HISTORY, start, "+", count=PAGE)
        found.extend((str(eid), dict(f)) for eid, f in page if f.get("run") == run_id)
        start = "(" + str(page[-1][0]) if len(page) == PAGE else None
    return found


async def run_entries_async(client: aioredis.Redis, run_id: str) -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    start = _start(*await client.hmget(keys.run_prefix(run_id) + "run", "first_event", "status"))
    while start is not None:
        page: Any = await client.xrange(keys.HISTORY, start, "+", count=PAGE)
        found.extend((str(eid), dict(f)) for eid, f in page if f.get("run") == run_id)
        start = "(" + str(page[-1][0]) if len(page) == PAGE else None
    return found


def _start(first_event: Any, status: Any) -> str | None:
    """Where to read a run's entries from: its first entry; the stream's start for a run submitted
    by a release that did not note it; nowhere once its live state is gone."""
    if status is None:
        return None
    return str(first_event or "-")


def follow(client: redis.Redis, store: Any, run_id: str, after: str | None = None) -> Iterator[Event]:
    """The run's events after id ``after`` (all without it), ending with its terminal event.

    ``client`` decodes responses; ``store`` is the ``HistoryStore``.
    """
    cursor = Cursor(after)
    pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
    pubsub.subscribe(keys.events_channel(run_id))
    try:
        yield from cursor.replay(run_entries(client, run_id), store.transitions(run_id))
        while not cursor.done:
            message = pubsub.get_message(timeout=RECHECK_SECONDS)
            if message is not None:
                yield from cursor.live(str(message["data"]))
            else:
                yield from cursor.replay(run_entries(client, run_id), store.transitions(run_id))
    finally:
        pubsub.close()


async def follow_async(
    client: aioredis.Redis, store: Any, run_id: str, after: str | None = None
) -> AsyncIterator[Event]:
    """``follow`` on an event loop; the database reads run in a worker thread."""
    import anyio.to_thread

    cursor = Cursor(after)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(keys.events_channel(run_id))
    try:
        stream = await run_entries_async(client, run_id)
        for event in cursor.replay(stream, await anyio.to_thread.run_sync(store.transitions, run_id)):
            yield event
        while not cursor.done:
            message = await pubsub.get_message(timeout=RECHECK_SECONDS)
            if message is not None:
                events = cursor.live(str(message["data"]))
            else:
                stream = await run_entries_async(client, run_id)
                events = cursor.replay(stream, await anyio.to_thread.run_sync(store.transitions, run_id))
            for event in events:
                yield event
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
