"""A run's transitions as events: their order, and the cursor that merges them from three places.

Every transition the engine makes is an entry of the history stream, whose id orders it, and
counts in its run's hash (field ``events``). The recorder moves entries into the history
database and deletes them from the stream, so what happened so far is in the database, in the
stream, or (for an entry the recorder takes between two reads) in both; and, while someone
listens, the engine also publishes each on the run's events channel. ``Cursor`` merges the
three by id, gives each event out once and in order, and notices a published one it missed;
``client.core.Core.events`` does the reading.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from .. import cells, keys
from ..status import TERMINAL

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
    #: What the transition says beyond its status: a ``throttled`` node's ``limit`` and ``key``, a
    #: ``waiting`` node's ``kind`` (and a wait's ``event`` and ``key``), an approval's ``by`` and ``comment``.
    detail: dict[str, Any] | None = None

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
            detail=_detail(fields.get("detail")),
        )


def _detail(raw: Any) -> dict[str, Any] | None:
    if not raw:
        return None
    value = json.loads(raw) if isinstance(raw, str) else raw
    return dict(value) if isinstance(value, dict) else None


def order(entry_id: str) -> tuple[int, int]:
    """A stream id ('<ms>-<seq>', and its cell: ``cells.entry_id``) as a sortable pair; ids compare
    as numbers, not strings. ``ValueError`` for anything else (a malformed Last-Event-ID)."""
    ms, _, seq = entry_id.partition("@")[0].partition("-")
    return int(ms), int(seq or 0)


class Cursor:
    """Where a follower is: the last id it gave out, how many of the run's events it knows
    (to notice one it missed), and whether the run has ended."""

    def __init__(self, after: str | None = None, cell: int = 0) -> None:
        self.cell = cell  # of the run: its stream's ids are named with it (``cells.entry_id``)
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
        raw, _, body = message.partition(" ")
        entry_id = cells.entry_id(raw, self.cell)
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


def entries_page(page: Any, run_id: str, found: list[tuple[str, dict[str, Any]]]) -> str | None:
    """Add the run's entries of one XRANGE ``page`` of the history stream to ``found``; where the
    next page starts (None: done)."""
    cell = keys.cell_of(run_id)
    found.extend((cells.entry_id(str(eid), cell), dict(f)) for eid, f in page if f.get("run") == run_id)
    return "(" + str(page[-1][0]) if len(page) == PAGE else None


def entries_start(first_event: Any, status: Any) -> str | None:
    """Where to read a run's entries from: its first entry; the stream's start for a run submitted
    by a release that did not note it; nowhere once its live state is gone."""
    if status is None:
        return None
    return str(first_event or "-")
