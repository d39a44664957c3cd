"""``@agent``: declare an agent type, and turn declarations into routed Celery tasks.

A declaration is a plain value (``Agent``) attached to no app; ``create_app`` binds
every declared agent of the configured modules to one explicit Celery app. Agent
``coder`` becomes task ``agents.coder`` on queue ``agents.coder``: routing *is*
the advertisement, so adding capacity means starting workers on that queue.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from celery import Celery, Task
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from . import keys
from .errors import AgentDeclarationError, UnknownAgentError
from .resilience.retry import RetryPolicy

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class AgentCall:
    """What one agent invocation receives.

    ``upstream`` maps each direct predecessor's id to its result; ``attempt`` is
    1 on the first try and grows with every retry of the same call.
    """

    params: dict[str, Any]
    upstream: dict[str, Any]
    attempt: int = 1
    task_id: str | None = None
    run_id: str | None = None
    node_id: str | None = None


AgentFn = Callable[[AgentCall], Any]


@dataclass(frozen=True)
class Agent:
    """An agent type: its function and how the platform must run it.

    ``timeout`` is the hard limit in seconds (the worker process is killed);
    ``soft_timeout`` raises ``SoftTimeLimitExceeded`` inside the agent first.
    """

    name: str
    fn: AgentFn = field(compare=False)
    timeout: float = 300.0
    soft_timeout: float | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    fallback: str | None = None
    description: str = ""
    breaker_failures: int = 5
    breaker_reset: float = 30.0

    @property
    def queue(self) -> str:
        return keys.agent_queue(self.name)

    @property
    def task_name(self) -> str:
        return keys.agent_queue(self.name)

    @property
    def soft_limit(self) -> float:
        return self.soft_timeout if self.soft_timeout is not None else self.timeout * 0.9

    def __call__(self, call: AgentCall) -> Any:
        return self.fn(call)


def agent(
    name: str,
    *,
    timeout: float = 300.0,
    soft_timeout: float | None = None,
    retries: int = 0,
    backoff: float = 1.0,
    backoff_max: float = 60.0,
    fallback: str | None = None,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
    breaker_failures: int = 5,
    breaker_reset: float = 30.0,
) -> Callable[[AgentFn], Agent]:
    """Declare the decorated function as agent type ``name``.

    The function takes one ``AgentCall`` and returns a JSON-serialisable value.
    ``retries`` more attempts follow a failure whose exception is one of
    ``retry_on``, after ``backoff`` × 2ⁿ seconds (jittered, at most ``backoff_max``).
    After ``breaker_failures`` consecutive failures the agent's circuit opens for
    ``breaker_reset`` seconds; its nodes then go to ``fallback`` or fail fast.
    """
    if not NAME_PATTERN.match(name):
        raise AgentDeclarationError(
            f"agent name {name!r} must match {NAME_PATTERN.pattern} (it names a queue)"
        )
    if soft_timeout is not None and soft_timeout > timeout:
        raise AgentDeclarationError(f"agent {name!r}: soft_timeout exceeds timeout")
    policy = RetryPolicy.retries(retries, backoff=backoff, backoff_max=backoff_max, retry_on=retry_on)

    def declare(fn: AgentFn) -> Agent:
        return Agent(
            name=name,
            fn=fn,
            timeout=timeout,
            soft_timeout=soft_timeout,
            retry=policy,
            fallback=fallback,
            description=(fn.__doc__ or "").strip().split("\n")[0],
            breaker_failures=breaker_failures,
            breaker_reset=breaker_reset,
        )

    return declare


def load_agents(modules: Iterable[str]) -> dict[str, Agent]:
    """Import ``modules`` and collect the agents they declare, by name."""
    found: dict[str, Agent] = {}
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # any import failure is the user's module, report it
            raise AgentDeclarationError(
                f"CODITECT_AGENT_MODULES: cannot import {module_name!r}: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        for value in vars(module).values():
            if not isinstance(value, Agent):
                continue
            known = found.get(value.name)
            if known is not None and known.fn is not value.fn:
                raise AgentDeclarationError(
                    f"agent {value.name!r} is declared twice (second time in {module_name})"
                )
            found[value.name] = value
    return found


def select(agents: Mapping[str, Agent], names: Iterable[str]) -> list[Agent]:
    """The agents called ``names``, in order; ``UnknownAgentError`` for the first unknown."""
    chosen = []
    for name in names:
        if name not in agents:
            raise UnknownAgentError(name, agents)
        chosen.append(agents[name])
    return chosen


def route(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any) -> dict[str, str] | None:
    """Celery router: task ``agents.x`` goes to queue ``agents.x``, whoever sends it."""
    if name.startswith(keys.AGENT_QUEUE_PREFIX):
        return {"queue": name}
    return None


class AgentTask(Task):  # type: ignore[misc]  # celery ships no type hints
    """Celery task class of every agent: turns a hard time-limit kill into a failed node."""

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        if isinstance(exc, TimeLimitExceeded):
            from .dag.engine import on_hard_timeout

            on_hard_timeout(self.app, dict(kwargs or {}), float(self.time_limit or 0))


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
        member: int | None = None,
        token: int | None = None,
    ) -> Any:
        if run_id is not None and node_id is not None and member is None:
            from .dag.engine import execute

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
        try:
            if member is not None and run_id and node_id and token is not None:
                from .dag.engine import keep_item_lease

                with keep_item_lease(self.app, run_id, node_id, token):
                    return spec.fn(call)
            return spec.fn(call)
        except SoftTimeLimitExceeded:
            if member is not None:
                return _item_error(f"timed out after {spec.soft_limit:g} s")
            raise
        except Exception as exc:
            if not spec.retry.should_retry(call.attempt, exc):
                if member is not None:  # a foreach item: the chord body records the failure
                    return _item_error(f"{type(exc).__name__}: {exc}")
                raise
            raise self.retry(
                exc=exc,
                countdown=spec.retry.delay(call.attempt),
                max_retries=spec.retry.max_attempts - 1,
            ) from exc

    return run


def _item_error(message: str) -> dict[str, str]:
    from .dag.engine import ITEM_ERROR

    return {ITEM_ERROR: message}
