"""Run state in Redis, changed only by atomic Lua scripts: the API over them, no worker code.

A node's completion runs one script that records the result, counts down its
successors and pushes the Celery messages of those now ready straight onto
their agents' queues, so dependencies are exact, nothing polls, and no crash
can leave a ready node unqueued. Every transition is appended to the history
stream in the same script. Attempt tokens fence late or duplicate completions:
only the newest attempt of a node may change the run. Executing an attempt is the
worker's side (``coditect_tasks.worker``), which calls this module, never the reverse.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import redis

from .. import keys
from ..connection import TRANSIENT, barrier, outlast_outages, redis_client
from ..errors import InvalidArgumentError
from ..limits import document
from .scripts import named, registered
from .taken import Next, Taken, TakeNext, taken_from

log = logging.getLogger(__name__)

#: Seconds a caller's engine call waits out a Redis outage (a restart, a failover) before it fails.
OUTAGE_SECONDS = 120.0
#: Seconds a pass over many cells (reap, pace) waits for one of them before it goes on to the next.
CELL_OUTAGE_SECONDS = 1.0

T = TypeVar("T")


def now() -> str:
    """ISO-8601 UTC timestamp with microseconds: the only time format we store."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


#: The scripts of an attempt whose writes a failover must not lose: its start (its fencing token)
#: and its end. (A cancel, an event or an approval lost in a failover is sent again by its caller;
#: a lost hand-off is found by the node's lease.)
DURABLE = frozenset({"begin", "complete", "fail", "retry", "spawn", "fanout", "reroute"})


