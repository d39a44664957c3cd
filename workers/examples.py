"""Example agents used by the demo, the tests, the benchmarks and the load tests.

Their contracts are stable: tests and load scenarios depend on them.
"""

from __future__ import annotations

import time
from typing import Any

from coditect_tasks import AgentCall, Dag, Spawn, agent


class FlakyFailure(RuntimeError):
    """Raised on purpose by ``flaky`` while it still has failures to serve."""


@agent("echo")
def echo(call: AgentCall) -> dict[str, Any]:
    """Return its params and the results of its direct predecessors."""
    return {"params": call.params, "upstream": call.upstream}


@agent("emit")
def emit(call: AgentCall) -> Any:
    """Return ``params["value"]`` unchanged."""
    return call.params.get("value")


@agent("sleep")
def sleep(call: AgentCall) -> dict[str, float]:
    """Sleep ``params["seconds"]`` and say so."""
    seconds = float(call.params.get("seconds", 0))
    time.sleep(seconds)
    return {"slept": seconds}


@agent("flaky", retries=5, backoff=0.05, backoff_max=1.0)
def flaky(call: AgentCall) -> dict[str, int]:
    """Fail the first ``params["fail_times"]`` attempts of a call, then succeed."""
    if call.attempt <= int(call.params.get("fail_times", 0)):
        raise FlakyFailure(f"attempt {call.attempt} fails on purpose")
    return {"attempt": call.attempt}


@agent("noop")
def noop(call: AgentCall) -> None:
    """Return nothing, at once (for benchmarks)."""
    return None


@agent("talk")
def talk(call: AgentCall) -> dict[str, str]:
    """Stream ``params["text"]`` word by word, ``delay`` s apart (a model's tokens, as a client
    following the node sees them), and return it whole."""
    words = str(call.params.get("text", "")).split()
    for word in words:
        call.stream(word + " ")
        time.sleep(float(call.params.get("delay", 0)))
    return {"text": " ".join(words)}


@agent("plan")
def plan(call: AgentCall) -> Spawn:
    """Spawn one child run per item of ``params["items"]``: one ``params["agent"]`` node (``noop`` by
    default) given the item, or with ``agent: sleep`` a durable sleep of ``params["seconds"]``."""
    children = []
    for i, item in enumerate(call.params.get("items", [])):
        dag = Dag(f"{call.node_id}-{i}")
        if call.params.get("agent") == "sleep":
            dag.sleep("rest", seconds=float(call.params.get("seconds", 60)))
        else:
            dag.node("work", str(call.params.get("agent", "noop")), params={"item": item})
        children.append(dag)
    return Spawn(children)
