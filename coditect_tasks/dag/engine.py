"""Execution: run state in Redis, changed only by atomic Lua scripts.

A node's completion runs one script that records the result, counts down its
successors and pushes the Celery messages of those now ready straight onto
their agents' queues, so dependencies are exact, nothing polls, and no crash
can leave a ready node unqueued. Every transition is appended to the history
stream in the same script. Attempt tokens fence late or duplicate completions:
only the newest attempt of a node may change the run.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING, Any

import pybreaker
import redis
import tenacity
from celery import Task, chord
from celery.exceptions import SoftTimeLimitExceeded
from opentelemetry.trace import Span, get_current_span

from .. import keys
from ..agents import Agent, AgentCall
from ..observability import logs, tracing
from ..resilience.breaker import breaker_for
from ..resilience.lease import FOREACH_LEASE_SECONDS, LEASE_SECONDS, LeaseKeeper
from ..resilience.retry import RetryPolicy
from .plan import Plan

if TYPE_CHECKING:
    from ..app import CoditectApp

log = logging.getLogger(__name__)

#: Largest JSON result a node may return, in bytes.
MAX_RESULT_BYTES = 8 * 1024 * 1024
#: Key in a foreach item's result that marks a call that failed for good.
ITEM_ERROR = "__coditect_error__"
JOIN_TASK = "coditect.join"
#: Seconds a finished run's live state is kept (LIVE_TTL in lua/common.lua).
LIVE_TTL = 7 * 24 * 3600


def now() -> str:
    """ISO-8601 UTC timestamp with microseconds: the only time format we store."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _load_scripts() -> dict[str, str]:
    folder = resources.files(__package__) / "lua"
    common = (folder / "common.lua").read_text()
    return {
        name: common + "\n" + (folder / f"{name}.lua").read_text()
        for name in ("submit", "begin", "complete", "fail", "retry", "cancel", "renew", "reap", "reroute", "reserve",
                     "reclaim")
    }


SCRIPTS = _load_scripts()


#: Redis errors worth waiting out: a restart, a failover, a blip in the network.
TRANSIENT = (redis.ConnectionError, redis.TimeoutError)


def _outlast_outages(seconds: float) -> tenacity.Retrying:
    """Retry transient Redis errors with jittered exponential backoff for up to ``seconds``."""
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(TRANSIENT),
        wait=tenacity.wait_exponential_jitter(multiplier=0.05, max=2.0),
        stop=tenacity.stop_after_delay(seconds),
        before_sleep=lambda state: log.warning("Redis unavailable (%s); retrying", state.outcome.exception()
                                               if state.outcome else "?"),
        reraise=True,
    )


@dataclass(frozen=True)
class Taken:
    """What ``begin`` hands a worker: the attempt token, the node's record, its
    predecessors' results, the foreach items, and the trace context to open its span in."""

    token: int
    record: dict[str, Any]
    upstream: dict[str, Any]
    items: Any
    parent_span: str
    link_spans: str


