"""``submit`` and the ``DagRun`` handle orchestrator code holds.

Status is read from the live state in Redis and, once that has expired or been
flushed, from the durable history.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from .. import keys
from ..agents import Agent
from ..errors import RunFailedError, RunNotFoundError, RunStateError, RunTimeoutError
from ..observability import tracing
from ..registry import Registry
from ..settings import Settings
from ..status import TERMINAL, NodeStatus, RunStatus, public
from .engine import Engine, engine_for, now
from .events import Event, follow
from .message import message_template, template_key
from .plan import validate
from .spec import Dag
from .submission import Idempotency, RunWrite, prepare

NODE_FIELDS = keys.NODE_FIELDS


class DagRun:
    """A handle on one submitted run: poll it, wait for it, read it, cancel it."""

    def __init__(self, run_id: str, app: Any, engine: Engine | None = None) -> None:
        self.id = run_id
        self.app = app
        self._engine = engine

    @property
    def engine(self) -> Engine:
        """The pool of the client that made this handle, else the process's."""
        return self._engine or engine_for(self.app.settings.state_url)

    def __repr__(self) -> str:
        return f"<DagRun {self.id}>"

    def state(self) -> str:
        """The run's status alone (cheap): running, succeeded, failed or cancelled."""
        status = self.engine.client.hget(keys.run_prefix(self.id) + "run", "status")
        if status is None:
            return str(self.status()["status"])
        return public(str(status))

    def status(self) -> dict[str, Any]:
        """The full run document (see the README's run JSON)."""
        live = read_live(self.engine, self.id)
        if live is not None:
            add_stall_warnings(self.engine, live)
            return live
        from ..history.store import HistoryStore

        found = HistoryStore.from_settings(self.app.settings).run(self.id)
        if found is None:
            raise RunNotFoundError(self.id)
        return found

    def wait(self, timeout: float | None = None) -> str:
        """Block until the run is terminal or ``timeout`` seconds pass; return its state.

        Woken by the run's pub/sub announcement, not by polling; a slow re-check
        every second guards against a missed message.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        pubsub = self.engine.client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        pubsub.subscribe(keys.run_channel(self.id))
        try:
            while True:
                state = self.state()
                if state in TERMINAL:
                    return state
                left = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
                if left <= 0:
                    return state
                pubsub.get_message(timeout=left)
        finally:
            pubsub.close()

    def progress(self) -> tuple[int, str]:
        """(nodes in a terminal state, run state), cheaply, for progress bars."""
        total, remaining, status = self.engine.client.hmget(
            keys.run_prefix(self.id) + "run", "total", "remaining", "status"
        )
        if total is None:
            doc = self.status()
            return len(doc["nodes"]), str(doc["status"])
        state = public(str(status))
        return int(str(total)) - int(str(remaining)), state

    def dispatch_seconds(self) -> float | None:
        """Seconds from submit to the first node running (None if none ran): how long
        the platform took to get the run going, queueing included."""
        p = keys.run_prefix(self.id)
        with self.engine.client.pipeline(transaction=False) as pipe:
            pipe.hget(p + "run", "submitted_at")
            pipe.hvals(p + "started")
            submitted, started = pipe.execute()
        if submitted is None:
            doc = self.status()
            submitted, started = doc["submitted_at"], [n["started_at"] for n in doc["nodes"].values()]
        stamps = [datetime.fromisoformat(s) for s in started if s]
        if not stamps:
            return None
        return (min(stamps) - datetime.fromisoformat(submitted)).total_seconds()

    def definition(self) -> dict[str, Any]:
        """The DAG as submitted (JSON form)."""
        text = self.engine.client.hget(keys.run_prefix(self.id) + "run", "dag")
        if text is None:
            from ..history.store import HistoryStore

            text = HistoryStore.from_settings(self.app.settings).dag(self.id)
            if text is None:
                raise RunNotFoundError(self.id)
        data: dict[str, Any] = json.loads(text)
        return data

    def results(self) -> dict[str, Any]:
        """Results of the nodes that succeeded, by node id."""
        return {nid: n["result"] for nid, n in self.status()["nodes"].items() if n["status"] == NodeStatus.SUCCEEDED}

    def result(self, timeout: float | None = None) -> dict[str, Any]:
        """Results by node once the run succeeds; ``RunFailedError`` (with its failed nodes and their
        errors) if it fails or is cancelled; ``RunTimeoutError`` if it has not ended within ``timeout`` s."""
        return outcome(self.id, self.wait(timeout), self.status(), timeout)

    def events(self, after: str | None = None) -> Iterator[Event]:
        """The run's transitions as they happen (those so far first, or those after id ``after``),
        ending with its terminal event."""
        from ..history.store import HistoryStore

        return follow(self.engine.client, HistoryStore.from_settings(self.app.settings), self.id, after)

    def retry(self) -> DagRun:
        """A new run of this run's DAG, for a run that failed or was cancelled: nodes that succeeded
        here start succeeded with their results (they do not run again); the rest run afresh.
        ``RunStateError`` for a run that succeeded or has not ended."""
        doc = self.status()
        if doc["status"] not in (RunStatus.FAILED, RunStatus.CANCELLED):
            raise RunStateError(self.id, f"is {doc['status']}; only a failed or cancelled run can be retried")
        reused = {
            nid: json.dumps(node["result"], separators=(",", ":"))
            for nid, node in doc["nodes"].items()
            if node["status"] == NodeStatus.SUCCEEDED
        }
        if len(reused) == len(doc["nodes"]):
            raise RunStateError(self.id, "every node succeeded; there is nothing to retry")
        if running := [nid for nid, node in doc["nodes"].items() if node["status"] == NodeStatus.RUNNING]:
            # a cancel lets running nodes finish: retrying now would run them twice at once
            raise RunStateError(self.id, f"node(s) {', '.join(running[:5])} still run; retry once they end")
        dag = Dag.from_json(self.definition(), source=f"run {self.id}")
        return submit(dag, self.app, reused, self.id, engine=self._engine)

    def cancel(self) -> bool:
        """Stop starting nodes, revoke queued ones; the run ends ``cancelled``. False if already over."""
        done, queued = self.engine.cancel(self.id)
        if queued:
            self.app.control.revoke(queued)
        return done


def outcome(run_id: str, state: str, doc: dict[str, Any], timeout: float | None) -> dict[str, Any]:
    """What ``result`` gives for a run in ``state`` with document ``doc``: its results, or an error."""
    if state == RunStatus.SUCCEEDED:
        return {nid: n["result"] for nid, n in doc["nodes"].items() if n["status"] == NodeStatus.SUCCEEDED}
    if state not in TERMINAL:
        raise RunTimeoutError(run_id, state, timeout or 0.0)
    failed = {nid: n["error"] for nid, n in doc["nodes"].items() if n["status"] == NodeStatus.FAILED}
    raise RunFailedError(run_id, state, failed)


def submit(
    dag: Dag,
    app: Any,
    reused: dict[str, str] | None = None,
    parent: str = "",
    *,
    idempotency_key: str | None = None,
    engine: Engine | None = None,
) -> DagRun:
    """Validate ``dag`` and start it on ``app``'s stack; ``DagError`` (nothing enqueued) if it cannot
    run. With ``idempotency_key``, a repeat of an earlier submit (same key, same DAG) returns that
    run. ``reused`` and ``parent`` are a retry's (``DagRun.retry``); ``engine``: the caller's pool."""
    settings: Settings = app.settings
    engine = engine or engine_for(settings.state_url)
    idem = idempotency(dag, settings, idempotency_key)
    if idem is not None and (held := idem.holder(engine.client.get(idem.redis_key))):
        return DagRun(held, app, engine)
    live: list[str] = _live_agents(engine) if needs_registry(dag, app) else []
    tracing.setup_tracing("coditect-producer")
    with tracing.run_span(dag.name, len(dag.nodes)) as span:
        write = prepare_run(dag, app, live, span, reused, parent, idem)
        return DagRun(engine.submit(write), app, engine)


def idempotency(dag: Dag, settings: Settings, key: object) -> Idempotency | None:
    """The submit's idempotency (``InvalidIdempotencyKeyError`` for a bad key), or None without a key."""
    return None if key is None else Idempotency.of(key, dag.to_json(), settings.idempotency_retention)


