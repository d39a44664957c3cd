"""``AsyncClient`` and ``AsyncRun``: the asyncio transport of the client core, on ``redis.asyncio``.

Every call that touches Redis is awaited on the caller's event loop; the history database and
Celery's control, which have no asyncio API, run in a worker thread. Waiting holds no thread and
no connection per run: one pub/sub connection per client listens to every run's end
announcement (a pattern subscription), and each ``wait`` is a future it resolves, so a thousand
runs awaited at once cost one connection and return as their own runs end.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import redis.asyncio as aioredis
import tenacity

from .. import keys
from ..app import create_app
from ..connection import MAX_CONNECTIONS, POOL_WAIT_SECONDS, async_redis_client, close_async, outlast_outages
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
from ..steps import STEPS, Ask, Block, Cleanups, Listen, Outlast, Pause, Receive, Step, Steps, Subscribe, advance
from .core import CLIENT_SCRIPTS, Core, History
from .document import outcome, results
from .output import Chunk, node_output
from .schedules import AsyncSchedules

T = TypeVar("T")
log = logging.getLogger(__name__)


class AsyncClient:
    """``Client`` for coroutines: the same operations, each awaitable; ``aclose()`` or ``async with``.

    Share one per process (or event loop): its connection pool is bounded, and its waits share one
    subscription.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        history: History | None = None,
        max_connections: int = MAX_CONNECTIONS,
        pool_timeout: float | None = POOL_WAIT_SECONDS,
    ) -> None:
        """``max_connections``: the pool's bound (each event stream holds one while it runs);
        ``pool_timeout``: seconds a call waits for a free connection (None: as long as it takes)."""
        self.settings = settings or attach(Settings.from_env())
        self.app = create_app(self.settings)
        self.redis = async_redis_client(
            self.settings.state_url, max_connections, pool_timeout, self.settings.connect_timeout
        )
        self.scripts = registered(self.redis, CLIENT_SCRIPTS)
        self._history = history
        self._made_history: HistoryStore | None = None
        self.core = Core(self.app, self.history, OUTAGE_SECONDS)
        self.schedules = AsyncSchedules(self, lambda run_id: AsyncRun(run_id, self))
        self._waits = _Waits(self.redis)

    def history(self) -> History:
        if self._history is None:
            self._history = self._made_history = HistoryStore.from_settings(self.settings)
        return self._history

    async def submit(
        self,
        dag: Dag,
        *,
        idempotency_key: str | None = None,
        priority: int | None = None,
        fairness_key: str | None = None,
    ) -> AsyncRun:
        """As ``Client.submit``: validate and start ``dag``, at most once per ``idempotency_key``."""
        steps = self.core.submitter.submit(dag, idempotency_key, priority=priority, fairness_key=fairness_key)
        return AsyncRun(await self._drive(steps), self)

    async def get(self, run_id: str) -> AsyncRun:
        """The handle of run ``run_id``; ``RunNotFoundError`` if neither Redis nor the history knows it."""
        run = AsyncRun(run_id, self)
        await run.state()
        return run

    async def runs(
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
        """As ``Client.runs``."""
        return await self._drive(self.core.runs(RunQuery(status, name, search, since, until), limit, before))

    async def agents(self) -> dict[str, dict[str, dict[str, Any]]]:
        """As ``Client.agents``, in a worker thread (the broker's queue depths have no asyncio API)."""
        sync = engine_for(self.settings.state_url).client
        return await asyncio.to_thread(agents_document, sync, self.settings, self.app.agents)

    async def send_event(self, name: str, *, key: str = "", data: Any = None) -> int:
        """As ``Client.send_event``."""
        return await self._drive(self.core.send_event(name, key, data))

    async def limits(self, name: str = "") -> list[dict[str, Any]]:
        """As ``Client.limits``."""
        return await self._drive(self.core.submitter.limits.document(name))

    async def set_limit(
        self, name: str, *, concurrency: int | None = None, rate: float | None = None, per: float | None = None
    ) -> dict[str, Any]:
        """As ``Client.set_limit``."""
        return await self._drive(self.core.submitter.limits.set(name, change(name, concurrency, rate, per)))

    async def unset_limit(self, name: str) -> dict[str, Any] | None:
        """As ``Client.unset_limit``."""
        return await self._drive(self.core.submitter.limits.unset(name))

    async def ramp(self, agent: str, *, to: str, percent: float, base: str | None = None) -> dict[str, Any]:
        """``Client.ramp``."""
        return await self._drive(self.core.submitter.ramps.ramp(agent, to, percent, base))

    async def rollback(self, agent: str) -> dict[str, Any]:
        """``Client.rollback``."""
        return await self._drive(self.core.submitter.ramps.rollback(agent))

    async def aclose(self) -> None:
        """Stop the waits' subscription and give back every connection."""
        await self._waits.close()
        await close_async(self.redis)
        if self._made_history is not None:
            self._made_history.close()
        self.app.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- the transport ---

    async def _drive(self, steps: Steps[T]) -> T:
        """Run one operation of the core to its end."""
        result: list[T] = []
        async for _ in self._iterate(steps, result):
            raise AssertionError("an operation that returns a value yielded an event")
        return result[0]

    async def _iterate(self, steps: Any, result: list[Any] | None = None) -> AsyncIterator[Any]:
        """Run an operation, giving out the events it yields; what it returns goes into ``result``."""
        cleanups: Cleanups = []
        reply: Any = None
        error: BaseException | None = None
        try:
            while True:
                going, item = advance(steps, reply, error)
                if not going:
                    if result is not None:
                        result.append(item)
                    return
                reply, error = None, None
                if not isinstance(item, STEPS):
                    yield item
                    continue
                try:
                    reply = await self._perform(item, cleanups)
                except Exception as exc:  # thrown back into the operation, which may handle it
                    error = exc
        finally:
            steps.close()
            if cleanups:  # most operations open nothing: no cancel scope on the hot path
                with anyio.CancelScope(shield=True):  # a caller that went away cancels us: still clean up
                    for cleanup in reversed(cleanups):
                        with contextlib.suppress(Exception):
                            if inspect.isawaitable(done := cleanup()):
                                await done

    async def _perform(self, step: Step, cleanups: Cleanups) -> Any:
        if isinstance(step, Ask):
            reply = step.call(self)
            return await reply if inspect.isawaitable(reply) else reply
        if isinstance(step, Block):
            return await asyncio.to_thread(step.call)
        if isinstance(step, Outlast):
            number = 0
            async for attempt in outlast_outages(step.seconds, tenacity.AsyncRetrying):
                with attempt:
                    number += 1
                    return await self._drive(step.steps(number - 1))
            raise AssertionError("unreachable: tenacity re-raises")
        if isinstance(step, Listen):
            ticket = _Ticket(step.run_id, await self._waits.listen(step.run_id, step.seconds))
            cleanups.append(lambda: self._waits.release(ticket.run_id, ticket.future))
            return ticket
        if isinstance(step, Pause):
            return await self._waits.pause(step.ticket, step.seconds)
        if isinstance(step, Subscribe):
            pubsub = self.redis.pubsub()
            cleanups.append(pubsub.aclose)
            await pubsub.subscribe(step.channel)
            while (message := await pubsub.get_message(timeout=5.0)) is None or message["type"] != "subscribe":
                pass  # from its confirmation on, nothing published there can pass us by
            return pubsub
        if isinstance(step, Receive):
            return await step.subscription.get_message(timeout=step.seconds)
        raise TypeError(f"not a step: {step!r}")


class AsyncRun:
    """A handle on one run for coroutines: ``DagRun``'s methods, each awaitable."""

    def __init__(self, run_id: str, client: AsyncClient) -> None:
        self.id = run_id
        self.client = client

    def __repr__(self) -> str:
        return f"<AsyncRun {self.id}>"

    async def state(self) -> str:
        """The run's status alone (cheap): running, succeeded, failed or cancelled."""
        return await self.client._drive(self.client.core.state(self.id))

    async def status(self) -> dict[str, Any]:
        """The full run document, as ``DagRun.status`` gives it."""
        return await self.client._drive(self.client.core.status(self.id))

    async def wait(self, timeout: float | None = None) -> str:
        """Until the run is terminal or ``timeout`` seconds pass; return its state. Holds no thread."""
        return await self.client._drive(self.client.core.wait(self.id, timeout))

    async def progress(self) -> tuple[int, str]:
        """(nodes in a terminal state, run state), cheaply, for progress bars."""
        return await self.client._drive(self.client.core.progress(self.id))

    async def dispatch_seconds(self) -> float | None:
        """Seconds from submit to the first node running (None if none ran)."""
        return await self.client._drive(self.client.core.dispatch_seconds(self.id))

    async def definition(self) -> dict[str, Any]:
        """The DAG as submitted (JSON form)."""
        return await self.client._drive(self.client.core.definition(self.id))

    async def results(self) -> dict[str, Any]:
        """Results of the nodes that succeeded, by node id."""
        return results(await self.status())

    async def result(self, timeout: float | None = None) -> dict[str, Any]:
        """As ``DagRun.result``: the results, ``RunFailedError`` or ``RunTimeoutError``."""
        return outcome(self.id, await self.wait(timeout), await self.status(), timeout)

    def events(self, after: str | None = None) -> AsyncIterator[Event]:
        """``async for`` the run's transitions (those so far first, or after id ``after``), ending
        with its terminal event."""
        return self.client._iterate(self.client.core.events(self.id, after))

    def stream(self, node: str, after: str | None = None) -> AsyncIterator[Chunk]:
        """``async for`` what ``node`` streams, as ``DagRun.stream``."""
        return self.client._iterate(node_output(self.id, node, after))

    async def terminal_event(self) -> str | None:
        """The id of the run's terminal event, if it has one yet."""
        return await self.client._drive(self.client.core.terminal_event(self.id))

    async def retry(self) -> AsyncRun:
        """As ``DagRun.retry``: a new run that keeps the nodes that succeeded."""
        return AsyncRun(await self.client._drive(self.client.core.retry(self.id)), self.client)

    async def cancel(self) -> bool:
        """Stop starting nodes, revoke queued ones; the run ends ``cancelled``. False if already over."""
        return await self.client._drive(self.client.core.cancel(self.id))

    async def approve(self, node: str, *, by: str, comment: str = "", reject: bool = False) -> dict[str, Any]:
        """As ``DagRun.approve``."""
        return await self.client._drive(self.client.core.approve(self.id, node, by, reject, comment))


@dataclass
class _Ticket:
    """One wait: its run, and the future the run's end announcement resolves."""

    run_id: str
    future: asyncio.Future[None]


class _Waits:
    """One pattern subscription to every run's end channel, waking the futures of its waits."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._futures: dict[str, set[asyncio.Future[None]]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[None] | None = None
        self._closed = False

    async def listen(self, run_id: str, seconds: float) -> asyncio.Future[None]:
        """A future resolved when ``run_id`` ends, made once the subscription is confirmed (or
        ``seconds`` passed: a subscription that cannot be had leaves the rechecks to find the end)."""
        with contextlib.suppress(TimeoutError, ConnectionError, aioredis.RedisError):
            await asyncio.wait_for(self._listening(), seconds)
        return self._arm(run_id)

    async def pause(self, ticket: _Ticket, seconds: float) -> None:
        """Until the ticket's run ends or ``seconds`` pass; then the ticket is armed again (on a
        subscription made again if it had dropped) for the next pause."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(ticket.future), max(seconds, 0.0))
        self.release(ticket.run_id, ticket.future)
        ticket.future = await self.listen(ticket.run_id, max(seconds, 0.001))

    def release(self, run_id: str, future: asyncio.Future[None]) -> None:
        waiting = self._futures.get(run_id, set())
        waiting.discard(future)
        if not waiting:
            self._futures.pop(run_id, None)

    def _arm(self, run_id: str) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._futures.setdefault(run_id, set()).add(future)
        return future

    async def _listening(self) -> None:
        if self._closed:
            raise RuntimeError("this AsyncClient is closed")
        if self._listener is None or self._listener.done():
            ready = self._ready = asyncio.get_running_loop().create_future()
            ready.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved: never "never retrieved"
            self._listener = asyncio.create_task(self._listen(ready), name="coditect-waits")
        assert self._ready is not None
        await asyncio.shield(self._ready)

    async def _listen(self, ready: asyncio.Future[None]) -> None:
        pubsub = self._client.pubsub()
        try:
            await pubsub.psubscribe(keys.RUN_CHANNELS)
            async for message in pubsub.listen():
                if message["type"] == "psubscribe" and not ready.done():
                    ready.set_result(None)
                elif message["type"] == "pmessage":
                    self._wake(keys.channel_run(str(message["channel"])))
        except Exception as exc:  # a dropped connection: the next wait subscribes again
            log.warning("the runs' end subscription dropped (%s); waits subscribe again", exc)
        finally:
            if not ready.done():
                ready.set_exception(ConnectionError("the runs' end subscription ended"))
            with contextlib.suppress(Exception):
                await asyncio.shield(pubsub.aclose())  # type: ignore[no-untyped-call]

    def _wake(self, run_id: str) -> None:
        for future in self._futures.get(run_id, ()):
            if not future.done():
                future.set_result(None)

    async def close(self) -> None:
        """End the subscription; waits still pending wake and find the client closed."""
        self._closed = True
        for run_id in list(self._futures):
            self._wake(run_id)
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
            self._listener = None
