"""Executing one node attempt inside a worker: begin, call the agent, record the outcome.

A foreach node fans out (``_fan_out``): the engine queues one message per item, item k
being the pseudo-node ``<node>#k`` with its own attempt, lease and retries, and the last
item to succeed completes the node with every item's result. Plain nodes and items then
take the same path (``_call``): the agent runs under the attempt's lease, a retryable
error is retried by the engine once the policy allows it, a final error or a soft time
limit ends the attempt. A node goes through its agent's breaker; an item calls the agent
directly (its node has already been routed). Whatever is recorded goes through the
``Attempt`` and its fencing token.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import socket
import time
from collections.abc import Callable
from typing import Any

import pybreaker
from celery import Celery, Task
from celery.exceptions import SoftTimeLimitExceeded

from .. import keys
from ..agents import Agent, AgentCall
from ..dag.spawn import Spawn, requested
from ..engine.message import template_key
from ..engine.taken import Next, Taken, TakeNext
from ..engine.transitions import Engine, engine_for
from ..observability import logs, tracing
from ..resilience.breaker import breaker_for
from ..state.artifacts import ArtifactStore, NodeArtifacts, store_for
from .attempt import Attempt, policy_for
from .output import NodeOutput
from .spawning import spawn_children

#: Engine id of foreach item k of node N: ``N#k`` (node ids cannot hold ``#``).
ITEM_ID = re.compile(r"^(?P<node>.+)#(?P<index>\d+)$")


class _Retried(Exception):
    """The attempt failed and the engine will queue the next one after the delay."""


class _Failed(Exception):
    """The attempt ended in an error that is not retried (any more)."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


def execute(task: Task, spec: Agent, run_id: str, node_id: str) -> None:
    """Run one node (or foreach item) attempt: begin (fenced), call the agent or fan out, record.

    Then, while the take-next budget lasts, each success also takes the next message of the agent's
    queue in the same script (``TakeNext``), and this process runs that node the same way.
    """
    started = time.monotonic()  # the take-next budget counts from the message's start, as its limits do
    engine = engine_for(task.app.settings.state_url, task.app.settings.min_replicas, task.app.settings.cells)
    worker = str(task.request.hostname or socket.gethostname())
    task_id = via = str(task.request.id)
    breaker = keys.breaker_prefix(spec.key)
    # a node goes through its agent's breaker, whose state begin reads in the same round trip
    taken = engine.begin(run_id, node_id, worker, task_id, "" if ITEM_ID.match(node_id) else breaker)
    until = started + min(keys.TAKE_NEXT_SECONDS, _soft_limit(task, spec) / 10)
    hard, soft = getattr(task.request, "timelimit", None) or (None, None)
    ttl = math.ceil((hard or spec.timeout) + keys.LEASE_SECONDS)  # the taken-after note outlasts the hard limit

    def take_next() -> TakeNext | None:
        if time.monotonic() >= until or task.app.settings.outbox:  # RabbitMQ's queues are not in Redis
            return None
        return TakeNext(spec.queue, spec.task_name, _limit(hard), _limit(soft), worker, breaker, via, ttl, until)

    took_next = False
    try:
        while taken is not None:
            after = _attempt(task, spec, engine, (run_id, node_id, task_id), taken, take_next)
            if after is None:
                return
            took_next = True
            run_id, node_id, task_id, taken = after.run_id, after.node_id, after.task_id, after.taken
            logs.bind_message(task_id, run_id, node_id)
    finally:
        if took_next:
            engine.forget_taken(via)


def _attempt(
    task: Task,
    spec: Agent,
    engine: Engine,
    ids: tuple[str, str, str],
    taken: Taken,
    take_next: Callable[[], TakeNext | None],
) -> Next | None:
    """One begun attempt of node ``ids`` (run, node, message task id); the next node taken, if any."""
    run_id, node_id, task_id = ids
    state_url = task.app.settings.state_url
    item = ITEM_ID.match(node_id)
    logs.bind(attempt=taken.token)
    policy = policy_for(spec, taken.record.get("retries"))
    attempt = Attempt(engine, run_id, node_id, taken.token, policy, number=taken.retried + 1)
    store = store_for(task.app.settings)
    with tracing.node_span(spec.key, run_id, node_id, taken.token, taken.parent_span, taken.link_spans) as span:
        if item is None and taken.record["foreach"]:
            _fan_out(task, attempt, taken, store)
            return None
        params = taken.record["params"]
        if item is not None:
            params = {**params, "item": taken.items}
        path = f"{item['node']}/items/{item['index']}" if item else node_id  # an S3 key, where '#' would not do
        call = AgentCall(
            params,
            taken.upstream,
            attempt=taken.token,
            task_id=task_id,
            run_id=run_id,
            node_id=item["node"] if item else node_id,
            artifacts=NodeArtifacts(store, run_id, path, taken.token),
            output=NodeOutput(engine, run_id, node_id, taken.token, task.app.settings.stream_max_chunks),
        )
        fn = spec.fn if store is None else _through(store, engine, spec.fn, (run_id, path, taken.token), task)
        try:
            if item is not None:
                result = _call(task, spec, attempt, call, fn)
            else:
                breaker = breaker_for(state_url, spec.key, spec.breaker_failures, spec.breaker_reset, taken.breaker)
                result = _call(task, spec, attempt, call, lambda c: breaker.call(fn, c))
        except pybreaker.CircuitBreakerError:
            fallback = taken.record.get("fallback") or spec.fallback
            if not (fallback and attempt.reroute(fallback, template_key(fallback, taken.record["timeout"]))):
                attempt.fail(f"circuit open for agent {spec.key!r}")
            return None
        except _Failed as failed:
            attempt.fail(failed.error)
            return None
        except _Retried:
            return None
        try:
            spawn = requested(result, call.spawned)
        except TypeError as exc:  # call.spawn given something that is not a Dag
            attempt.fail(f"spawn: {exc}")
            return None
        if spawn is None:
            return attempt.succeed(result, tracing.traceparent(span), take_next())[1]
        spawn_children(task, attempt, spawn, item is not None)
        return None


