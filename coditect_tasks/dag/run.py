"""``submit`` and the ``DagRun`` handle orchestrator code holds.

Status is read from the live state in Redis and, once that has expired or been
flushed, from the durable history.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime
from typing import Any

from .. import keys
from ..agents import Agent
from ..errors import RunNotFoundError, RunStateError
from ..observability import tracing
from ..registry import Registry
from ..settings import Settings
from ..status import TERMINAL, NodeStatus, RunStatus, public
from .engine import Engine, engine_for
from .message import message_template, template_key
from .plan import validate
from .spec import Dag

NODE_FIELDS = ("status", "attempts", "worker", "started", "finished", "result", "error", "routed")


class DagRun:
    """A handle on one submitted run: poll it, wait for it, read it, cancel it."""

    def __init__(self, run_id: str, app: Any) -> None:
        self.id = run_id
        self.app = app

    @property
    def engine(self) -> Engine:
        return engine_for(self.app.settings.state_url)

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
            add_stall_warnings(self.app, live)
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
        return submit(Dag.from_json(self.definition(), source=f"run {self.id}"), self.app, reused, self.id)

    def cancel(self) -> bool:
        """Stop starting nodes, revoke queued ones; the run ends ``cancelled``. False if already over."""
        done, queued = self.engine.cancel(self.id)
        if queued:
            self.app.control.revoke(queued)
        return done


def submit(dag: Dag, app: Any = None, reused: dict[str, str] | None = None, parent: str = "") -> DagRun:
    """Validate ``dag`` and start it; ``DagError`` (nothing enqueued) if it cannot run.

    ``app`` defaults to one built from the environment (``CODITECT_*``). ``reused`` and
    ``parent`` are a retry's (``DagRun.retry``).
    """
    if app is None:
        from ..app import create_app
        from ..embedded import attach

        app = create_app(attach(Settings.from_env()))
    settings: Settings = app.settings
    known = set(app.agents) | set(_live_agents(app))
    plan = validate(dag, known, **settings.dag_limits())
    run_id = uuid.uuid4().hex
    tracing.setup_tracing("coditect-producer")
    with tracing.run_span(dag.name, len(dag.nodes)) as span:
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
                    templates[template_key(name, node.timeout)] = message_template(
                        app, run_id, known, node.timeout, trace
                    )
            node_templates[node.id] = template_key(node.agent, node.timeout)
        engine_for(settings.state_url).submit(
            run_id, plan, templates, node_templates, trace, reused, parent, outbox=settings.outbox
        )
    return DagRun(run_id, app)


def _live_agents(app: Any) -> list[str]:
    return list(Registry(engine_for(app.settings.state_url).client).by_agent())


def _remote_agent(name: str) -> Any:
    """An agent only remote workers declare: route by name with default limits."""
    return Agent(name=name, fn=lambda call: None)


def read_live(engine: Engine, run_id: str) -> dict[str, Any] | None:
    """The run document from Redis, or None if its live state is gone."""
    p = keys.run_prefix(run_id)
    with engine.client.pipeline(transaction=False) as pipe:
        pipe.hgetall(p + "run")
        for field in NODE_FIELDS:
            pipe.hgetall(p + field)
        run, *tables = pipe.execute()
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


def add_stall_warnings(app: Any, doc: dict[str, Any]) -> None:
    """Name every queued node whose agent has no live worker: the run is stalled there."""
    if doc["status"] in TERMINAL:
        return
    live = Registry(engine_for(app.settings.state_url).client).by_agent()
    for nid, node in doc["nodes"].items():
        if node["status"] == NodeStatus.QUEUED and not live.get(node["agent"]):
            doc["warnings"].append(f"node {nid!r} waits for agent {node['agent']!r}, which has no live worker")


def list_runs(app: Any, limit: int = 20, before: str | None = None) -> list[dict[str, Any]]:
    """Newest runs first: live ones from Redis, the rest from the history. With ``before`` (a run
    id), the runs submitted before that one: the next page."""
    from ..history.store import HistoryStore

    client = engine_for(app.settings.state_url).client
    cutoff: str | None = None
    newest = "+inf"
    if before is not None:
        live = client.hget(keys.run_prefix(before) + "run", "submitted_at")
        cutoff = str(live) if live is not None else DagRun(before, app).status()["submitted_at"]
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
