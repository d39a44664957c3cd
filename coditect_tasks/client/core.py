"""What a client does, with no I/O: every behaviour written once, for the sync and asyncio transports.

Each operation (submit, state, status, wait, cancel, retry, the event stream, the run listing) is
a generator of *steps*: it yields what it needs done (a Redis call, a blocking call, a wait) and
is sent the reply. ``sync.Client`` and ``aio.AsyncClient`` only run those steps: redis-py's sync
and asyncio clients name their commands alike, so one step serves both; the asyncio transport
awaits what comes back and runs blocking calls (the history database, Celery's control) in a
thread. So cancel revokes, the recheck interval, the registry read and the document are the same
on both, because there is only one of each.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Generator
from datetime import datetime
from typing import Any, Protocol

from .. import keys
from ..dag.spec import Dag
from ..dag.waits import EVENT_NAME
from ..engine.events import PAGE, Cursor, Event, entries_page, entries_start
from ..engine.scripts import named
from ..engine.transitions import now
from ..errors import InvalidArgumentError, RunNotFoundError, RunStateError
from ..history.queries import EVERY, RunQuery
from ..registry import live_workers
from ..schedules.book import ScheduleBook
from ..settings import Settings
from ..status import TERMINAL, public
from ..steps import Ask, Block, Listen, Outlast, Pause, Receive, Step, Steps, Subscribe, ask
from ..submitting.submitter import Submitter
from .document import live_document, live_reads, outcome, retry_plan, run_rows, stall_warnings

log = logging.getLogger(__name__)

#: Seconds between a waiting caller's checks on a run, in case its announcement was missed (a
#: dropped subscription): waits and event streams are woken by pub/sub, never by this.
RECHECK_SECONDS = 5.0
#: The scripts a client calls (the rest are the workers').
CLIENT_SCRIPTS = ("submit", "roots", "cancel", "limit", "event", "approve", "schedule")


class History(Protocol):
    """The reads a client makes of the durable history (``history.store.HistoryStore``)."""

    def run(self, run_id: str) -> dict[str, Any] | None: ...
    def dag(self, run_id: str) -> str | None: ...
    def runs(self, limit: int = 50, before: str | None = None, query: RunQuery = EVERY) -> list[dict[str, Any]]: ...
    def transitions(self, run_id: str) -> list[dict[str, Any]]: ...
    def counts(self, query: RunQuery = EVERY) -> dict[str, int]: ...
    def per_minute(self, minutes: int = 60) -> dict[str, list[dict[str, Any]]]: ...
    def agent_nodes(self, agent: str, limit: int = 50) -> list[dict[str, Any]]: ...
    def oldest_queued(self) -> dict[str, str]: ...


class Deadline:
    """A wait's end (None: none), and how long the next pause may be."""

    def __init__(self, timeout: float | None) -> None:
        self.end = None if timeout is None else time.monotonic() + timeout

    def left(self) -> float:
        return RECHECK_SECONDS if self.end is None else min(RECHECK_SECONDS, self.end - time.monotonic())

    def over(self) -> bool:
        return self.end is not None and time.monotonic() >= self.end


def check_identity(by: str) -> None:
    if not (isinstance(by, str) and 0 < len(by) <= 128 and by.isprintable()):
        raise InvalidArgumentError("an approver's name must be 1 to 128 printable characters")


def check_event(name: str, key: str, data: Any) -> str:
    """The event's data as JSON; ``InvalidArgumentError`` for a bad name, key or data."""
    if not (isinstance(name, str) and EVENT_NAME.match(name)):
        raise InvalidArgumentError(f"event name {name!r} must match {EVENT_NAME.pattern}")
    if not isinstance(key, str) or len(key) > 256:
        raise InvalidArgumentError("an event's key must be a string of at most 256 characters")
    try:
        return json.dumps(data, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"an event's data must be JSON: {exc}") from None


