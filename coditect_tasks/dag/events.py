"""A run's transitions as one ordered stream: everything so far, then each new one as it happens.

Every transition the engine makes is an entry of the history stream, whose id orders it, and
counts in its run's hash (field ``events``). The recorder moves entries into the history
database and deletes them from the stream, so what happened so far is in the database, in the
stream, or (for an entry the recorder takes between the two reads) in both. A follower
therefore subscribes to the run's events channel and waits until Redis confirms it (from then
on the engine publishes each new transition there, with its count ``n``), then reads the
stream from the run's first entry, then the database, merges by id, and goes on with the
channel; an id seen twice counts once. A message whose count skips one (a subscription that
dropped and came back) makes it read both again, as does a silence of ``RECHECK_SECONDS`` after
which the run's count is ahead of it; a run that ended without its last event being found
(dead-lettered, pruned) ends the stream too.
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

#: Seconds of silence after which a follower checks whether it missed something.
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
    """A stream id ('<ms>-<seq>') as a sortable pair; ids compare as numbers, not strings.
    ``ValueError`` for anything else (a malformed Last-Event-ID)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class Cursor:
    """Where a follower is: the last id it gave out, how many of the run's events it knows
    (to notice one it missed), and whether the run has ended."""

    def __init__(self, after: str | None = None) -> None:
        self.last = order(after) if after else (-1, -1)
        self.known = 0
        self.missed = 0
        self.done = False

    def replay(
        self, stream: Iterable[tuple[str, dict[str, Any]]], recorded: Iterable[dict[str, Any]], known: int = 0
    ) -> list[Event]:
        """The events of both reads not given out yet, in order. ``known``: the count of the
        message that made this replay necessary (entries lost for good must not make every later
        message look like a gap)."""
        found = {eid: Event.parse(eid, fields) for eid, fields in stream}
        for row in recorded:
            found.setdefault(row["id"], Event.parse(row["id"], row))
        self.known = max(self.known, len(found), known)
        return self._take(sorted(found.values(), key=lambda e: order(e.id)))

    def live(self, message: str) -> list[Event] | None:
        """The event of one channel message ('<id> <JSON>'), unless given out already; None if
        the message shows that one was missed (replay, with ``known=self.missed``)."""
        entry_id, _, body = message.partition(" ")
        data = json.loads(body)
        count = int(data.get("n", 0))
        if count and count <= self.known:
            return []
        if count > self.known + 1:
            self.missed = count
            return None
        self.known = count
        return self._take([Event.parse(entry_id, data)])

    def behind(self, count: Any) -> bool:
        """True if the run has more events (its ``events`` count) than this cursor knows."""
        return count is not None and int(count) > self.known

    def _take(self, events: list[Event]) -> list[Event]:
        taken = []
        for event in events:
            if self.done:
                break
            self.done = event.terminal  # also one given out before a reconnect: nothing follows it
            if order(event.id) > self.last:
                self.last = order(event.id)
                taken.append(event)
        return taken


def run_entries(client: redis.Redis, run_id: str) -> list[tuple[str, dict[str, Any]]]:
    """The history stream's entries of one run (those the recorder has not taken yet), read from the
    run's first entry on (``first_event``), not from the stream's start: the stream holds every
    run's unrecorded entries. A run whose live state is gone was recorded whole: none."""
    found: list[tuple[str, dict[str, Any]]] = []
    start = _start(*client.hmget(keys.run_prefix(run_id) + "run", "first_event", "status"))
    while start is not None:
        start = _keep(client.xrange(keys.HISTORY, start, "+", count=PAGE), run_id, found)
    return found


async def run_entries_async(client: aioredis.Redis, run_id: str) -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    start = _start(*await client.hmget(keys.run_prefix(run_id) + "run", "first_event", "status"))
    while start is not None:
        start = _keep(await client.xrange(keys.HISTORY, start, "+", count=PAGE), run_id, found)
    return found


def _keep(page: Any, run_id: str, found: list[tuple[str, dict[str, Any]]]) -> str | None:
    """Add the run's entries of one XRANGE page to ``found``; where the next page starts (None: done)."""
    found.extend((str(eid), dict(f)) for eid, f in page if f.get("run") == run_id)
    return "(" + str(page[-1][0]) if len(page) == PAGE else None


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
    pubsub = client.pubsub()  # type: ignore[no-untyped-call]
    pubsub.subscribe(keys.events_channel(run_id))
    try:
        while (message := pubsub.get_message(timeout=RECHECK_SECONDS)) is None or message["type"] != "subscribe":
            pass  # from its confirmation on, nothing the engine records for the run can pass us by
        yield from cursor.replay(run_entries(client, run_id), store.transitions(run_id))
        while not cursor.done:
            message = pubsub.get_message(timeout=RECHECK_SECONDS)
            taken: list[Event] | None = []
            if message is not None and message["type"] == "message":
                taken = cursor.live(str(message["data"]))
                if taken is None:
                    taken = cursor.replay(run_entries(client, run_id), store.transitions(run_id), cursor.missed)
            elif message is None:
                count, status = client.hmget(keys.run_prefix(run_id) + "run", "events", "status")
                if cursor.behind(count) or status is None or status in TERMINAL:
                    taken = cursor.replay(run_entries(client, run_id), store.transitions(run_id))
                    cursor.done = cursor.done or status is None or status in TERMINAL
            yield from taken or []
    finally:
        pubsub.close()


async def follow_async(
    client: aioredis.Redis, store: Any, run_id: str, after: str | None = None
) -> AsyncIterator[Event]:
    """``follow`` on an event loop; the database reads run in a worker thread."""
    import anyio
    import anyio.to_thread

    async def replay(known: int = 0) -> list[Event]:
        stream = await run_entries_async(client, run_id)
        return cursor.replay(stream, await anyio.to_thread.run_sync(store.transitions, run_id), known)

    cursor = Cursor(after)
    pubsub = client.pubsub()
    await pubsub.subscribe(keys.events_channel(run_id))
    try:
        while (message := await pubsub.get_message(timeout=RECHECK_SECONDS)) is None or message["type"] != "subscribe":
            pass
        for event in await replay():
            yield event
        while not cursor.done:
            message = await pubsub.get_message(timeout=RECHECK_SECONDS)
            taken: list[Event] | None = []
            if message is not None and message["type"] == "message":
                taken = cursor.live(str(message["data"]))
                if taken is None:
                    taken = await replay(cursor.missed)
            elif message is None:
                count, status = await client.hmget(keys.run_prefix(run_id) + "run", "events", "status")
                if cursor.behind(count) or status is None or status in TERMINAL:
                    taken = await replay()
                    cursor.done = cursor.done or status is None or status in TERMINAL
            for event in taken or []:
                yield event
    finally:
        with anyio.CancelScope(shield=True):  # a client that went away cancels us: still give the connection back
            await pubsub.aclose()  # type: ignore[no-untyped-call]


def terminal_id(client: redis.Redis, store: Any, run_id: str) -> str | None:
    """The id of the run's terminal event, if it has one yet."""
    cursor = Cursor()
    events = cursor.replay(run_entries(client, run_id), store.transitions(run_id))
    return next((e.id for e in events if e.terminal), None)
