"""Every Redis key name coditect-tasks writes, in one place.

All keys share the ``coditect:`` prefix so that an operator can find (and a test
can flush) everything we own without touching the broker's own keys.
"""

from __future__ import annotations

PREFIX = "coditect:"

#: SET of worker hostnames that have announced themselves (pruned lazily).
WORKERS = f"{PREFIX}workers"

#: Celery queue (and task) name prefix: agent ``coder`` is served on ``agents.coder``.
AGENT_QUEUE_PREFIX = "agents."


def worker(hostname: str) -> str:
    """JSON description of one live worker; expires unless its heartbeat renews it."""
    return f"{PREFIX}worker:{hostname}"


def agent_queue(agent: str) -> str:
    return f"{AGENT_QUEUE_PREFIX}{agent}"

#: ZSET of run ids scored by submit time (seconds since the epoch).
RUNS = f"{PREFIX}runs"

#: STREAM of every run and node transition, consumed by the history recorder.
HISTORY = f"{PREFIX}history"

#: Consumer group of the history recorder on ``HISTORY``.
HISTORY_GROUP = "recorder"


def run_prefix(run_id: str) -> str:
    """Prefix of every key of one run: ``<prefix>run`` (hash), ``<prefix>status`` (node → status) …"""
    return f"{PREFIX}run:{run_id}:"


def run_channel(run_id: str) -> str:
    """Pub/sub channel on which a run announces that it reached a terminal state."""
    return f"{PREFIX}run:{run_id}:done"


#: Per-run hashes (suffixes of ``run_prefix``), node id → value unless noted.
RUN_HASHES = (
    "run",  # field → value: name, status, submitted_at, finished_at, total, remaining, running, error
    "status", "attempts", "pending", "node", "params", "result", "error", "worker", "started", "finished",
    "seq", "tpl", "routed",
    "t0",  # node → Redis server time (s) its running attempt began, for the duration histogram
    "trace",  # node → W3C traceparent of its succeeded attempt's span
)

#: HASH of counters the metrics exporter serves; written only by the engine's Lua scripts.
#: Fields: ``runs_submitted``, ``runs|<status>``, ``attempts|<agent>``, ``nodes|<agent>|<outcome>``,
#: ``failovers|<agent>``, ``duration|<agent>|<le>`` (one histogram bucket, not cumulative),
#: ``duration_sum|<agent>``, ``run_duration|<le>``, ``run_duration_sum``.
METRICS = f"{PREFIX}metrics"

#: ZSET of running attempts ("run|node|attempt") scored by lease expiry (Redis server time).
LEASES = f"{PREFIX}leases"


#: ZSET of worker hostnames that hold reserved node messages, scored by first reservation.
RESERVERS = f"{PREFIX}reservers"


def reserved(hostname: str) -> str:
    """SET of "run|node" whose message this worker has received but not yet begun."""
    return f"{PREFIX}reserved:{hostname}"


def breaker_namespace(agent: str) -> str:
    """pybreaker's Redis storage namespace of one agent's circuit breaker."""
    return f"{PREFIX}breaker:{agent}"


def breaker_state(agent: str) -> str:
    """The key in which pybreaker keeps that breaker's state (closed, open, half-open)."""
    return f"{breaker_namespace(agent)}:pybreaker:state"
