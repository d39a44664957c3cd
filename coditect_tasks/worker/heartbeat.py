"""The worker's heartbeat: announce the worker in the registry, and reap expired leases.

It also declares the worker's agents' limits to the engine, runs the pacer (``pacer.py``), and
sets each queue's hand-off window from the slots of its live workers (``keys.WINDOWS``).

A consumer bootstep, so "registered" means "consuming". A thread of its own beside the beats is
every worker's reaper: it requeues node attempts whose lease expired, and nodes whose message a
dead worker had received but not begun, so a dead worker's work runs again within seconds.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, ClassVar

import redis
from celery import bootsteps, signals

from .. import keys
from ..engine.transitions import Engine, engine_for
from ..registry import BEAT_INTERVAL, TTL, Registry, WorkerInfo
from . import health, shutdown
from .outbox import Drainer
from .pacer import Pacer
from .reservations import Reservations

#: Seconds between looks for node attempts whose lease expired (see resilience/lease.py).
REAP_INTERVAL = 1.0

log = logging.getLogger(__name__)


def window(slots: int) -> int:
    """An agent's hand-off window for ``slots`` live worker processes: half of them (at least one).
    Each take refills the queue in the same script, so a short queue never runs dry while nodes
    wait; what it holds, plus what the processes have prefetched (one each), is all an urgent node
    can wait behind: at most 1.5 × the slots."""
    return max(1, -(-slots // 2))


class Heartbeat(bootsteps.StartStopStep):  # type: ignore[misc]  # celery is untyped
    """Consumer bootstep: register once consuming has started, renew, withdraw on stop.

    It starts after the ``Tasks`` step, so "registered" means "taking work". Its reaper thread
    requeues node attempts whose lease expired, so a dead worker's work runs again within seconds.
    """

    requires: ClassVar[set[str]] = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reaper: threading.Thread | None = None
        self._registry: Registry | None = None
        self._info: WorkerInfo | None = None
        self._app: Any = None
        self._quiet_until = 0.0
        self._reservations: Reservations | None = None
        self._drainers: dict[int, Drainer] = {}  # cell → its outbox's drainer
        self._pacer: Pacer | None = None

    def start(self, parent: Any) -> None:
        app = parent.app
        agents = tuple(
            sorted(
                name.removeprefix(keys.AGENT_QUEUE_PREFIX)
                for name in app.amqp.queues.consume_from
                if name.startswith(keys.AGENT_QUEUE_PREFIX)
            )
        )
        declared = {name: app.agents[name] for name in agents if name in app.agents}
        self._info = WorkerInfo(
            hostname=parent.hostname,
            pid=os.getpid(),
            agents=agents,
            concurrency=int(parent.controller.concurrency or 1),
            started_at=time.time(),
            limits={name: [limit.name for limit in agent.limits] for name, agent in declared.items() if agent.limits},
        )
        self._registry = Registry.from_url(app.settings.state_url)
        self._app = app
        self._stop.clear()
        shared = engine_for(app.settings.state_url, cells=app.settings.cells)
        self._reservations = Reservations(Engine(shared.client, shared.url, outage_seconds=1.0), parent.hostname)
        try:
            self._reservations.forget()
        except redis.RedisError as exc:  # its notes are then refused: the queued-node check covers them
            log.warning("could not clear the noted messages: %s", exc)
        self._reservations.start()
        quick = Engine(shared.client, shared.url, outage_seconds=1.0, cells=shared.cells)
        try:  # before the registration: a client that reads the agent's limit names finds them defined
            for limit in {limit.name: limit for agent in declared.values() for limit in agent.limits}.values():
                quick.declare_limit(limit.name, limit.to_json())
        except redis.RedisError as exc:  # a client submitting to these agents declares them too
            log.warning("could not declare the agents' limits: %s", exc)
        if self._pacer is None or not self._pacer.alive:
            self._pacer = Pacer(quick).start()
        # RabbitMQ: the engine's messages go out through this worker too; one drainer per cell for the
        # worker's life (a consumer restart keeps them), so two never share its held entries
        for cell in range(shared.cells) if app.settings.outbox else ():
            if cell not in self._drainers or not self._drainers[cell].alive:
                self._drainers[cell] = Drainer(app, quick, parent.hostname, cell).start()
        health.BEACON.ready = True  # before the first write, and before the registry says "consuming"
        if app.settings.health_file is not None:
            health.BEACON.start(app.settings.health_file, parent.hostname, shutdown.DRAINING)
        self._beat()
        shutdown.install(app, parent.hostname)
        self._thread = threading.Thread(target=self._run, name="coditect-heartbeat", daemon=True)
        self._thread.start()
        # its own thread: a reap that waits out one cell's failover must not hold the beats up
        self._reaper = threading.Thread(target=self._reap_loop, name="coditect-reaper", daemon=True)
        self._reaper.start()
        if not app.settings.outbox:  # RabbitMQ redelivers what a dead consumer held: no notes needed
            signals.task_received.connect(self._on_received, weak=False, dispatch_uid=f"coditect-{id(self)}")

    def _run(self) -> None:
        while not self._stop.wait(BEAT_INTERVAL):
            self._beat()

    def _reap_loop(self) -> None:
        while not self._stop.wait(REAP_INTERVAL):
            self._reap()

    def _reap(self) -> None:
        try:
            engine = engine_for(self._app.settings.state_url, cells=self._app.settings.cells)
            requeued = engine.reap()
            if requeued is None:
                log.warning("Redis was unreachable for a while: leases get one more length before they are judged")
                self._quiet_until = time.monotonic() + TTL  # registrations lapsed too: wait for their next beat
                return
            for member in requeued:
                if member.startswith("error|"):
                    log.error("reaper could not handle %s", member.removeprefix("error|"))
                else:
                    log.warning("requeued %s: its lease expired or its message was lost", member)
            if time.monotonic() < self._quiet_until:
                return
            if reclaimed := engine.reclaim_lost(grace=TTL):
                log.warning("requeued %d node(s) whose message died with its worker", reclaimed)
        except redis.RedisError as exc:
            log.warning("reaping expired leases failed: %s", exc)

    def _on_received(self, sender: Any = None, request: Any = None, **kwargs: Any) -> None:
        """A node message reached this worker: note it until the node begins."""
        body = request.kwargs if request is not None else {}
        if body.get("run_id") and body.get("node_id") and self._reservations is not None:
            self._reservations.note(body["run_id"], body["node_id"], str(request.id))

    def _beat(self) -> None:
        assert self._registry is not None and self._info is not None
        try:
            self._registry.beat(self._info)
            # a window bounds a broker list Lua can see: through the outbox there is none
            windows = (
                {}
                if self._app.settings.outbox
                else {
                    keys.agent_queue(agent): window(sum(w.concurrency for w in workers))
                    for agent, workers in self._registry.by_agent().items()
                    if workers
                }
            )
            engine_for(self._app.settings.state_url).set_windows(windows)
        except redis.RedisError as exc:
            log.warning("heartbeat to the state Redis failed: %s", exc)

    def stop(self, parent: Any) -> None:
        signals.task_received.disconnect(dispatch_uid=f"coditect-{id(self)}")
        health.BEACON.ready = False  # not consuming any more: unready, still alive
        self._stop.set()
        if self._reservations is not None:
            self._reservations.stop()  # writes what is pending; a late write is refused once the next start forgets
            self._reservations = None
        for thread in (self._thread, self._reaper):
            if thread is not None:
                thread.join(timeout=BEAT_INTERVAL + 1)
        self._thread = self._reaper = None
        if self._registry is not None and self._info is not None:
            try:
                self._registry.withdraw(self._info.hostname)
            except redis.RedisError as exc:
                log.warning("could not withdraw the registration: %s", exc)

    def shutdown(self, parent: Any) -> None:
        self.stop(parent)
        if self._pacer is not None:
            self._pacer.stop()
            self._pacer = None
        for drainer in self._drainers.values():
            drainer.stop(timeout=0)  # all at once: each may be waiting on its outbox
        for drainer in self._drainers.values():
            drainer.stop()  # what it holds unpublished goes back to the outbox once it is gone
        self._drainers = {}
