"""Agents that only the tests use (time limits, poison results)."""

from __future__ import annotations

import contextlib
import time

from celery.exceptions import SoftTimeLimitExceeded

from coditect_tasks import AgentCall, agent


@agent("slowpoke", timeout=1.0, soft_timeout=0.5)
def slowpoke(call: AgentCall) -> dict[str, float]:
    """Sleep ``params["seconds"]``, beyond the hard limit if asked."""
    seconds = float(call.params.get("seconds", 0))
    time.sleep(seconds)
    return {"slept": seconds}


@agent("stubborn", timeout=1.0, soft_timeout=0.3)
def stubborn(call: AgentCall) -> dict[str, float]:
    """Ignore the soft time limit, so only the hard limit (a process kill) stops it."""
    deadline = time.monotonic() + float(call.params.get("seconds", 0))
    while time.monotonic() < deadline:
        with contextlib.suppress(SoftTimeLimitExceeded):
            time.sleep(0.05)
    return {"slept": float(call.params.get("seconds", 0))}
