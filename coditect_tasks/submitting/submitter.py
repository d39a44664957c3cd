"""Submitting a run, with no I/O: validate, resolve its limits and order, write it in one transaction.

Steps, as the rest of the client's behaviour (``core.py``): the sync and asyncio transports run them.
"""

from __future__ import annotations

import itertools
import json
import logging
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from redis import RedisError

from .. import keys
from ..agents import VERSION_MARK, Agent, base_name
from ..connection import barrier, check_noeviction, slot_memory
from ..dag.critical import ranks
from ..dag.plan import Plan, validate
from ..dag.spec import Dag
from ..engine.message import message_template, template_key
from ..engine.submission import MISSING, Idempotency, Ordering, RunWrite, prepare
from ..engine.transitions import now
from ..errors import PlacementError, ReplicationError
from ..observability import tracing
from ..registry import live_workers
from ..settings import Settings
from ..status import RunStatus
from ..steps import Ask, Outlast, Steps, ask
from .limits import LimitBook
from .ordering import Medians, check_ordering
from .ramps import RampBook, routes

log = logging.getLogger(__name__)


class Submitter:
    """The submit of one client over one app: the limits and medians it caches, and whether it
    has checked Redis's eviction policy yet."""

    def __init__(self, app: Any, outage_seconds: float) -> None:
        self.app = app
        self.settings: Settings = app.settings
        self.outage_seconds = outage_seconds
        self._no_eviction_checked = False
        self.limits = LimitBook(app.agents)
        self.medians = Medians(self.settings.cells)
        self.ramps = RampBook()
        self._turns = itertools.count(secrets.randbelow(self.settings.cells))  # the cells new runs go to

    def submit(
        self,
        dag: Dag,
        key: object = None,
        reused: dict[str, str] | None = None,
        parent: str = "",
        priority: int | None = None,
        fairness_key: str | None = None,
        origin: dict[str, str] | None = None,
        versions: Mapping[str, str] | None = None,
    ) -> Steps[str]:
        """Validate ``dag`` and start it (``DagError``: nothing enqueued); the id of the run that
        holds the submission (an earlier run of the same idempotency key, or the new one).
        ``priority`` (0–9) applies to its nodes without their own; ``fairness_key`` (a tenant, a
        user) is served round robin with the other keys of the same priority; ``origin`` (a
        scheduled run's ``schedule`` and ``fire_time``) goes into its run hash and history;
        ``versions``: the pins a retried run keeps (exactly those); without, the ramps draw them."""
        check_ordering(priority, fairness_key)
        idem = self.idempotency(dag, key)
        for cell in self.key_cells(idem):  # a failover or a restart is waited out here too, as the write is
            assert idem is not None
            there = replace(idem, cell=cell)
            if held := there.holder((yield Outlast(_reading(there.redis_key), self.outage_seconds))):
                # a repeat after a ReplicationError checks again (the key, written with the run, outlives it)
                yield from self._replicated(held, there.redis_key)
                return held
        run_id = keys.new_run_id()
        # a key's submits draw the same pins, so hold the same limits and meet in one cell's check
        pins = yield from self.ramps.pins(run_id if idem is None else idem.draw, versions)
        routing = routes(pins)
        workers = list((yield from live_workers())) if self.needs_registry(dag, routing) else []
        live = {name for worker in workers for name in worker["agents"]}
        limits = yield from self.limits.holds(dag, workers, routing)
        run_id = keys.run_id_in(run_id, cell := self.place(limits, idem))
        idem = replace(idem, cell=cell) if idem is not None else None
        seconds = (yield from self.medians.read()) if self.settings.critical_path and len(dag.nodes) > 1 else {}
        tracing.setup_tracing("coditect-producer")
        with tracing.run_span(dag.name, len(dag.nodes)) as span:
            ordering = (priority, fairness_key or "", seconds)
            run = Lineage(run_id, parent, pins, origin or {})
            write = self.prepare(dag, live, span, run, reused, idem, limits, ordering)
            return (yield from self.write(write))

    def children(
        self, dags: Iterable[Dag], priority: int | None, fairness_key: str, versions: Mapping[str, str], cell: int = 0
    ) -> Steps[list[RunWrite]]:
        """The writes of child runs a node spawns (the spawn script writes them, with the end of its
        attempt): validated and planned as a submit's (``DagError``: nothing is written); they keep
        the spawning run's ``versions`` and go in its ``cell`` (``PlacementError`` for a child that
        holds a limit outside cell 0, where limits are held)."""
        dags = list(dags)
        routing = routes(versions)
        workers = list((yield from live_workers())) if any(self.needs_registry(d, routing) for d in dags) else []
        live = {name for worker in workers for name in worker["agents"]}
        writes = []
        for dag in dags:
            run_id = keys.new_run_id(cell)
            pins = yield from self.ramps.pins(run_id, versions)
            limits = yield from self.limits.holds(dag, workers, routes(pins))
            if limits and cell:
                raise PlacementError(dag.name, sorted({h[0] for held in limits.values() for h in held}), cell)
            seconds = (yield from self.medians.read()) if self.settings.critical_path and len(dag.nodes) > 1 else {}
            with tracing.run_span(dag.name, len(dag.nodes)) as span:
                run = Lineage(run_id, pins=pins)
                writes.append(
                    self.prepare(dag, live, span, run, held=limits, ordering=(priority, fairness_key, seconds))
                )
        return writes

    def check(self, dag: Dag) -> Steps[None]:
        """What a submit of ``dag`` validates now (``DagError``, ``UnknownAgentError``), writing nothing."""
        workers = list((yield from live_workers())) if self.needs_registry(dag, {}) else []
        live = {name for worker in workers for name in worker["agents"]}
        self._plan(dag, live)

    def _plan(self, dag: Dag, live: Iterable[str]) -> Plan:
        """``dag`` validated and planned against the agents the app declares and ``live`` ones
        (by name: any version of an agent serves its nodes)."""
        known = {base_name(key) for key in (*self.app.agents, *live)}
        return validate(dag, known, **self.settings.dag_limits())

    def key_cells(self, idem: Idempotency | None) -> list[int]:
        """The cells a run of ``idem``'s key may be in (``place``): none without a key."""
        if idem is None:
            return []
        cells = self.settings.cells
        return [0] if cells == 1 else list(dict.fromkeys((idem.cell_for(cells), 0)))

    def place(self, held: Mapping[str, Any], idem: Idempotency | None) -> int:
        """The cell of a new run: cell 0 if it ``held`` a limit (a limit holds across every run that
        can take it: all of them are in cell 0), else its key's cell, else the next in turn (each
        client starts its turns at a cell of its own), so that the cells fill evenly."""
        cells = self.settings.cells
        if cells == 1 or held:
            return 0
        return idem.cell_for(cells) if idem is not None else next(self._turns) % cells

    def idempotency(self, dag: Dag, key: object) -> Idempotency | None:
        """The submit's idempotency (``InvalidIdempotencyKeyError`` for a bad key), None without a key."""
        return None if key is None else Idempotency.of(key, dag.to_json(), self.settings.idempotency_retention)

    def needs_registry(self, dag: Dag, routing: Mapping[str, str]) -> bool:
        """Whether ``dag`` names an agent (at the version ``routing`` pins it to) the app does not
        declare: only a remote worker's registration tells its limits."""
        agents = self.app.agents
        named = (
            name
            for node in dag.nodes.values()
            if node.wait is None
            for name in (routing.get(node.agent, node.agent), node.fallback)
        )
        return any(name not in agents for name in named if name)

    def prepare(
        self,
        dag: Dag,
        live: Iterable[str],
        span: Any,
        run: Lineage,
        reused: dict[str, str] | None = None,
        idem: Idempotency | None = None,
        held: dict[str, list[list[Any]]] | None = None,
        ordering: tuple[int | None, str, dict[str, float]] = (None, "", {}),
    ) -> RunWrite:
        """Validate and plan ``dag`` against the agents the app declares and ``live`` ones, and
        build its run's writes under the run's root ``span``, its nodes routed to their pinned versions."""
        app, settings = self.app, self.settings
        plan = self._plan(dag, live)
        run_id, routing = run.run_id, routes(run.pins)
        span.set_attribute("coditect.run_id", run_id)
        trace = tracing.traceparent(span)
        templates: dict[str, str] = {}
        node_templates: dict[str, str] = {}
        for node in dag.nodes.values():
            if node.wait is not None:
                continue  # it calls no agent: no message
            key = routing.get(node.agent, node.agent)
            spec = app.agents.get(key)
            fallback = node.fallback or (spec.fallback if spec else None)
            for name in (key, fallback):
                if name is not None and template_key(name, node.timeout) not in templates:
                    known = app.agents.get(name) or remote(name, app.agents)
                    template = message_template(app, known, node.timeout, traced=bool(trace))
                    templates[template_key(name, node.timeout)] = template
            node_templates[node.id] = template_key(key, node.timeout)
        fields = {"trace": trace, "parent": run.parent, **({"outbox": 1} if settings.outbox else {}), **run.origin}
        if run.pins:
            fields["versions"] = json.dumps(run.pins, sort_keys=True)
        priority, fairness_key, seconds = ordering
        placed = Ordering(
            keys.DEFAULT_PRIORITY if priority is None else priority,
            fairness_key,
            ranks(plan, seconds, settings.critical_path),
        )
        return prepare(run_id, plan, templates, node_templates, now(), fields, reused, idem, held, placed, routing)

    def write(self, write: RunWrite) -> Steps[str]:
        """Write the whole run and enqueue its roots in one MULTI/EXEC: all or nothing; the run that
        holds the submission. Roots past the first ``ROOT_SLICE`` are queued after it, a slice per
        script call (the reaper goes on with them if this process stops)."""
        if not self._no_eviction_checked:  # once per client: run state must never be evicted
            check_noeviction((yield Ask(lambda t: slot_memory(t.redis))), self.settings.state_url)
            self._no_eviction_checked = True
        held = yield Outlast(lambda number: self._write_once(write, number), self.outage_seconds)
        if held != write.run_id:  # an earlier run holds the idempotency key (written with that run)
            assert write.idempotency is not None  # only a held key names another run
            yield from self._replicated(str(held), write.idempotency.redis_key)
            return str(held)
        if write.later:
            cell = keys.cell_of(write.run_id)
            roots = Outlast(
                lambda _: ask(lambda t: t.scripts["roots"](args=[write.run_id, now()], cell=cell)),
                self.outage_seconds,
            )
            try:
                while int((yield roots)) > 0:
                    pass  # one slice per call: other clients reach Redis in between
            except RedisError as exc:  # the run exists: the reaper queues the rest
                log.warning("run %s: the reaper will queue the rest of its roots (%s)", write.run_id, exc)
        yield from self._replicated(write.run_id, keys.run_prefix(write.run_id) + "run")
        return write.run_id

    def _replicated(self, run_id: str, written: str) -> Steps[None]:
        """Acknowledge run ``run_id`` only once ``min_replicas`` replicas have it, on the primary
        that has it: the barrier checks that key ``written`` (its run hash, or its idempotency key)
        is there, so a failover between the write and the wait (the wait reaching a new primary
        that never got the run) is not taken for success."""
        if not (needed := self.settings.min_replicas):
            return
        _, acked, present = yield Ask(lambda t: barrier(t.redis, needed, written, keys.cell_of(run_id)))
        if not present:
            raise ReplicationError(run_id, 0, needed, keys.REPLICA_WAIT_SECONDS, lost=True)
        if int(acked) < needed:
            raise ReplicationError(run_id, int(acked), needed, keys.REPLICA_WAIT_SECONDS)

    def _write_once(self, write: RunWrite, number: int) -> Steps[str]:
        """One try of the submit transaction; a repeat first reads what an earlier try left."""
        status = (
            (yield Ask(lambda t: t.redis.hget(keys.run_prefix(write.run_id) + "run", "status"))) if number else None
        )
        cell = keys.cell_of(write.run_id)
        if status == RunStatus.SUBMITTING:  # an earlier try wrote the run, its script never ran
            reply = yield Ask(lambda t: t.scripts["submit"](args=write.script_args(), cell=cell))
        elif status is not None:
            return write.run_id  # an earlier try got through
        else:
            replies = yield Ask(lambda t: _transaction(t, write))
            reply = write.script_reply(replies)
            if reply is MISSING:  # a Redis without the script: the writes are in, it runs alone
                reply = yield Ask(lambda t: t.scripts["submit"](args=write.script_args(), cell=cell))
        return write.started(reply)