class Engine:
    """The run-state operations, each one atomic script call (one round trip).

    Every call outlasts Redis outages of up to ``outage_seconds``: the scripts
    are idempotent or fenced, so repeating one whose reply was lost is safe.
    """

    def __init__(
        self,
        client: redis.Redis,
        url: str = "redis://",
        outage_seconds: float = OUTAGE_SECONDS,
        min_replicas: int = 0,
        cells: int = 1,
    ) -> None:
        self.client = client
        self.url = url
        self.outage_seconds = outage_seconds
        self.min_replicas = min_replicas
        #: The cells run state is spread over (``keys.in_cell``): a run's scripts go to its own, and
        #: the calls on the global structures (reap, pace, the outbox …) to each in turn.
        self.cells = cells
        self.scripts = registered(client)

    def _call(self, name: str, run_id: str, *args: Any, more: Sequence[Any] = (), until: float = 0.0) -> Any:
        """Run script ``name``; ``more`` arguments go with it only while ``time.monotonic()`` is
        before ``until`` (a try repeated after an outage may come too late for them)."""
        reply = self._run(name, run_id, args, more, until)
        if self.min_replicas and name in DURABLE:
            self._replicated(name, run_id)
        return reply

    def _run(
        self,
        name: str,
        run_id: str,
        args: Sequence[Any],
        more: Sequence[Any] = (),
        until: float = 0.0,
        cell: int = 0,
        outage: float | None = None,
    ) -> Any:
        """Script ``name`` on run ``run_id``'s cell (``cell`` for a call of no run), outlasting an
        outage of ``outage`` seconds (``outage_seconds`` by default)."""
        cell = keys.cell_of(run_id) if run_id else cell
        for attempt in outlast_outages(self.outage_seconds if outage is None else outage):
            with attempt:
                extra = more if time.monotonic() < until else ()
                return self.scripts[name](args=[run_id, now(), *args, *extra], cell=cell)
        raise AssertionError("unreachable: tenacity re-raises")

    def _replicated(self, name: str, run_id: str) -> None:
        """Wait for ``min_replicas`` replicas to have the write just made. Short of them (or with
        Redis gone meanwhile), the write stands (a script cannot be undone, nor should it be run
        again) and is logged: a failover now could lose it, and then the node's lease rules run it again."""
        try:
            acked = int(barrier(self.client, self.min_replicas, cell=keys.cell_of(run_id))[1])
        except TRANSIENT as exc:
            log.warning("%s of run %s: could not wait for its replicas (%s)", name, run_id, exc)
            return
        if acked < self.min_replicas:
            log.warning(
                "%s of run %s: %d of %d replica(s) acknowledged it within %g s",
                name,
                run_id,
                acked,
                self.min_replicas,
                keys.REPLICA_WAIT_SECONDS,
            )

    def begin(self, run_id: str, node_id: str, worker: str, task_id: str, breaker: str = "") -> Taken | None:
        """Take a node for a new attempt from the message ``task_id``, or None if it must not run
        (finished, cancelled, superseded, or its current attempt is alive: a duplicate message).
        With ``breaker`` (``keys.breaker_prefix``) it also reads that breaker's state, when the run is
        in cell 0, where breakers live (the breaker reads it itself otherwise)."""
        breaker = "" if keys.cell_of(run_id) else breaker
        return taken_from(named(self._call("begin", run_id, node_id, worker, task_id, breaker)), breaker)

    def fan_out(self, run_id: str, node_id: str, token: int, record: dict[str, Any], items: list[Any]) -> bool:
        """Queue one message per item of foreach node ``node_id`` (attempt ``token``, at least one
        item); each item begins with ``record`` without its literal items (not N copies of them).
        False if that attempt is stale, the node has fanned out already or the run has stopped."""
        shared = json.dumps({**record, "items": None}, separators=(",", ":"))
        encoded = [json.dumps(item, separators=(",", ":")) for item in items]
        return int(self._call("fanout", run_id, node_id, token, shared, *encoded)) == 1

    def spawn(
        self,
        run_id: str,
        node_id: str,
        token: int,
        children: list[dict[str, Any]],
        one: bool,
        retry: float,
        bounds: tuple[int, int],
    ) -> bool:
        """End attempt ``token`` by starting ``children`` (``RunWrite.child``) and waiting for them
        (spawn.lua); ``retry``: seconds before the next attempt should a child fail (-1: none);
        ``bounds``: the most levels below the root run and nodes in its tree. False if stale."""
        encoded = json.dumps(children, separators=(",", ":"))
        reply = self._call("spawn", run_id, node_id, token, encoded, "1" if one else "0", retry, *bounds)
        return int(reply) == 1

    def complete(self, run_id: str, node_id: str, token: int, result_json: str, span: str = "") -> bool:
        reply = named(self._call("complete", run_id, node_id, token, result_json, span))
        self._queue_left(run_id, reply)
        return bool(reply["ok"] == 1)

    def _queue_left(self, run_id: str, reply: dict[str, Any]) -> None:
        """Queue the successors a completion left (past ``keys.READY_SLICE``), a slice a call, so
        other scripts run between them; the reaper goes on if this process stops."""
        left = reply.get("left", 0)
        while left:
            left = int(self._call("roots", run_id, keys.READY_SLICE))

    def succeed(
        self, run_id: str, node_id: str, token: int, result: Any, span: str = "", take_next: TakeNext | None = None
    ) -> tuple[bool, Next | None]:
        """Complete with ``result``, or fail the node if it is not JSON or too large; with
        ``take_next``, then take the next message of the process's queue in the same script.

        ``span`` is the attempt's traceparent: its successors' spans hang under it.
        """
        encoded, problem = encode_result(result)
        if problem:
            return self.fail(run_id, node_id, token, problem), None
        more, until = (take_next.args(), take_next.until) if take_next else ((), 0.0)
        reply = named(self._call("complete", run_id, node_id, token, encoded, span, more=more, until=until))
        self._queue_left(run_id, reply)
        taken = taken_from(reply["taken"], take_next.breaker) if take_next and "taken" in reply else None
        if taken is None:
            return reply["ok"] == 1, None
        return True, Next(reply["next"]["run"], reply["next"]["node"], reply["next"]["task"], taken)

    def fail(self, run_id: str, node_id: str, token: int, error: str) -> bool:
        return int(self._call("fail", run_id, node_id, token, error)) == 1

    def fail_from_message(self, run_id: str, node_id: str, task_id: str, error: str) -> bool:
        """Fail the attempt begun from message ``task_id``, if it is still the running one."""
        return int(self._call("fail", run_id, node_id, f"task:{task_id}", error)) == 1

    def retry(self, run_id: str, node_id: str, token: int, error: str, countdown: float) -> bool:
        return int(self._call("retry", run_id, node_id, token, error, countdown)) == 1

    def output(self, run_id: str, node_id: str, token: int, chunk: str, most: int) -> str:
        """Append ``chunk`` (JSON) to the node's output as attempt ``token``: the entry id, or
        'stale' (no longer the running attempt) or 'full' (``most`` chunks streamed already)."""
        return str(self._call("output", run_id, node_id, token, chunk, most))

    def renew(self, run_id: str, node_id: str, token: int, seconds: float) -> bool:
        return int(self._call("renew", run_id, node_id, token, seconds)) == 1

    def taken_after(self, task_id: str) -> tuple[str, str, str] | None:
        """(run, node, task id) of the node a pool process took after finishing message
        ``task_id``'s own (``TakeNext``), if it took one."""
        value = self.client.get(keys.taken_after(task_id))
        if not value:
            return None
        run_id, node_id, message = str(value).split("|", 2)
        return run_id, node_id, message

    def forget_taken(self, task_id: str) -> None:
        """Message ``task_id`` is done: forget which node its process took after its own."""
        self.client.delete(keys.taken_after(task_id))

    def hand_off(self, run_id: str, node_id: str, worker: str, task_id: str) -> bool:
        """Queue the node again now: ``worker`` is shutting down while its attempt from message
        ``task_id`` still runs. False if that attempt no longer runs the node."""
        return int(self._call("handoff", run_id, node_id, worker, task_id)) == 1

    def reap(self, limit: int = 100) -> list[str] | None:
        """Queue retries whose delay is over, requeue attempts whose lease expired and messages
        lost in transit; returns ``run|node|attempt`` (or ``error|<member>|<why>``) of each, or
        None right after an outage of Redis (leases were extended instead: see reap.lua)."""

        def reap(cell: int) -> list[str]:
            if not int(self._run("tick", "", ["reap"], cell=cell, outage=self._cell_outage)):  # nothing due
                return []
            return [str(m) for m in self._run("reap", "", [limit], cell=cell, outage=self._cell_outage)]

        replies = self._each_reachable("reaping", reap)
        return None if ["outage"] in replies else [member for reply in replies for member in reply]

    def declare_limit(self, name: str, definition: dict[str, Any]) -> None:
        """Declare limit ``name`` as code does (``limits.Limit.to_json``); an operator's change stays over it."""
        self._call("limit", "", "declare", name, json.dumps(definition))

    def set_limit(self, name: str, change: dict[str, Any]) -> dict[str, Any]:
        """An operator's ``change`` of limit ``name`` (defining it if no code does); its definition now.
        It holds from the next dispatch on, and lets go at once the waiters it makes room for."""
        defined: dict[str, Any] = json.loads(self._call("limit", "", "set", name, json.dumps(change)))
        if "error" in defined:
            raise InvalidArgumentError(defined["error"])
        return defined

    def unset_limit(self, name: str) -> dict[str, Any] | None:
        """Drop the operator's change of limit ``name``: its declared definition again, or None (gone)."""
        defined: dict[str, Any] | None = json.loads(self._call("limit", "", "unset", name))
        return defined

    def limits(self, name: str = "") -> list[dict[str, Any]]:
        """Every limit (or only ``name``): its definition, the operator's change, and per key value
        the nodes holding it, waiting for it, the units its rate window holds and the oldest wait."""
        return document(self._call("limit", "", "read", name))

    def pace(self, limit: int = 100) -> float | None:
        """Let go the waiters of limits whose rate window freed units; seconds until the next is due."""

        def pace(cell: int) -> float:
            due = float(self._run("tick", "", ["pace"], cell=cell, outage=self._cell_outage))  # nothing due: no pace
            return float(self._run("pace", "", [limit], cell=cell, outage=self._cell_outage)) if due == 0 else due

        dues = [due for due in self._each_reachable("pacing", pace) if due >= 0]
        return min(dues) if dues else None

    @property
    def _cell_outage(self) -> float:
        """Seconds a call on one of many cells waits out its outage: a failover of one primary must
        not hold up the cells of the others."""
        return self.outage_seconds if self.cells == 1 else min(self.outage_seconds, CELL_OUTAGE_SECONDS)

    def _each_reachable(self, doing: str, call: Callable[[int], T]) -> list[T]:
        """``call(cell)`` for each cell in turn; with many, one that does not answer is skipped (and
        logged) for this pass, so the others go on (a single cell's outage raises, as ever)."""
        replies = []
        for cell in range(self.cells):
            try:
                replies.append(call(cell))
            except TRANSIENT as exc:
                if self.cells == 1:
                    raise
                log.warning("%s: cell %d skipped this pass (%s)", doing, cell, exc)
        return replies

    def set_windows(self, windows: dict[str, int]) -> int:
        """Each queue's hand-off window (``windows``; a queue left out has none any more, as no live
        worker serves it); nodes waiting past a wider window go to it now. Returns how many went."""
        return int(self._call("window", "", *(part for pair in sorted(windows.items()) for part in pair)))

    def reserve(self, worker: str, epoch: str, notes: Sequence[tuple[str, str, str]]) -> int:
        """Note that ``worker`` holds the messages ``notes`` (run id, node id, task id), for
        ``reclaim`` if it dies before they begin: only while its notes are of ``epoch`` and only
        for nodes still queued for that message. Returns the notes kept."""
        by_cell: dict[int, list[str]] = {}
        for note in notes:
            by_cell.setdefault(keys.cell_of(note[0]), []).extend(note)
        return sum(int(self._run("reserve", "", [worker, epoch, *parts], cell=c)) for c, parts in by_cell.items())

    def reclaim_lost(self, grace: float) -> int:
        """Requeue nodes whose message a now-dead worker had received but not begun."""
        pipe = self.client.pipeline(transaction=False)
        for cell in range(self.cells):
            pipe.zrange(keys.in_cell(keys.RESERVERS, cell), 0, -1)
        count = 0
        for cell, hosts in enumerate(pipe.execute()):
            for host in hosts:
                if not self.client.exists(keys.worker(str(host))):
                    count += int(self._run("reclaim", "", [str(host), grace], cell=cell))
        return count

    def take_outbox(self, hostname: str, published: int, limit: int, cell: int = 0) -> list[str]:
        """Worker ``hostname``'s outbox entries of cell ``cell`` to publish, newest first: it drops
        the ``published`` oldest it held (the broker confirmed them) and takes more until it holds
        ``limit``. One try, never repeated (outbox.lua): on an error the caller publishes what it
        holds again."""
        reply = self.scripts["outbox"](args=["", now(), hostname, published, limit], cell=cell)
        return [str(entry) for entry in reply]

    def await_outbox(self, hostname: str, seconds: int, cell: int = 0) -> str | None:
        """Block up to ``seconds`` until an entry is in cell ``cell``'s outbox; ``hostname`` then
        holds it, and it is returned (None if none came). It is listed with the reservers first, as
        outbox.lua lists it, so reclaim.lua returns what it holds if it dies."""
        self.client.zadd(keys.in_cell(keys.RESERVERS, cell), {hostname: time.time()}, nx=True)
        held = self.client.blmove(
            keys.in_cell(keys.OUTBOX, cell), keys.outbox_held(hostname, cell), seconds, "RIGHT", "LEFT"
        )
        return None if held is None else str(held)

    def retire(self, run_id: str, retention: float) -> bool:
        """The run's history is written: let its live state expire in ``retention`` seconds (0: now).
        False if the run has not ended."""
        return int(self._call("retire", run_id, retention)) == 1

    def delete_retired(self, cell: int = 0) -> None:
        """Delete cell ``cell``'s retired runs whose retention window has ended (``retire`` does too)."""
        self._run("retire", "", [0], cell=cell)

    def reroute(self, run_id: str, node_id: str, token: int, agent: str, template: str) -> bool:
        """Queue the node again for ``agent`` (its fallback); False if no template or stale (reroute.lua
        checks both before it writes)."""
        return int(self._call("reroute", run_id, node_id, token, agent, keys.agent_queue(agent), template)) == 1


