"""``@agent``: declare an agent type; find the declarations; route their tasks.

A declaration is a plain value (``Agent``) attached to no app; ``create_app`` binds
every declared agent of the configured modules to one explicit Celery app (through
``worker/tasks.py``). Agent
``coder`` becomes task ``agents.coder`` on queue ``agents.coder``: routing *is*
the advertisement, so adding capacity means starting workers on that queue.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import keys
from .errors import AgentDeclarationError, UnknownAgentError
from .limits import Limit
from .resilience.retry import RetryPolicy

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
#: Between an agent's name and its version in its key, queue and task: ``coder@2``, ``agents.coder@2``.
VERSION_MARK = "@"
#: Longest hard time limit of an agent or a node, in seconds (a day). The broker's visibility
#: timeout sits above it, so the broker never redelivers the message of a call still running.
MAX_TIMEOUT = 24 * 3600.0


@dataclass(frozen=True)
class AgentCall:
    """What one agent invocation receives.

    ``upstream`` maps each direct predecessor's id to its result; ``attempt`` is
    1 on the first try and grows with every retry of the same call. ``artifacts`` writes
    files of this attempt to S3 (``artifacts.put(name, data)`` returns the object's URL) when
    ``CODITECT_ARTIFACTS_URL`` is set.
    """

    params: dict[str, Any]
    upstream: dict[str, Any]
    attempt: int = 1
    task_id: str | None = None
    run_id: str | None = None
    node_id: str | None = None
    artifacts: Any = None
    #: Where ``stream`` writes (``worker.output.NodeOutput``); None outside a DAG run.
    output: Any = field(default=None, compare=False, repr=False)
    #: What ``spawn`` was given, in order (``dag.spawn.requested`` reads it once the agent returns).
    spawned: list[Any] = field(default_factory=list, compare=False, repr=False)

    def stream(self, chunk: Any) -> None:
        """Send ``chunk`` (text, or anything JSON) to whoever follows this node's output now
        (``DagRun.stream``, the run page). A retried attempt's output starts over after a rewind.
        Outside a DAG run (a plain Celery call) it goes nowhere."""
        if self.output is not None:
            self.output.write(chunk)

    def spawn(self, dags: Any) -> None:
        """Start ``dags`` (a ``Dag`` or a list of them) as child runs once the agent returns, whatever
        it returns: the node then waits for them and succeeds with their results (``dag.spawn``)."""
        self.spawned.append(dags)


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
    #: Limits every node of this agent holds while it runs (``limits.Limit``), beside its own.
    limits: tuple[Limit, ...] = ()
    #: Its version (``@agent(..., version="2")``): served on a queue of its own, which the runs pinned
    #: to it by a ramp (``coditect-tasks agents ramp``) use. None: the unversioned queue.
    version: str | None = None

    @property
    def key(self) -> str:
        """``coder``, or ``coder@2`` for a version: what a worker serves and the registry lists."""
        return versioned(self.name, self.version)

    @property
    def queue(self) -> str:
        return keys.agent_queue(self.key)

    @property
    def task_name(self) -> str:
        return keys.agent_queue(self.key)

    @property
    def soft_limit(self) -> float:
        return self.soft_timeout if self.soft_timeout is not None else self.timeout * 0.9

    def time_limits(self, timeout: float | None = None) -> tuple[float, float]:
        """(hard, soft) time limits in seconds of a call; a node's ``timeout`` overrides the agent's."""
        if timeout is None:
            return self.timeout, self.soft_limit
        return timeout, timeout * 0.9

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
    limits: Iterable[Limit] = (),
    version: str | None = None,
) -> Callable[[AgentFn], Agent]:
    """Declare the decorated function as agent type ``name``.

    The function takes one ``AgentCall`` and returns a JSON-serialisable value.
    ``retries`` more attempts follow a failure whose exception is one of
    ``retry_on``, after ``backoff`` × 2ⁿ seconds (jittered, at most ``backoff_max``).
    After ``breaker_failures`` consecutive failures the agent's circuit opens for
    ``breaker_reset`` seconds; its nodes then go to ``fallback`` or fail fast.
    Every node of the agent holds ``limits`` (global concurrency and rate limits) while it runs.
    A ``version`` is served on its own queue (``agents.coder@2``): runs reach it when a ramp pins
    them to it (``coditect-tasks agents ramp coder --to 2 --percent 10``).
    """
    if not NAME_PATTERN.match(name):
        raise AgentDeclarationError(f"agent name {name!r} must match {NAME_PATTERN.pattern} (it names a queue)")
    if not 0 < timeout <= MAX_TIMEOUT:
        raise AgentDeclarationError(f"agent {name!r}: timeout must be over 0 and at most {MAX_TIMEOUT:g} s")
    if soft_timeout is not None and soft_timeout > timeout:
        raise AgentDeclarationError(f"agent {name!r}: soft_timeout exceeds timeout")
    if version is not None and not VERSION_PATTERN.match(version):
        raise AgentDeclarationError(f"agent {name!r}: version {version!r} must match {VERSION_PATTERN.pattern}")
    policy = RetryPolicy.retries(retries, backoff=backoff, backoff_max=backoff_max, retry_on=retry_on)
    held = tuple(limits)
    if not all(isinstance(limit, Limit) for limit in held):
        raise AgentDeclarationError(f"agent {name!r}: limits must be coditect_tasks.Limit values")

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
            limits=held,
            version=version,
        )

    return declare


def load_agents(modules: Iterable[str]) -> dict[str, Agent]:
    """Import ``modules`` and collect the agents they declare, by key (name, or ``name@version``)."""
    found: dict[str, Agent] = {}
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # any import failure is the user's module, report it
            raise AgentDeclarationError(
                f"CODITECT_AGENT_MODULES: cannot import {module_name!r}: {type(exc).__name__}: {exc}"
            ) from None
        for value in vars(module).values():
            if not isinstance(value, Agent):
                continue
            known = found.get(value.key)
            if known is not None and known.fn is not value.fn:
                raise AgentDeclarationError(f"agent {value.key!r} is declared twice (second time in {module_name})")
            found[value.key] = value
    return found


def versioned(name: str, version: str | None) -> str:
    """The key of ``name`` at ``version`` (``coder@2``); ``name`` itself for no version."""
    return f"{name}{VERSION_MARK}{version}" if version else name


def base_name(key: str) -> str:
    """The agent's name in a key: ``coder`` of ``coder@2``."""
    return key.partition(VERSION_MARK)[0]


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