def needs_registry(dag: Dag, app: Any) -> bool:
    """Whether ``dag`` names an agent ``app`` does not declare (only a remote worker might serve it)."""
    return any(name not in app.agents for node in dag.nodes.values() for name in (node.agent, node.fallback) if name)


def prepare_run(
    dag: Dag,
    app: Any,
    live: list[str],
    span: Any,
    reused: dict[str, str] | None = None,
    parent: str = "",
    idem: Idempotency | None = None,
) -> RunWrite:
    """Validate and plan ``dag`` against the agents ``app`` declares and ``live`` ones, and build
    its run's writes under the run's root ``span``."""
    settings: Settings = app.settings
    plan = validate(dag, set(app.agents) | set(live), **settings.dag_limits())
    run_id = uuid.uuid4().hex
    span.set_attribute("coditect.run_id", run_id)
    trace = tracing.traceparent(span)
    templates: dict[str, str] = {}
    node_templates: dict[str, str] = {}
    for node in dag.nodes.values():
        spec = app.agents.get(node.agent)
        fallback = node.fallback or (spec.fallback if spec else None)
        for name in (node.agent, fallback):
            if name is not None and template_key(name, node.timeout) not in templates:
                known = app.agents.get(name) or _remote_agent(name)
                templates[template_key(name, node.timeout)] = message_template(app, run_id, known, node.timeout, trace)
        node_templates[node.id] = template_key(node.agent, node.timeout)
    fields = {"trace": trace, "parent": parent, **({"outbox": 1} if settings.outbox else {})}
    return prepare(run_id, plan, templates, node_templates, now(), fields, reused, idem)


