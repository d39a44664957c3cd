"""What the console's pages show, as the HTTP API serves it: the overview (agents, their queues
and frontier, throughput, breakers, the recorder, limits, waiting nodes) and one agent's page.

Everything comes from what the CLI and the exporter already read: the worker registry, the
frontier counters the engine keeps, the broker's queue depths, and the history database. The
per-minute throughput is the one costly read (a GROUP BY over the last hour's runs and nodes):
it is kept ``THROUGHPUT_SECONDS`` between reads, since its buckets are a minute wide.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

from .. import keys
from ..cells import counted, summed
from ..client import Client
from ..dag.waits import KINDS
from ..history.queries import EVERY, RunQuery

#: Seconds the throughput charts are served from memory before the history is read again.
THROUGHPUT_SECONDS = 10.0
#: Minutes of throughput the overview charts.
CHART_MINUTES = 60
#: Nodes an agent's page lists.
AGENT_NODES = 50
#: Seconds the runs' counts per status (a GROUP BY over the history) are served from memory: every
#: open runs page asks twice a second.
COUNTS_SECONDS = 2.0


class Console:
    """The console's reads over one client (``serve``'s)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._throughput: tuple[float, dict[str, list[dict[str, Any]]]] | None = None
        self._counts: dict[RunQuery, tuple[float, dict[str, int]]] = {}
        self._lock = threading.Lock()

    def counts(self, query: RunQuery) -> dict[str, int]:
        """Recorded runs per status of ``query``'s filter, read at most every ``COUNTS_SECONDS``."""
        query = query.any_status()
        with self._lock:
            for stale in [q for q, (at, _) in self._counts.items() if time.monotonic() - at > COUNTS_SECONDS]:
                del self._counts[stale]
            kept = self._counts.get(query)
        if kept is not None:
            return kept[1]
        counted = self.client.history().counts(query)  # outside the lock: pages of other filters go on
        with self._lock:
            self._counts[query] = (time.monotonic(), counted)
        return counted

    def overview(self) -> dict[str, Any]:
        """The home page's document."""
        redis, cells = self.client.redis, self.client.settings.cells
        frontier = {k: int(v) for k, v in summed(redis, keys.FRONTIER, cells).items()}
        agents = self.client.agents()["agents"]
        limits = self.client.limits()
        oldest = self.client.history().oldest_queued()
        return {
            "generated_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "agents": {
                name: {**_agent_row(name, info, frontier), "oldest_queued": oldest.get(name)}
                for name, info in sorted(agents.items())
            },
            "runs": self.counts(EVERY),
            "throughput": self.throughput(),
            "waiting": {kind: frontier.get(f"waiting|{kind}", 0) for kind in (*KINDS, "spawn")},
            "recorder": {
                "lag_entries": counted(redis, "xlen", keys.HISTORY, cells),
                "unrecorded_runs": counted(redis, "zcard", keys.UNRECORDED, cells),
            },
            "outbox": counted(redis, "llen", keys.OUTBOX, cells),
            "limits": [_limit_row(limit) for limit in limits],
            "schedules": self.client.schedules.all(),
        }

    def throughput(self) -> dict[str, list[dict[str, Any]]]:
        """Runs and nodes ended per minute over the last hour, read at most every ``THROUGHPUT_SECONDS``."""
        kept = self._throughput
        if kept is not None and time.monotonic() - kept[0] <= THROUGHPUT_SECONDS:
            return kept[1]
        self._throughput = (time.monotonic(), self.client.history().per_minute(CHART_MINUTES))
        return self._throughput[1]

    def agent(self, name: str) -> dict[str, Any] | None:
        """One agent's page: its workers, queue, frontier, breaker and fallback, and its latest
        recorded nodes; None for an agent nobody declares and no worker serves."""
        agents = self.client.agents()["agents"]
        if name not in agents:
            return None
        frontier = {k: int(v) for k, v in summed(self.client.redis, keys.FRONTIER, self.client.settings.cells).items()}
        declared = self.client.app.agents.get(name)
        return {
            "name": name,
            **_agent_row(name, agents[name], frontier),
            "fallback": declared.fallback if declared is not None else None,
            "description": declared.description if declared is not None else "",
            "nodes": self.client.history().agent_nodes(name, AGENT_NODES),
        }


def _agent_row(name: str, info: dict[str, Any], frontier: dict[str, int]) -> dict[str, Any]:
    return {
        **info,
        "slots": sum(int(w["concurrency"]) for w in info["workers"]),
        "demand": frontier.get(f"demand|{name}", 0),
        "upcoming": frontier.get(f"upcoming|{name}", 0),
    }


def _limit_row(limit: dict[str, Any]) -> dict[str, Any]:
    """A limit as the overview lists it: its definition, and over its keys the nodes holding it,
    those waiting, and how long the oldest has waited."""
    keyed = limit["keys"]
    return {
        "name": limit["name"],
        "definition": limit["definition"],
        "in_use": sum(int(k["in_use"]) for k in keyed),
        "waiting": sum(int(k["waiting"]) for k in keyed),
        "oldest_wait": max((float(k["oldest_wait"] or 0) for k in keyed), default=0.0),
    }