def _through(store: ArtifactStore, engine: Engine, fn: Any, where: tuple[str, str, int], task: Task) -> Any:
    """``fn`` with its predecessors' results in S3 fetched first, and its own result put there if
    large: inside the attempt's lease, and an S3 error is the call's error (retried by policy)."""
    run_id, path, token = where

    def call_through(call: AgentCall) -> Any:
        runs = _writers(engine, run_id)
        upstream = {node: store.resolve(value, runs, node) for node, value in call.upstream.items()}
        result = fn(dataclasses.replace(call, upstream=upstream))
        if isinstance(result, Spawn) or call.spawned:  # (the copy shares the list call.spawn appends to)
            return result  # children to start, not a result to keep
        # a large result goes to S3; Redis and every downstream message hold a reference
        return store.offload(result, run_id, path, token, task.app.settings.artifact_threshold)

    return call_through


def _writers(engine: Engine, run_id: str) -> set[str]:
    """The runs whose S3 results this run may read: itself, and the run it retries (whose
    succeeded nodes it reuses, references included)."""
    parent = engine.client.hget(keys.run_prefix(run_id) + "run", "parent")
    return {run_id, str(parent)} if parent else {run_id}


def _call(task: Task, spec: Agent, attempt: Attempt, call: AgentCall, fn: Any) -> Any:
    """Call the agent once under the attempt's lease.

    A retryable error is handed to the engine once the policy allows it (``_Retried``); a
    final one (or the soft time limit) raises ``_Failed``; an open breaker passes through.
    """
    try:
        with attempt.lease():
            return fn(call)
    except pybreaker.CircuitBreakerError:
        raise
    except SoftTimeLimitExceeded:
        raise _Failed(f"timed out after {_soft_limit(task, spec):g} s") from None
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        number = attempt.number
        if attempt.policy.should_retry(number, exc) and attempt.retry(error, attempt.policy.delay(number)):
            raise _Retried(error) from exc
        raise _Failed(error) from exc


def _limit(seconds: float | None) -> str:
    """A time limit as ``take_next`` compares it with a message's ('' for none)."""
    return "" if seconds is None else repr(float(seconds))


def _soft_limit(task: Task, spec: Agent) -> float:
    """The soft limit this message ran under (a node's ``timeout`` may differ from the agent's)."""
    limits = getattr(task.request, "timelimit", None) or (None, None)
    return float(limits[1]) if limits[1] else spec.soft_limit


def _fan_out(task: Task, attempt: Attempt, taken: Taken, store: ArtifactStore | None) -> None:
    """Hand the node's items to the engine, one message each; an empty list succeeds at once.

    Every item's message is the node's own (its time limits), and its attempts follow the
    node's retry policy.
    """
    record = taken.record
    values = record["items"] if record["items"] is not None else taken.items
    if store is not None and record["items"] is None:  # a source result kept in S3 (never a literal list)
        try:
            values = store.resolve(values, _writers(attempt.engine, attempt.run_id), None)
        except Exception as exc:
            attempt.fail(f"foreach source in S3: {type(exc).__name__}: {exc}")
            return
        size = len(json.dumps(values, separators=(",", ":")).encode())
        if size > keys.MAX_RESULT_BYTES:  # each item is stored with its message: they must fit where results do
            attempt.fail(f"foreach items are {size} bytes, over the limit of {keys.MAX_RESULT_BYTES}")
            return
    if not isinstance(values, list):
        attempt.fail(f"foreach source result is {type(values).__name__}, not a list")
        return
    limit = task.app.settings.max_foreach_items
    if len(values) > limit:
        attempt.fail(f"foreach over {len(values)} items, over the limit of {limit} (CODITECT_MAX_FOREACH_ITEMS)")
        return
    if not values:
        attempt.succeed([])
        return
    attempt.fan_out(record, values)


def on_hard_timeout(app: Celery, task_id: str, kwargs: dict[str, Any], seconds: float) -> None:
    """Fail the attempt whose pool process was killed for exceeding its hard time limit.

    Runs in the worker's main process, which knows the message, not the attempt token: the
    attempt is named by its message's task id, or is the node the process took after finishing
    the message's own (``TakeNext``). A stale attempt (its node already runs elsewhere) names no
    running attempt, so it fails nothing.
    """
    run_id, node_id = kwargs.get("run_id"), kwargs.get("node_id")
    if run_id and node_id:
        engine = engine_for(app.settings.state_url, app.settings.min_replicas, app.settings.cells)
        why = f"hard time limit of {seconds:g} s exceeded"
        if not engine.fail_from_message(run_id, node_id, task_id, why) and (taken := engine.taken_after(task_id)):
            engine.fail_from_message(*taken, why)  # the node the process took after the message's own
