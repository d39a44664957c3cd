"""Agent discovery: which workers are alive and which agents they serve.

Each worker writes ``coditect:worker:<hostname>`` with a TTL and renews it every
``BEAT_INTERVAL`` seconds from a consumer bootstep (``worker/heartbeat.py``). Liveness is the key's
existence, judged by the Redis server's clock alone, so a SIGKILLed worker
vanishes within ``TTL`` seconds with no cleanup and no clock skew between hosts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import redis

from . import keys
from .broker import redis_client

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

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["agents"] = list(self.agents)
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
        )


class Registry:
    """Read and write worker registrations in the state Redis."""

    def __init__(self, client: redis.Redis, ttl: int = TTL) -> None:
        self.client = client
        self.ttl = ttl

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
        hostnames = sorted(str(h) for h in self.client.smembers(keys.WORKERS))
        if not hostnames:
            return []
        values = self.client.mget([keys.worker(h) for h in hostnames])
        gone = [h for h, v in zip(hostnames, values, strict=True) if v is None]
        if gone:
            self.client.srem(keys.WORKERS, *gone)
        return [WorkerInfo.from_json(json.loads(v)) for v in values if v is not None]

    def by_agent(self, agents: Iterable[str] = ()) -> dict[str, list[WorkerInfo]]:
        """Live workers per agent name, including agents only remote workers serve."""
        table: dict[str, list[WorkerInfo]] = {name: [] for name in agents}
        for info in self.workers():
            for name in info.agents:
                table.setdefault(name, []).append(info)
        return dict(sorted(table.items()))


def agents_document(settings: Any, declared: Any = None) -> dict[str, dict[str, dict[str, Any]]]:
    """Every agent with its live workers, queue depth and breaker: ``agents --json`` and ``GET /api/agents``.
    ``declared``: the agents the settings' modules declare, if loaded already."""
    from .agents import load_agents
    from .broker import queue_depths
    from .dag.engine import engine_for
    from .resilience.breaker import breaker_states

    declared = load_agents(settings.agent_modules) if declared is None else declared
    registry = Registry(engine_for(settings.state_url).client)  # the process's pool, not one per call
    table = registry.by_agent(declared)
    depths = queue_depths(settings.require_broker(), [keys.agent_queue(name) for name in table])
    breakers = breaker_states(registry.client, table)
    return {
        "agents": {
            name: {
                "queue": keys.agent_queue(name),
                "declared": name in declared,
                "workers": [w.to_json() for w in workers],
                "queue_depth": depths[keys.agent_queue(name)],
                "breaker": breakers[name],
            }
            for name, workers in table.items()
        }
    }
