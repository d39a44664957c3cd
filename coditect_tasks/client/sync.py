"""``Client`` and ``DagRun``: the sync transport of the client core, and the module-level ``submit``.

A client is built once (its Celery app, which builds node messages without I/O, and one bounded
Redis connection pool) and shared by every thread of the process; each call borrows a connection
and gives it back. Waits share one pattern subscription to every run's end, listened to in one
thread, so a thousand threads (or Locust's greenlets) waiting on runs hold one connection. The
module-level ``submit(dag)`` is the README's one-liner over one such client per process, built
on first use: never an app or a connection per call.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from typing import Any, ClassVar, TypeVar

import redis

from .. import keys
from ..app import CoditectApp, create_app
from ..connection import close, outlast_outages, redis_client
from ..dag.spec import Dag
from ..embedded import attach
from ..engine.events import Event
from ..engine.scripts import registered
from ..engine.transitions import OUTAGE_SECONDS, engine_for
from ..history.queries import RunQuery
from ..history.store import HistoryStore
from ..limits import change
from ..registry import agents_document
from ..settings import Settings
from ..steps import Ask, Block, Cleanups, Listen, Outlast, Pause, Receive, Step, Steps, Subscribe, drive, iterate
from .core import CLIENT_SCRIPTS, Core, History
from .document import outcome, results
from .output import Chunk, node_output
from .schedules import Schedules

T = TypeVar("T")
log = logging.getLogger(__name__)


class Client:
    """Submit DAGs; read, wait for, cancel, retry and stream runs; list runs and agents.
    Thread-safe; ``close()`` (or ``with``) gives back its connections.

    ``history``: what reads the durable history once a run's live state has gone (default: the
    ``HistoryStore`` of the settings, opened on first use).
    """

    def __init__(self, settings: Settings | None = None, *, history: History | None = None) -> None:
        settings = settings or attach(Settings.from_env())
        self._setup(create_app(settings), redis_client(settings.state_url, timeout=settings.connect_timeout), history)
        self._waits = _Waits(self.redis)
        self._owned = True

    @classmethod
    def of(cls, app: CoditectApp) -> Client:
        """The client over ``app`` (one per app and process), on this process's pool and
        subscription for its state Redis: what ``submit(dag, app)`` uses."""
        with _LOCK:
            held = app.__dict__.get("_coditect_client")
            if held is None or held[0] != os.getpid():
                client = cls.__new__(cls)
                client._setup(app, engine_for(app.settings.state_url).client, None)
                client._waits = _Waits.shared(app.settings.state_url, client.redis)
                client._owned = False
                held = app.__dict__["_coditect_client"] = (os.getpid(), client)
            return held[1]

    def _setup(self, app: CoditectApp, client: redis.Redis, history: History | None) -> None:
        self.app = app
        self.settings: Settings = app.settings
        self.redis = client
        self.scripts = registered(client, CLIENT_SCRIPTS)
        self._history = history
        self.core = Core(app, self.history, OUTAGE_SECONDS)
        self.schedules = Schedules(self, lambda run_id: DagRun(run_id, self))

    def history(self) -> History:
        if self._history is None:
            self._history = HistoryStore.from_settings(self.settings)
        return self._history

    def submit(
        self,
        dag: Dag,
        *,
        idempotency_key: str | None = None,
        priority: int | None = None,
        fairness_key: str | None = None,
    ) -> DagRun:
        """Validate and start ``dag`` (``DagError``: nothing enqueued). With ``idempotency_key``, at
        most once per key within ``CODITECT_IDEMPOTENCY_RETENTION``: a repeat with the same DAG
        returns the first run, one with another DAG raises ``IdempotencyConflictError``.
        ``priority`` (0–9, default 5; a node's own wins): higher goes first when workers are busy;
        ``fairness_key`` (a tenant, a user): keys of one priority are served round robin."""
        run_id = self._drive(
            self.core.submitter.submit(dag, idempotency_key, priority=priority, fairness_key=fairness_key)
        )
        return DagRun(run_id, self)

    def get(self, run_id: str) -> DagRun:
        """The handle of run ``run_id``; ``RunNotFoundError`` if neither Redis nor the history knows it."""
        run = DagRun(run_id, self)
        run.state()
        return run

    def runs(
        self,
        status: str | None = None,
        limit: int = 50,
        before: str | None = None,
        *,
        name: str | None = None,
        search: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> list[dict[str, Any]]:
        """The newest runs (live and recorded), at most ``limit``; ``before`` (a run id): the page
        after it. Only those in ``status``, named ``name``, whose id starts with ``search`` or
        whose name holds it, submitted from ``since`` and before ``until`` (ISO-8601), as given."""
        query = RunQuery(status, name, search, since, until)
        return self._drive(self.core.runs(query, limit, before))

    def agents(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Every agent with its live workers, queue depth and breaker (``agents --json``)."""
        return agents_document(self.redis, self.settings, self.app.agents)

    def send_event(self, name: str, *, key: str = "", data: Any = None) -> int:
        """Send event ``name`` with ``key``: every node waiting for that name and key succeeds with
        ``data`` (JSON), and a wait that begins later within its lookback still takes it. Returns how
        many waiting nodes it resolved now."""
        return self._drive(self.core.send_event(name, key, data))

    def limits(self, name: str = "") -> list[dict[str, Any]]:
        """Every limit (or only ``name``) with what holds and waits for it, per key (``limits --json``)."""
        return self._drive(self.core.submitter.limits.document(name))

    def set_limit(
        self, name: str, *, concurrency: int | None = None, rate: float | None = None, per: float | None = None
    ) -> dict[str, Any]:
        """Change limit ``name`` at run time (defining it if no code does): it holds from the next
        dispatch on, and lets go at once the waiters it makes room for. Its definition now."""
        return self._drive(self.core.submitter.limits.set(name, change(name, concurrency, rate, per)))

    def unset_limit(self, name: str) -> dict[str, Any] | None:
        """Drop the change ``set_limit`` made: the declared definition again, or None (no code declares it)."""
        return self._drive(self.core.submitter.limits.unset(name))

    def ramp(self, agent: str, *, to: str, percent: float, base: str | None = None) -> dict[str, Any]:
        """Pin ``percent`` of ``agent``'s new runs to version ``to`` (the rest to ``base``: the
        ramp's, else unversioned); each run keeps its versions to its end. The ramp now."""
        return self._drive(self.core.submitter.ramps.ramp(agent, to, percent, base))

    def rollback(self, agent: str) -> dict[str, Any]:
        """New runs of ``agent`` on its base version again; runs already pinned keep theirs."""
        return self._drive(self.core.submitter.ramps.rollback(agent))

    def close(self) -> None:
        """Give back every connection; the client is unusable after."""
        if self._owned:
            self._waits.close()
            close(self.redis)
            self.app.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the transport ---

    def _drive(self, steps: Steps[T]) -> T:
        """Run one operation of the core to its end."""
        return drive(steps, self._perform)

    def _perform(self, step: Step, cleanups: Cleanups) -> Any:
        if isinstance(step, Ask):
            return step.call(self)
        if isinstance(step, Block):
            return step.call()
        if isinstance(step, Outlast):
            for number, attempt in enumerate(outlast_outages(step.seconds)):
                with attempt:
                    return self._drive(step.steps(number))
            raise AssertionError("unreachable: tenacity re-raises")
        if isinstance(step, Listen):
            ticket = self._waits.listen(step.run_id, step.seconds)
            cleanups.append(lambda: self._waits.release(ticket))
            return ticket
        if isinstance(step, Pause):
            return self._waits.pause(step.ticket, step.seconds)
        if isinstance(step, Subscribe):
            pubsub = self.redis.pubsub()  # type: ignore[no-untyped-call]
            cleanups.append(pubsub.close)
            pubsub.subscribe(step.channel)
            while (message := pubsub.get_message(timeout=5.0)) is None or message["type"] != "subscribe":
                pass  # from its confirmation on, nothing published there can pass us by
            return pubsub
        if isinstance(step, Receive):
            return step.subscription.get_message(timeout=step.seconds)
        raise TypeError(f"not a step: {step!r}")


class DagRun:
    """A handle on one run: read it, wait for it, cancel or retry it, stream its events."""

    def __init__(self, run_id: str, client: Client) -> None:
        self.id = run_id
        self.client = client

    def __repr__(self) -> str:
        return f"<DagRun {self.id}>"

    def state(self) -> str:
        """The run's status alone (cheap): running, succeeded, failed or cancelled."""
        return self.client._drive(self.client.core.state(self.id))

    def status(self) -> dict[str, Any]:
        """The full run document (the HTTP API's ``RunDocument``)."""
        return self.client._drive(self.client.core.status(self.id))

    def wait(self, timeout: float | None = None) -> str:
        """Block until the run is terminal or ``timeout`` seconds pass; return its state."""
        return self.client._drive(self.client.core.wait(self.id, timeout))

    def progress(self) -> tuple[int, str]:
        """(nodes in a terminal state, run state), cheaply, for progress bars."""
        return self.client._drive(self.client.core.progress(self.id))

    def dispatch_seconds(self) -> float | None:
        """Seconds from submit to the first node running (None if none ran)."""
        return self.client._drive(self.client.core.dispatch_seconds(self.id))

    def definition(self) -> dict[str, Any]:
        """The DAG as submitted (JSON form)."""
        return self.client._drive(self.client.core.definition(self.id))

    def results(self) -> dict[str, Any]:
        """Results of the nodes that succeeded, by node id."""
        return results(self.status())

    def result(self, timeout: float | None = None) -> dict[str, Any]:
        """Results by node once the run succeeds; ``RunFailedError`` (with its failed nodes and their
        errors) if it fails or is cancelled; ``RunTimeoutError`` if it has not ended within ``timeout`` s."""
        return outcome(self.id, self.wait(timeout), self.status(), timeout)

    def events(self, after: str | None = None) -> Iterator[Event]:
        """The run's transitions as they happen (those so far first, or those after id ``after``),
        ending with its terminal event."""
        return iterate(self.client.core.events(self.id, after), self.client._perform)

    def terminal_event(self) -> str | None:
        """The id of the run's terminal event, if it has one yet."""
        return self.client._drive(self.client.core.terminal_event(self.id))

    def stream(self, node: str, after: str | None = None) -> Iterator[Chunk]:
        """What ``node`` streams (``call.stream``), from its start or after entry ``after``, live
        until the node ends. A chunk with ``rewind`` set begins a retried attempt's output over."""
        return iterate(node_output(self.id, node, after), self.client._perform)

    def retry(self) -> DagRun:
        """A new run of this run's DAG, for a run that failed or was cancelled: nodes that succeeded
        here start succeeded with their results (they do not run again); the rest run afresh.
        ``RunStateError`` for a run that succeeded or has not ended."""
        return DagRun(self.client._drive(self.client.core.retry(self.id)), self.client)

    def cancel(self) -> bool:
        """Stop starting nodes, revoke queued ones; the run ends ``cancelled``. False if already over."""
        return self.client._drive(self.client.core.cancel(self.id))

    def approve(self, node: str, *, by: str, comment: str = "", reject: bool = False) -> dict[str, Any]:
        """``by`` approves (``reject``: rejects) approval node ``node``, with ``comment``: enough
        approvals from distinct people succeed it, one rejection fails it. {status, approvals, needed}."""
        return self.client._drive(self.client.core.approve(self.id, node, by, reject, comment))


class _Waits:
    """One pattern subscription to every run's end channel, listened to in a daemon thread that
    wakes the waits of each run announced. A dropped connection is subscribed again; meanwhile
    waits fall back on their rechecks."""

    _SHARED: ClassVar[dict[tuple[int, str], _Waits]] = {}

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._waiting: dict[str, set[threading.Event]] = {}
        self._ready = threading.Event()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    @classmethod
    def shared(cls, url: str, client: redis.Redis) -> _Waits:
        """This process's waits on the state Redis at ``url``."""
        with _LOCK:
            return cls._SHARED.setdefault((os.getpid(), url), cls(client))

    def listen(self, run_id: str, seconds: float) -> tuple[str, threading.Event]:
        """A ticket woken when ``run_id`` ends; waits up to ``seconds`` for the subscription."""
        with self._lock:
            if self._closed.is_set():
                raise RuntimeError("this Client is closed")
            if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
                self._pid, self._ready = os.getpid(), threading.Event()
                self._thread = threading.Thread(target=self._listen, name="coditect-waits", daemon=True)
                self._thread.start()
            event = threading.Event()
            self._waiting.setdefault(run_id, set()).add(event)
        self._ready.wait(seconds)
        return run_id, event

    def pause(self, ticket: tuple[str, threading.Event], seconds: float) -> None:
        ticket[1].wait(max(seconds, 0.0))
        ticket[1].clear()

    def release(self, ticket: tuple[str, threading.Event]) -> None:
        run_id, event = ticket
        with self._lock:
            waiting = self._waiting.get(run_id, set())
            waiting.discard(event)
            if not waiting:
                self._waiting.pop(run_id, None)

    def _listen(self) -> None:
        while not self._closed.is_set():
            pubsub = self._client.pubsub()  # type: ignore[no-untyped-call]
            try:
                pubsub.psubscribe(keys.RUN_CHANNELS)
                while not self._closed.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    if message["type"] == "psubscribe":
                        self._ready.set()
                    elif message["type"] == "pmessage":
                        self._wake(keys.channel_run(str(message["channel"])))
            except redis.RedisError as exc:
                self._ready.clear()
                with self._lock:
                    if not self._waiting:  # nobody waits: end here; the next wait starts a listener again
                        return
                log.warning("the runs' end subscription dropped (%s); subscribing again", exc)
                self._closed.wait(0.5)
            finally:
                with contextlib.suppress(Exception):
                    pubsub.close()

    def _wake(self, run_id: str) -> None:
        with self._lock:
            for event in self._waiting.get(run_id, ()):
                event.set()

    def close(self) -> None:
        self._closed.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)


_LOCK = threading.RLock()
_DEFAULT: tuple[int, Client] | None = None


def default_client() -> Client:
    """This process's client from the ``CODITECT_*`` settings, built on first use (again in a fork)."""
    global _DEFAULT
    with _LOCK:
        if _DEFAULT is None or _DEFAULT[0] != os.getpid():
            _DEFAULT = (os.getpid(), Client())
        return _DEFAULT[1]


def submit(
    dag: Dag,
    app: CoditectApp | None = None,
    *,
    idempotency_key: str | None = None,
    priority: int | None = None,
    fairness_key: str | None = None,
) -> DagRun:
    """Submit ``dag`` through this process's client (``app``: through that app's client instead)."""
    client = default_client() if app is None else Client.of(app)
    return client.submit(dag, idempotency_key=idempotency_key, priority=priority, fairness_key=fairness_key)