class Core:
    """The operations of one client over one app (which builds node messages without I/O) and the
    history it reads once a run's live state has gone."""

    def __init__(self, app: Any, history: Callable[[], History], outage_seconds: float) -> None:
        self.app = app
        self.settings: Settings = app.settings
        self.history = history
        self.outage_seconds = outage_seconds
        self.submitter = Submitter(app, outage_seconds)
        self.schedules = ScheduleBook(self)

    # --- reading ---

    def state(self, run_id: str) -> Steps[str]:
        """The run's status alone (cheap): running, succeeded, failed or cancelled."""
        status = yield Ask(lambda t: t.redis.hget(keys.run_prefix(run_id) + "run", "status"))
        if status is None:
            return str((yield from self.status(run_id))["status"])
        return public(str(status))

    def status(self, run_id: str) -> Steps[dict[str, Any]]:
        """The full run document (the README's run JSON): live from Redis, else from the history."""
        live = live_document(run_id, (yield Ask(lambda t: live_reads(t, run_id))))
        if live is not None:
            if live["status"] not in TERMINAL:
                stall_warnings(live, (yield from self.live_agents()))
            return live
        found = yield Block(lambda: self.history().run(run_id))
        if found is None:
            raise RunNotFoundError(run_id)
        return dict(found)

    def progress(self, run_id: str) -> Steps[tuple[int, str]]:
        """(nodes in a terminal state, run state), cheaply, for progress bars."""
        key = keys.run_prefix(run_id) + "run"
        total, remaining, status = yield Ask(lambda t: t.redis.hmget(key, "total", "remaining", "status"))
        if total is None:
            doc = yield from self.status(run_id)
            return len(doc["nodes"]), str(doc["status"])
        return int(total) - int(remaining), public(str(status))

    def dispatch_seconds(self, run_id: str) -> Steps[float | None]:
        """Seconds from submit to the first node running (None if none ran): how long the platform
        took to get the run going, queueing included."""
        p = keys.run_prefix(run_id)
        submitted, started = yield Ask(
            lambda t: t.redis.pipeline(False).hget(p + "run", "submitted_at").hvals(p + "started").execute()
        )
        if submitted is None or not started:  # gone, retired (its node times are in its document) or not begun
            doc = yield from self.status(run_id)
            submitted, started = doc["submitted_at"], [n["started_at"] for n in doc["nodes"].values()]
        stamps = [datetime.fromisoformat(s) for s in started if s]
        if not stamps:
            return None
        return (min(stamps) - datetime.fromisoformat(submitted)).total_seconds()

    def definition(self, run_id: str) -> Steps[dict[str, Any]]:
        """The DAG as submitted (JSON form)."""
        text = yield Ask(lambda t: t.redis.hget(keys.run_prefix(run_id) + "run", "dag"))
        if text is None:
            text = yield Block(lambda: self.history().dag(run_id))
            if text is None:
                raise RunNotFoundError(run_id)
        data: dict[str, Any] = json.loads(text)
        return data

    def wait(self, run_id: str, timeout: float | None) -> Steps[str]:
        """Until the run is terminal or ``timeout`` seconds pass; its state. Woken by the run's end
        announcement; a check every ``RECHECK_SECONDS`` guards against a missed one."""
        deadline = Deadline(timeout)
        ticket = yield Listen(run_id, max(deadline.left(), 0.001))
        while True:
            state = yield from self.state(run_id)
            if state in TERMINAL or deadline.over():
                return state
            yield Pause(ticket, deadline.left())

    def result(self, run_id: str, timeout: float | None) -> Steps[dict[str, Any]]:
        """Results by node once the run succeeds; ``RunFailedError`` (its failed nodes and their
        errors) if it fails or is cancelled; ``RunTimeoutError`` if not over within ``timeout`` s."""
        state = yield from self.wait(run_id, timeout)
        return outcome(run_id, state, (yield from self.status(run_id)), timeout)

    # --- changing ---

    def cancel(self, run_id: str) -> Steps[bool]:
        """Stop starting nodes and revoke the queued ones; the run ends ``cancelled``. False if it
        was over already."""
        reply = named(
            (
                yield Outlast(
                    lambda _: ask(lambda t: t.scripts["cancel"](args=[run_id, now()], cell=keys.cell_of(run_id))),
                    self.outage_seconds,
                )
            )
        )
        if reply["ok"] != 1:
            return False
        if queued := list(reply["queued"] or ()):
            yield Block(lambda: self.app.control.revoke(queued))
        return True

    def approve(self, run_id: str, node: str, by: str, reject: bool, comment: str) -> Steps[dict[str, Any]]:
        """``by`` approves (or rejects) approval node ``node``: {status, approvals, needed}.
        ``RunStateError`` if it is not an approval that waits."""
        check_identity(by)
        args = [run_id, now(), node, by, "reject" if reject else "approve", comment]
        reply = named((yield Ask(lambda t: t.scripts["approve"](args=args, cell=keys.cell_of(run_id)))))
        if reply["ok"] != 1:
            raise RunStateError(run_id, reply["why"])
        return {k: reply[k] for k in ("status", "approvals", "needed")}

    def send_event(self, name: str, key: str, data: Any) -> Steps[int]:
        """Send event ``name`` with ``key``: every node waiting for both succeeds with ``data``; a wait
        that begins later within its lookback still takes it. How many waiting nodes it resolved.
        It goes to every cell, each holding its own runs' waiters and its own copy for the lookback."""
        body = check_event(name, key, data)
        event_id, resolved = uuid.uuid4().hex, 0
        for cell in range(self.settings.cells):
            resolved += int((yield Ask(_event(cell, ["", now(), name, key, body, event_id]))))
        return resolved

    def retry(self, run_id: str) -> Steps[str]:
        """A new run of a failed or cancelled run's DAG: nodes that succeeded start succeeded with
        their results; the rest run afresh. ``RunStateError`` for a run that succeeded or runs."""
        doc = yield from self.status(run_id)
        reused = retry_plan(run_id, doc)
        dag = Dag.from_json((yield from self.definition(run_id)), source=f"run {run_id}")
        # its priority, fairness key and versions too, while its live state holds them (within its
        # retention); its versions from the history after that
        priority, fairness, versions = yield Ask(
            lambda t: t.redis.hmget(keys.run_prefix(run_id) + "run", "priority", "fair", "versions")
        )
        return (
            yield from self.submitter.submit(
                dag,
                None,
                reused,
                run_id,
                int(priority) if priority else None,
                fairness or None,
                versions=json.loads(versions) if versions else doc.get("versions") or {},  # exactly its pins
            )
        )

    # --- listings ---

    def runs(self, query: RunQuery = EVERY, limit: int = 50, before: str | None = None) -> Steps[list[dict[str, Any]]]:
        """The ``limit`` newest runs (live and recorded) that ``query`` passes; ``before`` (a run
        id): those submitted before it, the next page."""
        if limit < 1:
            raise InvalidArgumentError(f"limit must be at least 1, not {limit}")
        found: list[dict[str, Any]] = []
        while len(found) < limit:
            page = yield from self._page(limit, before, query)
            found.extend(row for row in page if query.matches(row))
            if len(page) < limit:
                break
            before = page[-1]["run_id"]
        return found[:limit]

    def _page(self, limit: int, before: str | None, query: RunQuery) -> Steps[list[dict[str, Any]]]:
        """Newest runs first: live ones from Redis, the rest from the history."""
        cutoff: str | None = None
        newest = "+inf"
        if before is not None:
            live = yield Ask(lambda t: t.redis.hget(keys.run_prefix(before) + "run", "submitted_at"))
            cutoff = str(live) if live is not None else (yield from self.status(before))["submitted_at"]
            # a run's score is taken a moment after its submitted_at: a second's slack, then the exact cut below
            newest = str(datetime.fromisoformat(str(cutoff)).timestamp() + 1)
        # twice the page: runs in the second of slack above the cut are dropped below, the page stays full
        pages = yield Ask(lambda t: newest_pages(t.redis, newest, 2 * limit, self.settings.cells))
        run_ids = newest_runs(pages, 2 * limit)
        replies = yield Ask(lambda t: run_rows(t, run_ids))
        found: dict[str, dict[str, Any]] = {}
        for run_id, (name, status, submitted, finished) in zip(run_ids, replies, strict=True):
            if status is not None:  # the live row wins over the history's (behind by the recorder's lag)
                found[run_id] = {
                    "run_id": run_id,
                    "name": name,
                    "submitted_at": submitted,
                    "finished_at": finished,
                    "status": public(status),
                }
        for row in (yield Block(lambda: self.history().runs(limit, before=cutoff, query=query))):
            found.setdefault(row["run_id"], row)
        rows = [r for r in found.values() if cutoff is None or (r["submitted_at"] or "") < cutoff]
        return sorted(rows, key=lambda r: r["submitted_at"] or "", reverse=True)[:limit]

    def live_agents(self) -> Steps[dict[str, list[str]]]:
        """Agent → hostnames of its live workers."""
        table: dict[str, list[str]] = {}
        for worker in (yield from live_workers()):
            for name in worker["agents"]:
                table.setdefault(name, []).append(worker["hostname"])
        return table

    # --- the event stream ---

    def events(self, run_id: str, after: str | None = None) -> Generator[Step | Event, Any, None]:
        """The run's transitions after id ``after`` (all without it), ending with its terminal event.

        Every transition is an entry of the history stream, which the recorder moves into the
        database: so what happened so far is in the database, the stream, or both. Subscribed to
        the run's events channel first (from its confirmation on, the engine publishes each new
        transition there with its count ``n``), this reads the stream from the run's first entry,
        then the database, merges by id, and goes on with the channel; an id seen twice counts
        once. A message whose count skips one, or a silence after which the run's count is ahead,
        makes it read both again; a run that ended without its last event found ends it too."""
        cursor = Cursor(after, keys.cell_of(run_id))
        subscription = yield Subscribe(keys.events_channel(run_id))
        for event in cursor.replay(
            (yield from self._entries(run_id)), (yield Block(lambda: self.history().transitions(run_id)))
        ):
            yield event
        while not cursor.done:
            message = yield Receive(subscription, RECHECK_SECONDS)
            taken: list[Event] | None = []
            if message is not None and message["type"] == "message":
                taken = cursor.live(str(message["data"]))
                if taken is None:
                    stream = yield from self._entries(run_id)
                    taken = cursor.replay(
                        stream, (yield Block(lambda: self.history().transitions(run_id))), cursor.missed
                    )
            elif message is None:
                count, status = yield Ask(_counted(run_id))
                if cursor.behind(count) or status is None or status in TERMINAL:
                    stream = yield from self._entries(run_id)
                    taken = cursor.replay(stream, (yield Block(lambda: self.history().transitions(run_id))))
                    cursor.done = cursor.done or status is None or status in TERMINAL
            for event in taken or []:
                yield event

    def terminal_event(self, run_id: str) -> Steps[str | None]:
        """The id of the run's terminal event, if it has one yet."""
        stream = yield from self._entries(run_id)
        events = Cursor().replay(stream, (yield Block(lambda: self.history().transitions(run_id))))
        return next((e.id for e in events if e.terminal), None)

    def _entries(self, run_id: str) -> Steps[list[tuple[str, dict[str, Any]]]]:
        """The history stream's entries of one run (those the recorder has not taken yet), read from
        the run's first entry on, not from the stream's start: the stream holds every run's."""
        found: list[tuple[str, dict[str, Any]]] = []
        first, status = yield Ask(lambda t: t.redis.hmget(keys.run_prefix(run_id) + "run", "first_event", "status"))
        start = entries_start(first, status)
        while start is not None:
            page = yield Ask(_history_page(run_id, start))
            start = entries_page(page, run_id, found)
        return found


