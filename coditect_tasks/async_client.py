"""``AsyncClient``: the asyncio sibling of ``Client``, on ``redis.asyncio``.

Every call that touches Redis is awaited on the caller's event loop. Waiting holds no thread and
no connection per run: one pub/sub connection per client listens to every run's "done"
announcement (a pattern subscription), and each ``wait`` is a future it resolves, so a thousand
runs awaited at once cost one connection and return as their own runs end. History database
reads (runs whose live state has been retired, listings) run in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import redis
import redis.asyncio as aioredis
import tenacity

from . import keys
from .broker import MAX_CONNECTIONS, POOL_WAIT_SECONDS, outlast_outages
from .dag.engine import OUTAGE_SECONDS, SCRIPTS, now
from .dag.events import Event, follow_async
from .dag.run import idempotency, live_document, needs_registry, outcome, prepare_run, queue_live_reads, stall_warnings
from .dag.spec import Dag
from .dag.submission import MISSING, RunWrite
from .errors import EvictingRedisError, RunNotFoundError
from .observability import tracing
from .settings import Settings, safe_url
from .status import TERMINAL, public

#: Seconds between a waiting run's state checks, in case its announcement was missed.
RECHECK_SECONDS = 5.0

log = logging.getLogger(__name__)


class AsyncClient:
    """Submit DAGs and read, wait for, cancel and follow runs from coroutines; ``aclose()`` or ``async with``.

    Share one per process (or event loop): its connection pool is bounded, and its waits share one
    subscription.
    """

    def __init__(self, settings: Settings | None = None) -> None:
        from .app import create_app
        from .embedded import attach

        self.settings = settings or attach(Settings.from_env())
        self.app = create_app(self.settings)
        pool = aioredis.BlockingConnectionPool.from_url(
            self.settings.state_url,
            max_connections=MAX_CONNECTIONS,
            timeout=POOL_WAIT_SECONDS,
            socket_connect_timeout=self.settings.connect_timeout,
            health_check_interval=30,
            decode_responses=True,
        )
        self.redis = aioredis.Redis(connection_pool=pool)
        self._scripts = {name: self.redis.register_script(SCRIPTS[name]) for name in ("submit", "roots", "cancel")}
        self._waits = _Waits(self.redis)
        self._store: Any = None
        self._no_eviction_checked = False

    async def submit(self, dag: Dag, *, idempotency_key: str | None = None) -> AsyncRun:
        """As ``Client.submit``: validate and start ``dag``, at most once per ``idempotency_key``."""
        idem = idempotency(dag, self.settings, idempotency_key)
        if idem is not None and (held := idem.holder(await self.redis.get(idem.redis_key))):
            return AsyncRun(held, self)
        live = list(await self._live_agents()) if needs_registry(dag, self.app) else []
        tracing.setup_tracing("coditect-producer")
        with tracing.run_span(dag.name, len(dag.nodes)) as span:
            return AsyncRun(await self._write(prepare_run(dag, self.app, live, span, idem=idem)), self)

    async def get(self, run_id: str) -> AsyncRun:
        """The handle of run ``run_id``; ``RunNotFoundError`` if neither Redis nor the history knows it."""
        run = AsyncRun(run_id, self)
        await run.state()
        return run

    async def runs(self, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """As ``Client.runs``, in a worker thread: the listing reads the history database too (over
        the process's shared sync pool, ``engine_for``)."""
        from .client import list_runs
        from .dag.engine import engine_for

        engine = engine_for(self.settings.state_url)
        return await asyncio.to_thread(list_runs, self.app, engine, status, limit)

    async def aclose(self) -> None:
        """Stop the waits' subscription and give back every connection."""
        await self._waits.close()
        await self.redis.connection_pool.disconnect()
        if self._store is not None:
            self._store.close()
        self.app.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def store(self) -> Any:
        if self._store is None:
            from .history.store import HistoryStore

            self._store = HistoryStore.from_settings(self.settings)
        return self._store

    async def _live_agents(self) -> dict[str, list[str]]:
        """Agent → hostnames of its live workers (the registry, as ``Registry.by_agent`` reads it)."""
        hostnames = sorted(str(h) for h in await self.redis.smembers(keys.WORKERS))
        values = await self.redis.mget([keys.worker(h) for h in hostnames]) if hostnames else []
        table: dict[str, list[str]] = {}
        for host, value in zip(hostnames, values, strict=True):
            for name in json.loads(value)["agents"] if value else ():
                table.setdefault(name, []).append(host)
        return table

    async def _write(self, write: RunWrite) -> str:
        """``Engine.submit`` on the event loop: the same MULTI/EXEC, outages outlasted the same way."""
        if not self._no_eviction_checked:
            policy = str((await self.redis.info("memory")).get("maxmemory_policy", "noeviction"))
            if policy != "noeviction":
                raise EvictingRedisError(safe_url(self.settings.state_url), policy)
            self._no_eviction_checked = True
        p = keys.run_prefix(write.run_id)
        script, number = self._scripts["submit"], 0
        async for attempt in outlast_outages(OUTAGE_SECONDS, tenacity.AsyncRetrying):
            with attempt:
                number += 1
                status = await self.redis.hget(p + "run", "status") if number > 1 else None
                if status == "submitting":  # an earlier try wrote the run, its script never ran
                    reply = await script(args=write.script_args())
                elif status is not None:
                    break  # an earlier try got through
                else:
                    async with self.redis.pipeline(transaction=True) as pipe:
                        write.queue(pipe, script.sha)
                        reply = write.script_reply(await pipe.execute(raise_on_error=False))
                    if reply is MISSING:  # a Redis without the script: the writes are in, it runs alone
                        reply = await script(args=write.script_args())
                held = write.started(reply)
                if held != write.run_id:
                    return held
        try:
            while write.later and int(await self._scripts["roots"](args=[write.run_id, now()])) > 0:
                pass  # one slice per call, as Engine.submit queues them
        except redis.RedisError as exc:  # the run exists: the reaper queues the rest
            log.warning("run %s: the reaper will queue the rest of its roots (%s)", write.run_id, exc)
        return write.run_id


class AsyncRun:
    """A handle on one run for coroutines: ``DagRun``'s state, status, wait, result, cancel and
    events, each awaitable (``Client`` has the rest: retry, progress, definition)."""

    def __init__(self, run_id: str, client: AsyncClient) -> None:
        self.id = run_id
        self._client = client

    def __repr__(self) -> str:
        return f"<AsyncRun {self.id}>"

    async def state(self) -> str:
        """The run's status alone (cheap): running, succeeded, failed or cancelled."""
        status = await self._client.redis.hget(keys.run_prefix(self.id) + "run", "status")
        return public(str(status)) if status is not None else str((await self.status())["status"])

    async def status(self) -> dict[str, Any]:
        """The full run document, as ``DagRun.status`` gives it."""
        async with self._client.redis.pipeline(transaction=False) as pipe:
            live = live_document(self.id, await queue_live_reads(pipe, self.id).execute())
        if live is not None:
            if live["status"] not in TERMINAL:
                stall_warnings(live, await self._client._live_agents())
            return live
        found: dict[str, Any] | None = await asyncio.to_thread(self._client.store.run, self.id)
        if found is None:
            raise RunNotFoundError(self.id)
        return found

    async def wait(self, timeout: float | None = None) -> str:
        """Until the run is terminal or ``timeout`` seconds pass; return its state. Holds no thread."""
        return await self._client._waits.wait(self, timeout)

    async def result(self, timeout: float | None = None) -> dict[str, Any]:
        """As ``DagRun.result``: the results, ``RunFailedError`` or ``RunTimeoutError``."""
        return outcome(self.id, await self.wait(timeout), await self.status(), timeout)

    async def cancel(self) -> bool:
        """Stop starting nodes; the run ends ``cancelled``. False if it was over already. (Its queued
        messages are dropped by the workers when they reach them: the run is not running.)"""
        reply = await self._client._scripts["cancel"](args=[self.id, now()])
        return int(reply[0]) == 1

    def events(self, after: str | None = None) -> AsyncIterator[Event]:
        """``async for`` the run's transitions (those so far first, or after id ``after``), ending
        with its terminal event."""
        return follow_async(self._client.redis, self._client.store, self.id, after)


class _Waits:
    """One pattern subscription to every run's "done" channel, waking the futures of its waits."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._futures: dict[str, set[asyncio.Future[None]]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[None] | None = None
        self._closed = False
        self._prefix, _, self._suffix = keys.run_channel("*").partition("*")

    async def wait(self, run: AsyncRun, timeout: float | None) -> str:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout

        def left() -> float:
            return RECHECK_SECONDS if deadline is None else min(RECHECK_SECONDS, deadline - loop.time())

        while True:
            # subscribed before the state is read, so no announcement slips by; a subscription that
            # cannot be had in time leaves the recheck to find the end
            with contextlib.suppress(TimeoutError, ConnectionError, redis.RedisError):
                await asyncio.wait_for(self._listening(), max(left(), 0.001))
            future: asyncio.Future[None] = loop.create_future()
            self._futures.setdefault(run.id, set()).add(future)
            try:
                state = await run.state()
                if state in TERMINAL or left() <= 0:
                    return state
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(future, left())
            finally:
                waiting = self._futures.get(run.id, set())
                waiting.discard(future)
                if not waiting:
                    self._futures.pop(run.id, None)

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
            await pubsub.psubscribe(self._prefix + "*" + self._suffix)
            async for message in pubsub.listen():
                if message["type"] == "psubscribe" and not ready.done():
                    ready.set_result(None)
                elif message["type"] == "pmessage":
                    self._wake(str(message["channel"])[len(self._prefix) : -len(self._suffix)])
        except Exception as exc:  # a dropped connection: the next wait subscribes again
            log.warning("the runs' end subscription dropped (%s); waits subscribe again", exc)
        finally:
            if not ready.done():
                ready.set_exception(ConnectionError("the runs' end subscription ended"))
            with contextlib.suppress(Exception):
                await asyncio.shield(pubsub.aclose())  # type: ignore[no-untyped-call]

    def _wake(self, run_id: str) -> None:
        for future in self._futures.pop(run_id, ()):
            if not future.done():
                future.set_result(None)

    async def close(self) -> None:
        """End the subscription; waits still pending raise ``RuntimeError`` (the client is closed)."""
        self._closed = True
        for run_id in list(self._futures):
            self._wake(run_id)
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
            self._listener = None