def _live_agents(engine: Engine) -> list[str]:
    return list(Registry(engine.client).by_agent())


def _remote_agent(name: str) -> Any:
    """An agent only remote workers declare: route by name with default limits."""
    return Agent(name=name, fn=lambda call: None)


def read_live(engine: Engine, run_id: str) -> dict[str, Any] | None:
    """The run document from Redis, or None if its live state is gone."""
    with engine.client.pipeline(transaction=False) as pipe:
        return live_document(run_id, queue_live_reads(pipe, run_id).execute())


def queue_live_reads(pipe: Any, run_id: str) -> Any:
    """Queue on ``pipe`` (sync or asyncio) the reads ``live_document`` needs."""
    p = keys.run_prefix(run_id)
    pipe.hgetall(p + "run")
    for field in NODE_FIELDS:
        pipe.hgetall(p + field)
    return pipe


def live_document(run_id: str, replies: list[Any]) -> dict[str, Any] | None:
    """The run document from the replies of ``queue_live_reads``; None if the live state is gone."""
    run, *tables = replies
    if not run or "dag" not in run:
        return None
    by_field = dict(zip(NODE_FIELDS, tables, strict=True))
    dag = json.loads(run["dag"])
    nodes = {}
    for node in dag["nodes"]:
        nid = node["id"]
        result = by_field["result"].get(nid)
        nodes[nid] = {
            "status": by_field["status"].get(nid, NodeStatus.PENDING.value),
            "agent": by_field["routed"].get(nid, node["agent"]),
            "attempts": int(by_field["attempts"].get(nid, 0)),
            "worker": by_field["worker"].get(nid),
            "started_at": by_field["started"].get(nid),
            "finished_at": by_field["finished"].get(nid),
            "result": json.loads(result) if result is not None else None,
            "error": by_field["error"].get(nid),
        }
    status = run.get("status", RunStatus.RUNNING.value)
    warnings = []
    if status == RunStatus.FAILING:
        running = sum(1 for n in nodes.values() if n["status"] == NodeStatus.RUNNING)
        warnings.append(f"{run.get('error')}; waiting for {running} running node(s) to finish")
    return {
        "run_id": run_id,
        "name": run.get("name"),
        "parent_run_id": run.get("parent") or None,
        "status": public(status),
        "submitted_at": run.get("submitted_at"),
        "finished_at": run.get("finished_at"),
        "error": run.get("error"),
        "warnings": warnings,
        "nodes": nodes,
    }


def add_stall_warnings(engine: Engine, doc: dict[str, Any]) -> None:
    """Name every queued node whose agent has no live worker: the run is stalled there."""
    if doc["status"] not in TERMINAL:
        stall_warnings(doc, Registry(engine.client).by_agent())


def stall_warnings(doc: dict[str, Any], live: dict[str, Any]) -> None:
    """Add to ``doc``'s warnings every queued node whose agent has no worker in ``live`` (agent → workers)."""
    for nid, node in doc["nodes"].items():
        if node["status"] == NodeStatus.QUEUED and not live.get(node["agent"]):
            doc["warnings"].append(f"node {nid!r} waits for agent {node['agent']!r}, which has no live worker")


def list_runs(
    app: Any, limit: int = 20, before: str | None = None, engine: Engine | None = None
) -> list[dict[str, Any]]:
    """Newest runs first: live ones from Redis, the rest from the history. With ``before`` (a run
    id), the runs submitted before that one: the next page."""
    from ..history.store import HistoryStore

    client = (engine or engine_for(app.settings.state_url)).client
    cutoff: str | None = None
    newest = "+inf"
    if before is not None:
        live = client.hget(keys.run_prefix(before) + "run", "submitted_at")
        cutoff = str(live) if live is not None else DagRun(before, app, engine).status()["submitted_at"]
        # a run's score is taken a moment after its submitted_at: a second's slack, then the exact cut below
        newest = str(datetime.fromisoformat(str(cutoff)).timestamp() + 1)
    found: dict[str, dict[str, Any]] = {}
    # twice the page: runs in the second of slack above the cut are dropped below, the page stays full
    run_ids = [str(r) for r in client.zrevrangebyscore(keys.RUNS, newest, "-inf", start=0, num=2 * limit)]
    with client.pipeline(transaction=False) as pipe:
        for run_id in run_ids:
            pipe.hmget(keys.run_prefix(run_id) + "run", "name", "status", "submitted_at", "finished_at")
        replies = pipe.execute()
    for run_id, (name, status, submitted, finished) in zip(run_ids, replies, strict=True):
        if status is None:
            continue
        found[run_id] = {
            "run_id": run_id,
            "name": name,
            "submitted_at": submitted,
            "finished_at": finished,
            "status": public(status),
        }
    for row in HistoryStore.from_settings(app.settings).runs(limit, before=cutoff):
        found.setdefault(row["run_id"], row)
    rows = [r for r in found.values() if cutoff is None or (r["submitted_at"] or "") < cutoff]
    return sorted(rows, key=lambda r: r["submitted_at"] or "", reverse=True)[:limit]