_ENGINES: dict[tuple[int, str, int, int], Engine] = {}


def engine_for(state_url: str, min_replicas: int = 0, cells: int = 1) -> Engine:
    """This process's engine on the state Redis at ``state_url`` (a prefork child gets its own
    connection), as ``breaker_for`` keys its breakers; its durable writes wait for ``min_replicas``
    replicas; run state is spread over ``cells``. Engines of one URL share one connection pool."""
    key = (os.getpid(), state_url, min_replicas, cells)
    engine = _ENGINES.get(key)
    if engine is None:
        shared = next((e for (pid, url, *_), e in _ENGINES.items() if (pid, url) == key[:2]), None)
        client = shared.client if shared is not None else redis_client(state_url)
        engine = _ENGINES[key] = Engine(client, state_url, min_replicas=min_replicas, cells=cells)
    return engine


def encode_result(result: Any) -> tuple[str, str | None]:
    """The result as JSON, or a clear problem if it is not JSON or too large."""
    try:
        encoded = json.dumps(result, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        return "", f"result is not JSON-serialisable: {exc}"
    if len(encoded) > keys.MAX_RESULT_BYTES:
        return "", f"result is {len(encoded)} bytes, over the limit of {keys.MAX_RESULT_BYTES}"
    return encoded, None
