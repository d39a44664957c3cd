"""Agent discovery: which workers are alive and which agents they serve.

Each worker writes ``coditect:worker:<hostname>`` with a TTL and renews it every
``BEAT_INTERVAL`` seconds from a consumer bootstep. Liveness is the key's
existence, judged by the Redis server's clock alone, so a SIGKILLed worker
vanishes within ``TTL`` seconds with no cleanup and no clock skew between hosts.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import redis
from celery import bootsteps, signals

from . import keys
from .broker import redis_client

#: Seconds a registration lives without a heartbeat.
TTL = 6
#: Seconds between heartbeats; three beats fit in one TTL.
BEAT_INTERVAL = 2.0
#: Seconds between looks for node attempts whose lease expired (see resilience/lease.py).
REAP_INTERVAL = 1.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerInfo:
    """One live worker pool as it describes itself."""

    hostname: str
    pid: int
    agents: tuple[str, ...]
    concurrency: int
    started_at: float
    last_seen: float = 0.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["agents"] = list(self.agents)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorkerInfo:
        return cls(
            hostname=str(data["hostname"]),
            pid=int(data["pid"]),
            agents=tuple(data["agents"]),
            concurrency=int(data["concurrency"]),
            started_at=float(data["started_at"]),
            last_seen=float(data.get("last_seen", 0.0)),
        )


class Registry:
    """Read and write worker registrations in the state Redis."""

    def __init__(self, client: redis.Redis, ttl: int = TTL) -> None:
        self.client = client
        self.ttl = ttl

    @classmethod
    def from_url(cls, url: str) -> Registry:
        return cls(redis_client(url))

    def beat(self, info: WorkerInfo) -> None:
        """Announce or renew ``info`` for another ``ttl`` seconds."""
        value = json.dumps({**info.to_json(), "last_seen": time.time()})
        with self.client.pipeline(transaction=True) as pipe:
            pipe.set(keys.worker(info.hostname), value, ex=self.ttl)
            pipe.sadd(keys.WORKERS, info.hostname)
            pipe.execute()

    def withdraw(self, hostname: str) -> None:
        with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(keys.worker(hostname))
            pipe.srem(keys.WORKERS, hostname)
            pipe.execute()

    def workers(self) -> list[WorkerInfo]:
        """Live workers, sorted by hostname; forgets those whose key expired."""
        hostnames = sorted(str(h) for h in self.client.smembers(keys.WORKERS))
        if not hostnames:
            return []
        values = self.client.mget([keys.worker(h) for h in hostnames])
        gone = [h for h, v in zip(hostnames, values, strict=True) if v is None]
        if gone:
            self.client.srem(keys.WORKERS, *gone)
        return [WorkerInfo.from_json(json.loads(v)) for v in values if v is not None]

    def by_agent(self, agents: Iterable[str] = ()) -> dict[str, list[WorkerInfo]]:
        """Live workers per agent name, including agents only remote workers serve."""
        table: dict[str, list[WorkerInfo]] = {name: [] for name in agents}
        for info in self.workers():
            for name in info.agents:
                table.setdefault(name, []).append(info)
        return dict(sorted(table.items()))


class Heartbeat(bootsteps.StartStopStep):  # type: ignore[misc]  # celery is untyped
    """Consumer bootstep: register once consuming has started, renew, withdraw on stop.

    It starts after the ``Tasks`` step, so "registered" means "taking work". The
    same thread is every worker's reaper: it requeues node attempts whose lease
    expired, so a dead worker's work runs again within seconds.
    """

    requires: ClassVar[set[str]] = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._registry: Registry | None = None
        self._info: WorkerInfo | None = None
        self._app: Any = None

    def start(self, parent: Any) -> None:
        app = parent.app
        agents = tuple(
            sorted(
                name.removeprefix(keys.AGENT_QUEUE_PREFIX)
                for name in app.amqp.queues.consume_from
                if name.startswith(keys.AGENT_QUEUE_PREFIX)
            )
        )
        self._info = WorkerInfo(
            hostname=parent.hostname,
            pid=os.getpid(),
            agents=agents,
            concurrency=int(parent.controller.concurrency or 1),
            started_at=time.time(),
        )
        self._registry = Registry.from_url(app.settings.state_url)
        self._app = app
        self._stop.clear()
        self._forget_reservations()
        self._beat()
        self._thread = threading.Thread(target=self._run, name="coditect-heartbeat", daemon=True)
        self._thread.start()
        signals.task_received.connect(self._on_received, weak=False, dispatch_uid=f"coditect-{id(self)}")

    def _run(self) -> None:
        ticks = 0
        while not self._stop.wait(REAP_INTERVAL):
            ticks += 1
            if ticks * REAP_INTERVAL >= BEAT_INTERVAL:
                ticks = 0
                self._beat()
            self._reap()

    def _reap(self) -> None:
        from .dag.engine import engine_for

        try:
            engine = engine_for(self._app)
            for member in engine.reap():
                log.warning("requeued %s: its lease expired", member)
            if reclaimed := engine.reclaim_lost(grace=TTL):
                log.warning("requeued %d node(s) whose message died with its worker", reclaimed)
        except redis.RedisError as exc:
            log.warning("reaping expired leases failed: %s", exc)

    def _forget_reservations(self) -> None:
        """Start with no noted messages: after a lost broker connection Celery drops the
        ones it held but had not begun, so our notes would vouch for messages nobody
        holds, and the queued-node check (reap.lua) would wait on them forever."""
        assert self._registry is not None and self._info is not None
        try:
            with self._registry.client.pipeline(transaction=True) as pipe:
                pipe.delete(keys.reserved(self._info.hostname))
                pipe.zrem(keys.RESERVERS, self._info.hostname)
                pipe.execute()
        except redis.RedisError as exc:
            log.warning("could not clear the noted messages: %s", exc)

    def _on_received(self, sender: Any = None, request: Any = None, **kwargs: Any) -> None:
        """A node message reached this worker: note it until the node begins."""
        from .dag.engine import engine_for

        body = request.kwargs if request is not None else {}
        if body.get("run_id") and body.get("node_id") and body.get("member") is None and self._info:
            try:
                engine_for(self._app).reserve(body["run_id"], body["node_id"], self._info.hostname)
            except redis.RedisError as exc:
                log.warning("could not note a received node: %s", exc)

    def _beat(self) -> None:
        assert self._registry is not None and self._info is not None
        try:
            self._registry.beat(self._info)
        except redis.RedisError as exc:
            log.warning("heartbeat to the state Redis failed: %s", exc)

    def stop(self, parent: Any) -> None:
        signals.task_received.disconnect(dispatch_uid=f"coditect-{id(self)}")
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=BEAT_INTERVAL + 1)
            self._thread = None
        if self._registry is not None and self._info is not None:
            try:
                self._registry.withdraw(self._info.hostname)
            except redis.RedisError as exc:
                log.warning("could not withdraw the registration: %s", exc)

    def shutdown(self, parent: Any) -> None:
        self.stop(parent)