class Engine:
    """The run-state operations, each one atomic script call (one round trip).

    Every call outlasts Redis outages of up to ``outage_seconds``: the scripts
    are idempotent or fenced, so repeating one whose reply was lost is safe.
    """

    def __init__(self, client: redis.Redis, outage_seconds: float = 120.0) -> None:
        self.client = client
        self.outage_seconds = outage_seconds
        self.scripts = {name: client.register_script(src) for name, src in SCRIPTS.items()}

    def _call(self, name: str, run_id: str, *args: Any) -> Any:
        for attempt in _outlast_outages(self.outage_seconds):
            with attempt:
                return self.scripts[name](args=[run_id, now(), *args])
        raise AssertionError("unreachable: tenacity re-raises")

    def submit(
        self, run_id: str, plan: Plan, templates: dict[str, str], node_templates: dict[str, str], trace: str = "",
    ) -> None:
        """Write the whole run and enqueue its roots in one MULTI/EXEC: all or nothing.

        ``trace`` is the traceparent of the run's root span.
        """
        p = keys.run_prefix(run_id)
        dag = plan.dag
        submitted = now()
        descs: dict[Any, Any] = {}
        params: dict[Any, Any] = {}
        pending: dict[Any, Any] = {}
        for node_id, node in dag.nodes.items():
            desc: dict[str, Any] = {
                "q": keys.agent_queue(node.agent), "t": node_templates[node_id],
                "s": plan.succs[node_id], "p": plan.preds[node_id],
            }
            if node.foreach is not None:
                desc["x"] = 1
            if isinstance(node.foreach, str):
                desc["f"] = node.foreach
            descs[node_id] = json.dumps(desc, separators=(",", ":"))
            params[node_id] = json.dumps(
                {"agent": node.agent, "params": node.params, "items": node.foreach if isinstance(node.foreach, list)
                 else None, "foreach": node.foreach is not None, "retries": node.retries, "timeout": node.timeout,
                 "fallback": node.fallback},
                separators=(",", ":"),
            )
            pending[node_id] = len(plan.preds[node_id])
        for attempt in _outlast_outages(self.outage_seconds):
            with attempt:
                if self.client.hget(p + "run", "status") is not None:
                    return  # an earlier try got through; its reply was lost
                self._write_run(run_id, plan, templates, descs, params, pending, submitted, trace)

    def _write_run(
        self, run_id: str, plan: Plan, templates: dict[str, str], descs: dict[Any, Any], params: dict[Any, Any],
        pending: dict[Any, Any], submitted: str, trace: str,
    ) -> None:
        p = keys.run_prefix(run_id)
        dag = plan.dag
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(p + "run", mapping={
                "name": dag.name, "status": "submitting", "submitted_at": submitted, "total": len(dag.nodes),
                "remaining": len(dag.nodes), "running": 0, "dag": json.dumps(dag.to_json()), "trace": trace,
            })
            pipe.hset(p + "node", mapping=descs)
            pipe.hset(p + "params", mapping=params)
            pipe.hset(p + "pending", mapping=pending)
            pipe.hset(p + "status", mapping=dict.fromkeys(dag.nodes, "pending"))
            pipe.hset(p + "tpl", mapping=dict[Any, Any](templates))
            stamp = datetime.now(UTC).timestamp()
            pipe.zadd(keys.RUNS, {run_id: stamp})
            pipe.zremrangebyscore(keys.RUNS, 0, stamp - LIVE_TTL)  # their live state has expired
            self.scripts["submit"](args=[run_id, submitted, *plan.roots], client=pipe)
            pipe.execute()

    def begin(self, run_id: str, node_id: str, worker: str) -> Taken | None:
        """Take a node for a new attempt, or None if it must not run (finished, cancelled, superseded)."""
        reply = self._call("begin", run_id, node_id, worker)
        if int(reply[0]) != 1:
            return None
        items = json.loads(reply[4]) if reply[4] else None
        return Taken(int(reply[1]), json.loads(reply[2]), json.loads(reply[3]), items, str(reply[5] or ""),
                     str(reply[6] or "[]"))

    def complete(self, run_id: str, node_id: str, token: int, result_json: str, span: str = "") -> bool:
        return int(self._call("complete", run_id, node_id, token, result_json, span)[0]) == 1

    def succeed(self, run_id: str, node_id: str, token: int, result: Any, span: str = "") -> bool:
        """Complete with ``result``, or fail the node if it is not JSON or too large.

        ``span`` is the attempt's traceparent: its successors' spans hang under it.
        """
        encoded, problem = encode_result(result)
        if problem:
            return self.fail(run_id, node_id, token, problem)
        return self.complete(run_id, node_id, token, encoded, span)

    def fail(self, run_id: str, node_id: str, token: int | str, error: str) -> bool:
        return int(self._call("fail", run_id, node_id, token, error)) == 1

    def retry(self, run_id: str, node_id: str, token: int, error: str, countdown: float) -> bool:
        return int(self._call("retry", run_id, node_id, token, error, countdown)) == 1

    def renew(self, run_id: str, node_id: str, token: int, seconds: float) -> bool:
        return int(self._call("renew", run_id, node_id, token, seconds)) == 1

    def reap(self, limit: int = 100) -> list[str]:
        """Requeue attempts whose lease expired; returns ``run|node|attempt`` of each."""
        return [str(m) for m in self._call("reap", "", limit)]

    def reserve(self, run_id: str, node_id: str, worker: str) -> None:
        """Note that ``worker`` holds the node's message (for ``reclaim`` if it dies first)."""
        self._call("reserve", run_id, node_id, worker)

    def reclaim_lost(self, grace: float) -> int:
        """Requeue nodes whose message a now-dead worker had received but not begun."""
        count = 0
        for host in self.client.zrange(keys.RESERVERS, 0, -1):
            if not self.client.exists(keys.worker(str(host))):
                count += int(self._call("reclaim", "", str(host), grace))
        return count

    def reroute(self, run_id: str, node_id: str, token: int, agent: str, template: str) -> bool:
        """Queue the node again for ``agent`` (its fallback); False if no template or stale."""
        if not self.client.hexists(keys.run_prefix(run_id) + "tpl", template):
            return False
        return int(self._call("reroute", run_id, node_id, token, agent, keys.agent_queue(agent), template)) == 1

    def cancel(self, run_id: str) -> tuple[bool, list[str]]:
        """Cancel; returns whether it took effect and the task ids still queued (to revoke)."""
        reply = self._call("cancel", run_id)
        if int(reply[0]) != 1:
            return False, []
        return True, [str(t) for t in reply[1:]]


