"""Executing one node attempt inside a worker: begin, call the agent, record the outcome.

Plain nodes and foreach items take the same path (``_call``): the agent runs under
the attempt's lease, a retryable error is retried through Celery once the attempt
allows it (a node records the retry in its run; an item's retry is its own), a final
error or a soft time limit ends the attempt. A node records its outcome itself and
goes through its agent's breaker; an item hands its outcome to its chord's body
(``join``), which records the node. Whatever is recorded goes through the
``Attempt`` and its fencing token.
"""

from __future__ import annotations

import socket
from typing import Any

import pybreaker
from celery import Celery, Task, chord
from celery.exceptions import SoftTimeLimitExceeded
from opentelemetry.trace import get_current_span

from ..agents import Agent, AgentCall
from ..dag.engine import Taken, engine_for, template_key
from ..observability import logs, tracing
from ..resilience.breaker import breaker_for
from .attempt import Attempt, policy_for

#: Key in a foreach item's result that marks a call that failed for good.
ITEM_ERROR = "__coditect_error__"
#: Celery task name of a foreach node's chord body.
JOIN_TASK = "coditect.join"


class _Retried(Exception):
    """The node's attempt failed and the engine will queue its next one after the delay."""


class _Failed(Exception):
    """The attempt ended in an error that is not retried (any more)."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


def execute(task: Task, spec: Agent, run_id: str, node_id: str) -> None:
    """Run one node attempt: begin (fenced), call the agent or launch its foreach chord, record."""
    state_url = task.app.settings.state_url
    engine = engine_for(state_url)
    taken = engine.begin(run_id, node_id, str(task.request.hostname or socket.gethostname()), str(task.request.id))
    if taken is None:
        return  # finished, skipped, cancelled or superseded: nothing to do
    logs.bind(attempt=taken.token)
    policy = policy_for(spec, taken.record.get("retries"))
    attempt = Attempt(engine, run_id, node_id, taken.token, policy, number=taken.retried + 1)
    with tracing.node_span(spec.name, run_id, node_id, taken.token, taken.parent_span, taken.link_spans) as span:
        if taken.record["foreach"]:
            _launch_foreach(task, spec, attempt, taken)
            return
        call = AgentCall(
            taken.record["params"],
            taken.upstream,
            attempt=taken.token,
            task_id=task.request.id,
            run_id=run_id,
            node_id=node_id,
        )
        breaker = breaker_for(state_url, spec.name, spec.breaker_failures, spec.breaker_reset)
        try:
            result = _call(task, spec, attempt, call, lambda c: breaker.call(spec.fn, c))
        except pybreaker.CircuitBreakerError:
            fallback = taken.record.get("fallback") or spec.fallback
            if not (fallback and attempt.reroute(fallback, template_key(fallback, taken.record["timeout"]))):
                attempt.fail(f"circuit open for agent {spec.name!r}")
            return
        except _Failed as failed:
            attempt.fail(failed.error)
            return
        except _Retried:
            return
        attempt.succeed(result, tracing.traceparent(span))


def run_item(task: Task, spec: Agent, attempt: Attempt, call: AgentCall) -> Any:
    """One foreach item: its result, or an error marker for the chord's body to record."""
    try:
        return _call(task, spec, attempt, call, spec.fn)
    except _Failed as failed:
        return {ITEM_ERROR: failed.error}


def _call(task: Task, spec: Agent, attempt: Attempt, call: AgentCall, fn: Any) -> Any:
    """Call the agent once under the attempt's lease.

    A retryable error is retried once the attempt allows it: a node's by the engine
    (``_Retried``), a foreach item's through Celery (``Retry``); a final one (or the soft time
    limit) raises ``_Failed``; an open breaker passes through.
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
        countdown = attempt.policy.delay(number)
        if attempt.policy.should_retry(number, exc) and attempt.retry(error, countdown):
            if attempt.member is None:
                raise _Retried(error) from exc
            raise task.retry(exc=exc, countdown=countdown, max_retries=attempt.policy.max_attempts - 1) from exc
        raise _Failed(error) from exc


def _soft_limit(task: Task, spec: Agent) -> float:
    """The soft limit this message ran under (a node's ``timeout`` may differ from the agent's)."""
    limits = getattr(task.request, "timelimit", None) or (None, None)
    return float(limits[1]) if limits[1] else spec.soft_limit


def _launch_foreach(task: Task, spec: Agent, attempt: Attempt, taken: Taken) -> None:
    """Fan one agent out over the items as a Celery chord whose body records the node.

    Every item carries the node's time limits and retry count, as the node itself would.
    """
    record = taken.record
    values = record["items"] if record["items"] is not None else taken.items
    if not isinstance(values, list):
        attempt.fail(f"foreach source result is {type(values).__name__}, not a list")
        return
    limit = task.app.settings.max_foreach_items
    if len(values) > limit:
        attempt.fail(f"foreach over {len(values)} items, over the limit of {limit} (CODITECT_MAX_FOREACH_ITEMS)")
        return
    hard, soft = spec.limits(record["timeout"])
    run_id, node_id, token = attempt.run_id, attempt.node_id, attempt.token
    header = [
        task.app.tasks[spec.task_name]
        .s(
            params={**record["params"], "item": item},
            run_id=run_id,
            node_id=node_id,
            member=index,
            token=token,
            node_retries=record.get("retries"),
        )
        .set(task_id=f"{run_id}:{node_id}:{token}:{index}", time_limit=hard, soft_time_limit=soft)
        for index, item in enumerate(values)
    ]
    body = task.app.tasks[JOIN_TASK].s(run_id=run_id, node_id=node_id, token=token).set(queue=spec.queue)
    chord(header)(body)


def join(results: list[Any], attempt: Attempt) -> None:
    """Chord body of a foreach node: record the item results in order, or the first failure."""
    for index, item in enumerate(results):
        if isinstance(item, dict) and ITEM_ERROR in item:
            attempt.fail(f"item {index}: {item[ITEM_ERROR]}")
            return
    attempt.succeed(results, tracing.traceparent(get_current_span()))


def on_hard_timeout(app: Celery, task_id: str, kwargs: dict[str, Any], seconds: float) -> None:
    """Fail the attempt whose pool process was killed for exceeding its hard time limit.

    Runs in the worker's main process, which knows the message, not the attempt token: a
    node's attempt is named by its message's task id, a foreach item by the token it
    carries (an item fails its whole node). A stale attempt (its node already runs
    elsewhere) names no running attempt, so it fails nothing.
    """
    run_id, node_id = kwargs.get("run_id"), kwargs.get("node_id")
    if not (run_id and node_id):
        return
    engine = engine_for(app.settings.state_url)
    if kwargs.get("member") is not None and kwargs.get("token") is not None:
        engine.fail(
            run_id, node_id, int(kwargs["token"]), f"item {kwargs['member']}: hard time limit of {seconds:g} s exceeded"
        )
    else:
        engine.fail_from_message(run_id, node_id, task_id, f"hard time limit of {seconds:g} s exceeded")
