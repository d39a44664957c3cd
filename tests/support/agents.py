"""Agents that only the tests use (time limits, poison results)."""

from __future__ import annotations

import time

from coditect_tasks import AgentCall, agent


@agent("slowpoke", timeout=1.0, soft_timeout=0.5)
def slowpoke(call: AgentCall) -> dict[str, float]:
    """Sleep ``params["seconds"]``, beyond the hard limit if asked."""
    seconds = float(call.params.get("seconds", 0))
    time.sleep(seconds)
    return {"slept": seconds}
