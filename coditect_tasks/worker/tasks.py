"""Binding agents to a Celery app as tasks: the worker's entry into ``execution``.

Agent ``coder`` becomes task ``agents.coder`` with its limits and late acks. A task
call with ``run_id``/``node_id`` is a node (or foreach item) attempt; one without is a
plain Celery call (canvas, ``apply_async``) retried by the agent's own policy.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, Task
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from ..agents import Agent, AgentCall
from .execution import execute, on_hard_timeout
from .heartbeat import Heartbeat


def install(app: Celery, agents: dict[str, Agent]) -> None:
    """Register every agent and the heartbeat bootstep on ``app``."""
    for spec in agents.values():
        register(app, spec)
    app.steps["consumer"].add(Heartbeat)


class AgentTask(Task):  # type: ignore[misc]  # celery ships no type hints
    """Celery task class of every agent: turns a hard time-limit kill into a failed node."""

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        if isinstance(exc, TimeLimitExceeded):
            # TimeLimitExceeded carries the limit the call ran under (a node's timeout, not only the agent's)
            limit = exc.args[0] if exc.args and isinstance(exc.args[0], int | float) else self.time_limit
            on_hard_timeout(self.app, task_id, dict(kwargs or {}), float(limit or 0))


def register(app: Celery, spec: Agent) -> Task:
    """Bind ``spec`` to ``app`` as a Celery task with its limits and retry policy.

    The task takes ``upstream`` first so that, as a chord body, it receives the
    header's result list positionally; ``join`` then names the node that list
    belongs to.
    """

    @app.task(  # type: ignore[untyped-decorator]  # celery ships no type hints
        name=spec.task_name,
        base=AgentTask,
        bind=True,
        shared=False,  # a shared task would leak into every other app in the process
        queue=spec.queue,
        time_limit=spec.timeout,
        soft_time_limit=spec.soft_limit,
        acks_late=True,
        reject_on_worker_lost=True,
    )
    def run(
        self: Task,
        upstream: Any = None,
        params: dict[str, Any] | None = None,
        join: str | None = None,
        run_id: str | None = None,
        node_id: str | None = None,
    ) -> Any:
        if run_id is not None and node_id is not None:
            return execute(self, spec, run_id, node_id)
        if join is not None:
            upstream = {join: upstream}
        call = AgentCall(
            params=dict(params or {}),
            upstream=dict(upstream or {}),
            attempt=int(self.request.retries) + 1,
            task_id=self.request.id,
            run_id=run_id,
            node_id=node_id,
        )
        return _plain_call(self, spec, call)

    return run


def _plain_call(task: Task, spec: Agent, call: AgentCall) -> Any:
    """An agent called as a plain Celery task, outside any DAG run."""
    try:
        return spec.fn(call)
    except SoftTimeLimitExceeded:
        raise
    except Exception as exc:
        if not spec.retry.should_retry(call.attempt, exc):
            raise
        raise task.retry(
            exc=exc, countdown=spec.retry.delay(call.attempt), max_retries=spec.retry.max_attempts - 1
        ) from exc
