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