@dataclass(frozen=True)
class Lineage:
    """Who a run is: its id, the run it retries (``parent``), the versions it is pinned to (agent →
    version, ``""`` unversioned), and where it came from (a schedule's ``schedule`` and ``fire_time``)."""

    run_id: str
    parent: str = ""
    pins: Mapping[str, str] = field(default_factory=dict)
    origin: Mapping[str, str] = field(default_factory=dict)


def _reading(key: str) -> Callable[[int], Steps[Any]]:
    """Steps that read string ``key``, for ``Outlast``."""
    return lambda _: ask(lambda t: t.redis.get(key))


def remote(key: str, declared: Mapping[str, Agent]) -> Agent:
    """An agent at a version only remote workers declare: the unversioned declaration's time
    limits if this app has one (a new version of the same agent), else the defaults."""
    name, _, version = key.partition(VERSION_MARK)
    if name in declared:
        return replace(declared[name], version=version or None)
    return Agent(name=name, fn=lambda call: None, version=version or None)


def _transaction(transport: Any, write: RunWrite) -> Any:
    """The submit's MULTI/EXEC on ``transport``'s Redis, run with ``raise_on_error=False``."""
    pipe = transport.redis.pipeline(transaction=True)
    write.queue(pipe, transport.scripts["submit"].sha)
    return pipe.execute(raise_on_error=False)
