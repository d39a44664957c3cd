"""The limits a client's submit writes into a run: each node's, resolved from its params.

A node holds its agent's limits and its own (``limits.holds``); the engine enforces them from
the definitions in Redis, so the client declares its app's agents' limits first (once), and
reads the definitions it resolves keys and units from (cached briefly: an unknown name reads
them again, so a limit an operator just defined is found).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .. import keys
from ..agents import Agent
from ..dag.spec import Dag
from ..engine.transitions import now
from ..errors import InvalidArgumentError
from ..limits import Limit, document, holds
from ..steps import Ask, Steps

#: Seconds a client trusts the limits' definitions it read (a name it does not know reads them again).
LIMITS_TTL_SECONDS = 1.0


class LimitBook:
    """The limits one client knows: its app's agents' (declared to the engine on first use) and
    the definitions the engine enforces."""

    def __init__(self, agents: Mapping[str, Agent]) -> None:
        self.agents = agents
        self._declared: set[str] = set()
        self._limits: dict[str, Limit] = {}
        self._limits_read = -LIMITS_TTL_SECONDS

    def holds(
        self, dag: Dag, workers: list[dict[str, Any]], routing: Mapping[str, str] | None = None
    ) -> Steps[dict[str, list[list[Any]]]]:
        """Node → the limits it holds (``limits.holds``), its agent's and its own; the app's agents'
        limits are declared to the engine first (once per client), so it enforces them before a
        worker of theirs has started. Remote agents' limit names come from their workers'
        registrations; a pinned agent's (``routing``: agent → ``coder@2``) are its version's.
        Nothing is read for a DAG with no limit anywhere."""
        names = {key: [limit.name for limit in agent.limits] for key, agent in self.agents.items()}
        for worker in workers:
            for agent, limits in worker.get("limits", {}).items():
                names.setdefault(agent, list(limits))
        for agent, key in (routing or {}).items():  # a version nobody registered: its base's limits
            names[agent] = names[key] if key in names else names.get(agent, [])
        if not any(node.limits or names.get(node.agent) for node in dag.nodes.values()):
            return {}
        yield from self.declare_limits(self.agents.values())
        wanted = {n for node in dag.nodes.values() for n in (*names.get(node.agent, ()), *node.limits)}
        known = yield from self.known_limits(wanted)
        return {
            node.id: holds(dag.source, node.id, node.params, [*names.get(node.agent, ()), *node.limits], known)
            for node in dag.nodes.values()
            if node.limits or names.get(node.agent)
        }

    def declare_limits(self, agents: Iterable[Agent]) -> Steps[None]:
        """Declare the limits of ``agents`` to the engine, once per client."""
        for limit in {limit.name: limit for agent in agents for limit in agent.limits}.values():
            if limit.name not in self._declared:
                yield Ask(_declare(limit))
                self._declared.add(limit.name)

    def known_limits(self, wanted: set[str]) -> Steps[dict[str, Limit]]:
        """The limits' definitions the engine enforces, read again once older than
        ``LIMITS_TTL_SECONDS`` or when one of ``wanted`` is not among them."""
        stale = time.monotonic() - self._limits_read > LIMITS_TTL_SECONDS
        if stale or not wanted <= self._limits.keys():
            raw = yield Ask(lambda t: t.redis.hgetall(keys.LIMITS))
            self._limits = {str(name): Limit.from_json(str(name), json.loads(body)) for name, body in raw.items()}
            self._limits_read = time.monotonic()
        return self._limits

    def document(self, name: str = "") -> Steps[list[dict[str, Any]]]:
        """Every limit (or only ``name``) with what holds and waits for it (``limits.document``)."""
        return document((yield Ask(lambda t: t.scripts["limit"](args=["", now(), "read", name]))))

    def set(self, name: str, change: dict[str, Any]) -> Steps[dict[str, Any]]:
        """An operator's ``change`` of limit ``name`` (``limits.change``); its definition now."""
        body = json.dumps(change)
        defined = json.loads((yield Ask(lambda t: t.scripts["limit"](args=["", now(), "set", name, body]))))
        if "error" in defined:
            raise InvalidArgumentError(f"{defined['error']}: give concurrency or rate")
        self._limits_read = -LIMITS_TTL_SECONDS
        return dict(defined)

    def unset(self, name: str) -> Steps[dict[str, Any] | None]:
        """Drop the operator's change of limit ``name``: its declared definition, or None (it is gone)."""
        defined = yield Ask(lambda t: t.scripts["limit"](args=["", now(), "unset", name]))
        self._limits_read = -LIMITS_TTL_SECONDS
        value = json.loads(defined)
        return dict(value) if value else None


def _declare(limit: Limit) -> Callable[[Any], Any]:
    """The step that declares ``limit`` to the engine (limit.lua)."""
    body = json.dumps(limit.to_json())
    return lambda t: t.scripts["limit"](args=["", now(), "declare", limit.name, body])