def _event(cell: int, args: list[str]) -> Callable[[Any], Any]:
    """The event script on cell ``cell``."""
    return lambda t: t.scripts["event"](args=args, cell=cell)


def _counted(run_id: str) -> Callable[[Any], Any]:
    """The run's count of events and its status."""
    return lambda t: t.redis.hmget(keys.run_prefix(run_id) + "run", "events", "status")


def _history_page(run_id: str, start: str) -> Callable[[Any], Any]:
    """One page of the history stream of run ``run_id``'s cell from ``start``."""
    return lambda t: t.redis.xrange(keys.in_cell(keys.HISTORY, keys.cell_of(run_id)), start, "+", count=PAGE)


def newest_pages(redis: Any, newest: str, count: int, cells: int) -> Any:
    """Each cell's ``count`` newest live runs submitted no later than ``newest`` (seconds), with their
    scores, in one round trip (an awaitable on an event loop)."""
    pipe = redis.pipeline(transaction=False)
    for cell in range(cells):
        pipe.zrevrangebyscore(keys.in_cell(keys.RUNS, cell), newest, "-inf", start=0, num=count, withscores=True)
    return pipe.execute()


def newest_runs(pages: list[list[tuple[str, float]]], count: int) -> list[str]:
    """The ``count`` newest of the cells' ``pages`` (``newest_pages``)."""
    scored = sorted(((float(score), str(run)) for page in pages for run, score in page), reverse=True)
    return [run for _, run in scored[:count]]
