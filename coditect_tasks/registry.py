"""Agent discovery: which workers are alive and which agents they serve.

Each worker writes ``coditect:worker:<hostname>`` with a TTL and renews it every
``BEAT_INTERVAL`` seconds from a consumer bootstep (``worker/heartbeat.py``). Liveness is the key's
existence, judged by the Redis server's clock alone, so a SIGKILLed worker
vanishes within ``TTL`` seconds with no cleanup and no clock skew between hosts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from . import keys
from .broker import queue_depths
from .connection import redis_client
from .resilience.breaker import breaker_states
from .steps import Ask, Cleanups, Step, Steps, drive

#: Seconds a registration lives without a heartbeat.
TTL = 6
#: Seconds between heartbeats; three beats fit in one TTL.
BEAT_INTERVAL = 2.0


@dataclass(frozen=True)
class WorkerInfo:
    """One live worker pool as it describes itself."""

    hostname: str
    pid: int
    agents: tuple[str, ...]
    concurrency: int
    started_at: float
    last_seen: float = 0.0
    #: Agent → the names of the limits its nodes hold (a client without the agent's code reads them here).
    limits: Mapping[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["agents"] = list(self.agents)
        data["limits"] = dict(self.limits)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorkerInfo:
        return cls(
            hostname=str(data["hostname"]),
            pid=int(data["pid"]),
            agents=tuple(data["agents"]),
            concurrency=int(data["concurrency"]),
            started_at=float(data["started_at"]),
            last_seen=float(data.get("last_seen", 0.0)),
            limits=dict(data.get("limits", {})),
        )


class Registry:
    """Read and write worker registrations in the state Redis."""

    def __init__(self, client: redis.Redis, ttl: int = TTL) -> None:
        self.client = client
        self.ttl = ttl

    @property
    def redis(self) -> redis.Redis:
        """The client, by the name every step transport gives it (``steps.Ask``)."""
        return self.client

    @classmethod
    def from_url(cls, url: str) -> Registry:
        return cls(redis_client(url))

    def beat(self, info: WorkerInfo) -> None:
        """Announce or renew ``info`` for another ``ttl`` seconds."""
        value = json.dumps({**info.to_json(), "last_seen": time.time()})
        with self.client.pipeline(transaction=True) as pipe:
            pipe.set(keys.worker(info.hostname), value, ex=self.ttl)
            pipe.sadd(keys.WORKERS, info.hostname)
            pipe.execute()

    def withdraw(self, hostname: str) -> None:
        with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(keys.worker(hostname))
            pipe.srem(keys.WORKERS, hostname)
            pipe.execute()

    def is_live(self, hostname: str) -> bool:
        """Whether a worker of that name has announced itself within the last ``ttl`` seconds."""
        return bool(self.client.exists(keys.worker(hostname)))

    def workers(self) -> list[WorkerInfo]:
        """Live workers, sorted by hostname; forgets those whose key expired."""
        return [WorkerInfo.from_json(w) for w in drive(live_workers(), self._perform)]

    def _perform(self, step: Step, cleanups: Cleanups) -> Any:
        assert isinstance(step, Ask), step  # the registry's reads ask Redis only
        return step.call(self)

    def by_agent(self, agents: Iterable[str] = ()) -> dict[str, list[WorkerInfo]]:
        """Live workers per agent name, including agents only remote workers serve."""
        table: dict[str, list[WorkerInfo]] = {name: [] for name in agents}
        for info in self.workers():
            for name in info.agents:
                table.setdefault(name, []).append(info)
        return dict(sorted(table.items()))


def live_workers() -> Steps[list[dict[str, Any]]]:
    """The live workers' registrations (``WorkerInfo`` JSON), sorted by hostname; those whose
    registration expired are forgotten. Steps: the sync registry and every client read it so."""
    hostnames = sorted(str(h) for h in (yield Ask(lambda t: t.redis.smembers(keys.WORKERS))))
    if not hostnames:
        return []
    values = yield Ask(lambda t: t.redis.mget([keys.worker(h) for h in hostnames]))
    if gone := [h for h, v in zip(hostnames, values, strict=True) if v is None]:
        yield Ask(lambda t: t.redis.srem(keys.WORKERS, *gone))
    return [json.loads(v) for v in values if v is not None]


def agents_document(
    client: redis.Redis, settings: Any, declared: Mapping[str, Any]
) -> dict[str, dict[str, dict[str, Any]]]:
    """Every agent (the ``declared`` ones and those only remote workers serve) with its live
    workers, queue depth and breaker: ``agents --json``, ``GET /api/agents``, ``Client.agents``."""
    registry = Registry(client)
    table = registry.by_agent(declared)
    depths = queue_depths(settings.require_broker(), [keys.agent_queue(name) for name in table])
    breakers = breaker_states(client, table)
    ramps = {str(agent): json.loads(body) for agent, body in client.hgetall(keys.RAMPS).items()}
    return {
        "agents": {
            name: {
                "queue": keys.agent_queue(name),
                "declared": name in declared,
                "workers": [w.to_json() for w in workers],
                "queue_depth": depths[keys.agent_queue(name)],
                "breaker": breakers[name],
                "ramp": ramps.get(name),
            }
            for name, workers in table.items()
        }
    }
