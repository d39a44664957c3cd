"""The probe agents of ``coditect-tasks chaos``: what its runs call, on its own probe workers.

Each counts its executions in a hash beside its run's keys (``executions``), so a verdict tells a
node that ran twice; the platform's own record (the run's events) tells a node that succeeded
twice. ``chaos-slow`` overruns its soft time limit, so its node times out.
"""

from __future__ import annotations

import time

from .. import keys
from ..agents import AgentCall, agent
from ..state._client import client_for

#: The agents the probe workers serve.
PROBE_AGENTS = ("chaos-probe", "chaos-slow")
#: Seconds ``chaos-slow``'s first attempt sleeps: past its soft time limit (1 s).
SLOW_SECONDS = 2.5


def executions(run_id: str) -> str:
    """HASH node → how many times a probe's body ran for it."""
    return keys.run_prefix(run_id) + "probe"


def _count(call: AgentCall) -> None:
    client_for().hincrby(executions(str(call.run_id)), str(call.node_id), 1)


@agent("chaos-probe", timeout=60.0)
def probe(call: AgentCall) -> dict[str, int]:
    """Count the execution, then sleep ``params["seconds"]``."""
    _count(call)
    time.sleep(float(call.params.get("seconds", 0)))
    return {"attempt": call.attempt}


@agent("chaos-slow", timeout=5.0, soft_timeout=1.0)
def slow(call: AgentCall) -> dict[str, int]:
    """Count the execution, then sleep past the soft time limit (and be stopped there)."""
    _count(call)
    time.sleep(SLOW_SECONDS)
    return {"attempt": call.attempt}