_ENGINES: dict[tuple[int, int], Engine] = {}


def engine_for(app: CoditectApp) -> Engine:
    """The engine of ``app`` in this process (a prefork child gets its own connection)."""
    key = (id(app), os.getpid())
    engine = _ENGINES.get(key)
    if engine is None:
        from ..broker import redis_client

        engine = _ENGINES[key] = Engine(redis_client(app.settings.state_url))
    return engine


def message_template(app: CoditectApp, run_id: str, agent: Agent, timeout: float | None, trace: str = "") -> str:
    """The Redis-transport envelope of a node's Celery message, with ``@@NODE@@`` and
    ``@@TID@@`` placeholders that the Lua ``enqueue`` fills in.

    Built with Celery's own protocol-2 message factory; the body is plain JSON
    (no ``body_encoding``) so that Lua can fill it by substitution. ``trace``, the
    run's root traceparent, goes in the headers, where Celery's tracing looks.
    """
    hard = timeout if timeout is not None else agent.timeout
    soft = hard * 0.9 if timeout is not None else agent.soft_limit
    message = app.amqp.as_task_v2(
        "@@TID@@", agent.task_name, args=(), kwargs={"run_id": run_id, "node_id": "@@NODE@@"},
        time_limit=hard, soft_time_limit=soft, ignore_result=True, root_id="@@TID@@",
        origin=f"{os.getpid()}@{socket.gethostname()}", argsrepr="()",
        kwargsrepr=f"{{'run_id': '{run_id}', 'node_id': '@@NODE@@'}}",
    )
    headers = dict(message.headers)
    if trace:
        headers["traceparent"] = trace
    properties = dict(message.properties)
    properties.pop("reply_to", None)
    properties.update(
        delivery_mode=2, priority=0, body_encoding=None, delivery_tag="@@TID@@",
        delivery_info={"exchange": "", "routing_key": agent.queue},
    )
    envelope = {
        "body": json.dumps(message.body), "content-encoding": "utf-8", "content-type": "application/json",
        "headers": headers, "properties": properties,
    }
    return json.dumps(envelope)


def execute(task: Task, spec: Agent, run_id: str, node_id: str) -> None:
    """Run one node attempt inside a worker: begin, call the agent, record the outcome."""
    app = task.app
    engine = engine_for(app)
    worker = str(task.request.hostname or socket.gethostname())
    taken = engine.begin(run_id, node_id, worker)
    if taken is None:
        return  # finished, skipped, cancelled or superseded: nothing to do
    logs.bind(attempt=taken.token)
    with tracing.node_span(spec.name, run_id, node_id, taken.token, taken.parent_span, taken.link_spans) as span:
        _attempt(task, spec, run_id, node_id, taken, span)


def _attempt(task: Task, spec: Agent, run_id: str, node_id: str, taken: Taken, span: Span) -> None:
    app = task.app
    engine = engine_for(app)
    token, record, upstream = taken.token, taken.record, taken.upstream
    if record["foreach"]:
        _launch_foreach(task, spec, run_id, node_id, token, record, upstream, taken.items)
        return
    call = AgentCall(record["params"], upstream, attempt=token, task_id=task.request.id, run_id=run_id,
                     node_id=node_id)
    breaker = breaker_for(app.settings.state_url, spec.name, spec.breaker_failures, spec.breaker_reset)
    try:
        with LeaseKeeper(lambda seconds: engine.renew(run_id, node_id, token, seconds), LEASE_SECONDS):
            result = breaker.call(spec.fn, call)
    except pybreaker.CircuitBreakerError:
        fallback = record.get("fallback") or spec.fallback
        template = f"{fallback}|{record['timeout'] or ''}"
        if not (fallback and engine.reroute(run_id, node_id, token, fallback, template)):
            engine.fail(run_id, node_id, token, f"circuit open for agent {spec.name!r}")
        return
    except SoftTimeLimitExceeded:
        engine.fail(run_id, node_id, token, f"timed out after {spec.soft_limit:g} s")
        return
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        policy = _policy(spec, record)
        retries = int(task.request.retries)
        countdown = policy.delay(retries + 1)
        if policy.should_retry(retries + 1, exc) and engine.retry(run_id, node_id, token, error, countdown):
            raise task.retry(countdown=countdown, max_retries=policy.max_attempts - 1) from exc
        engine.fail(run_id, node_id, token, error)
        return
    engine.succeed(run_id, node_id, token, result, tracing.traceparent(span))


def encode_result(result: Any) -> tuple[str, str | None]:
    """The result as JSON, or a clear problem if it is not JSON or too large."""
    try:
        encoded = json.dumps(result, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        return "", f"result is not JSON-serialisable: {exc}"
    if len(encoded) > MAX_RESULT_BYTES:
        return "", f"result is {len(encoded)} bytes, over the limit of {MAX_RESULT_BYTES}"
    return encoded, None


def _policy(spec: Agent, record: dict[str, Any]) -> RetryPolicy:
    if record.get("retries") is None:
        return spec.retry
    return RetryPolicy(max_attempts=int(record["retries"]) + 1, backoff=spec.retry.backoff,
                       backoff_max=spec.retry.backoff_max, retry_on=spec.retry.retry_on)


def _launch_foreach(
    task: Task, spec: Agent, run_id: str, node_id: str, token: int, record: dict[str, Any],
    upstream: dict[str, Any], items: Any,
) -> None:
    """Fan one agent out over the items as a Celery chord whose body records the node."""
    engine = engine_for(task.app)
    values = record["items"] if record["items"] is not None else items
    if not isinstance(values, list):
        engine.fail(run_id, node_id, token, f"foreach source result is {type(values).__name__}, not a list")
        return
    header = [
        task.app.tasks[spec.task_name].s(
            upstream=upstream, params={**record["params"], "item": item}, run_id=run_id, node_id=node_id,
            member=index, token=token,
        ).set(task_id=f"{run_id}:{node_id}:{token}:{index}")
        for index, item in enumerate(values)
    ]
    body = task.app.tasks[JOIN_TASK].s(run_id=run_id, node_id=node_id, token=token).set(queue=spec.queue)
    chord(header)(body)


def join(results: list[Any], run_id: str, node_id: str, token: int, app: CoditectApp) -> None:
    """Chord body of a foreach node: record the item results in order, or the first failure."""
    engine = engine_for(app)
    for index, item in enumerate(results):
        if isinstance(item, dict) and ITEM_ERROR in item:
            engine.fail(run_id, node_id, token, f"item {index}: {item[ITEM_ERROR]}")
            return
    engine.succeed(run_id, node_id, token, results, tracing.traceparent(get_current_span()))


def on_hard_timeout(app: CoditectApp, kwargs: dict[str, Any], seconds: float) -> None:
    """Fail the node whose pool process was killed for exceeding its hard time limit.

    Runs in the worker's main process, which does not know the attempt token:
    it fails whichever attempt is running. A foreach item fails its whole node.
    """
    run_id, node_id = kwargs.get("run_id"), kwargs.get("node_id")
    if run_id and node_id:
        what = "item " + str(kwargs["member"]) + ": " if kwargs.get("member") is not None else ""
        engine_for(app).fail(run_id, node_id, "*", f"{what}hard time limit of {seconds:g} s exceeded")


def keep_item_lease(app: CoditectApp, run_id: str, node_id: str, token: int) -> LeaseKeeper:
    """While a foreach item runs, it keeps its node's lease alive."""
    engine = engine_for(app)
    return LeaseKeeper(lambda seconds: engine.renew(run_id, node_id, token, seconds), FOREACH_LEASE_SECONDS)
