"""Agents that only the tests use (time limits, poison results)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from coditect_tasks import AgentCall, Dag, Limit, Spawn, agent


@agent("slowpoke", timeout=1.0, soft_timeout=0.5)
def slowpoke(call: AgentCall) -> dict[str, float]:
    """Sleep ``params["seconds"]``, beyond the hard limit if asked."""
    seconds = float(call.params.get("seconds", 0))
    time.sleep(seconds)
    return {"slept": seconds}


@agent("stubborn", timeout=1.0, soft_timeout=0.3)
def stubborn(call: AgentCall) -> dict[str, float]:
    """Ignore the soft time limit, so only the hard limit (a process kill) stops it."""
    return _outlast_soft_limit(float(call.params.get("seconds", 0)))


@agent("steadfast", timeout=2.0, soft_timeout=1.5)
def steadfast(call: AgentCall) -> dict[str, float]:
    """As stubborn, with a soft limit long enough for a process to take the next node (TAKE_NEXT_SECONDS)."""
    return _outlast_soft_limit(float(call.params.get("seconds", 0)))


def _outlast_soft_limit(seconds: float) -> dict[str, float]:
    deadline = time.monotonic() + seconds
    while True:  # the soft limit's exception may land anywhere in the loop, not only in sleep
        try:
            while time.monotonic() < deadline:
                time.sleep(0.05)
            break
        except SoftTimeLimitExceeded:
            continue
    return {"slept": seconds}


@agent("wobbly", fallback="echo", breaker_failures=2, breaker_reset=2.0)
def wobbly(call: AgentCall) -> dict[str, str]:
    """Fail when ``params["fail"]``: trips its breaker; its fallback is ``echo``."""
    if call.params.get("fail"):
        raise RuntimeError("wobbly is down")
    return {"wobbly": "ok"}


@agent("fragile", breaker_failures=2, breaker_reset=60.0)
def fragile(call: AgentCall) -> None:
    """Always fail, with no fallback: an open breaker then fails its nodes fast."""
    raise RuntimeError("fragile is down")


@agent("poison")
def poison(call: AgentCall) -> object:
    """Return something the platform must refuse, as ``params["kind"]`` says."""
    kind = call.params["kind"]
    if kind == "not-json":
        return {"when": {1, 2}}
    if kind == "huge":
        return "x" * (9 * 1024 * 1024)
    raise ValueError("poison raises on every attempt")


@agent("counted", timeout=30.0)
def counted(call: AgentCall) -> dict[str, int]:
    """Append one line per execution (foreach item, attempt) to the file ``params["log"]``, then sleep
    ``params["seconds"]`` (``params["first_seconds"]`` on its first attempt, if given)."""
    log = Path(call.params["log"])
    with log.open("a") as handle:
        handle.write(f"{call.params.get('item', '-')} {call.attempt}\n")
    seconds = call.params.get("first_seconds") if call.attempt == 1 else None
    time.sleep(float(seconds if seconds is not None else call.params.get("seconds", 0)))
    return {"executions": len(log.read_text().splitlines())}


@agent("sticky", timeout=3.0, soft_timeout=2.5)
def sticky(call: AgentCall) -> dict[str, int]:
    """Attempt 1 ignores its time limits (only a kill stops it); later attempts take ``params["seconds"]``."""
    if call.attempt == 1:
        while True:
            try:
                time.sleep(0.05)
            except SoftTimeLimitExceeded:
                continue
    time.sleep(float(call.params.get("seconds", 0)))
    return {"attempt": call.attempt}


@agent("backlogged", retries=2, backoff=0.2, backoff_max=0.2, breaker_failures=100)
def backlogged(call: AgentCall) -> dict[str, float]:
    """Append the node id to ``params["log"]`` per execution; then fail if ``params["fail"]``, else sleep."""
    with Path(call.params["log"]).open("a") as handle:
        handle.write(f"{call.node_id}\n")
    if call.params.get("fail"):
        raise RuntimeError("backlogged fails on every attempt")
    seconds = float(call.params.get("seconds", 0))
    time.sleep(seconds)
    return {"slept": seconds}


@agent("gated")
def gated(call: AgentCall) -> dict[str, Any]:
    """Append one line per execution to ``params["log"]``; fail unless the file ``params["gate"]``
    exists, looked at once the file ``params["after"]`` exists (if given: at most 30 s)."""
    with Path(call.params["log"]).open("a") as handle:
        handle.write(f"{call.node_id} {call.attempt}\n")
    deadline = time.monotonic() + 30
    while call.params.get("after") and not Path(call.params["after"]).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    if not Path(call.params["gate"]).exists():
        raise RuntimeError("the gate is closed")
    return {"upstream": call.upstream}


@agent("waiter", timeout=60.0)
def waiter(call: AgentCall) -> dict[str, str]:
    """Return once the file ``params["gate"]`` exists (a test opens it when it is ready to watch)."""
    gate = Path(call.params["gate"])
    deadline = time.monotonic() + 30
    while not gate.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{gate} never appeared")
        time.sleep(0.02)
    return {"gate": "open"}


@agent("blob")
def blob(call: AgentCall) -> str:
    """Return a string of ``params["bytes"]`` bytes: a result too large for Redis."""
    return "x" * int(call.params["bytes"])


@agent("measure")
def measure(call: AgentCall) -> dict[str, Any]:
    """Return the length of each upstream result (as the agent received it) and the URL of a note it wrote."""
    lengths = {node: len(value) for node, value in call.upstream.items()}
    return {"lengths": lengths, "note": call.artifacts.put("notes.txt", f"measured {lengths}")}


@agent("pinned", timeout=30.0, limits=[Limit("repo-slots", concurrency=2, key="repo")])
def pinned(call: AgentCall) -> dict[str, float]:
    """Sleep ``params["seconds"]``; at most two run at once per ``params["repo"]``, across every worker."""
    seconds = float(call.params.get("seconds", 0))
    time.sleep(seconds)
    return {"slept": seconds}


@agent("planner", timeout=30.0)
def planner(call: AgentCall) -> Spawn | None:
    """Spawn ``params["children"]`` child runs of one node each: an ``echo`` (or, with ``leaf:
    sleep``, a sleep of ``seconds``; ``leaf`` names another agent, given ``leaf_params``), or with
    ``levels`` > 1 a planner of one level fewer. It returns once the file ``gate`` exists, if given;
    ``bad_spawn`` hands ``call.spawn`` a string. With
    ``die_once`` (a file), the first attempt SIGKILLs its own process just before it returns."""
    p = call.params
    levels = int(p.get("levels", 1))
    dags = []
    for i in range(int(p.get("children", 1))):
        dag = Dag(f"{call.node_id}-{i}")
        if levels > 1:
            dag.node("plan", "planner", params={**p, "levels": levels - 1, "die_once": None})
        elif p.get("leaf") == "sleep":
            dag.sleep("rest", seconds=float(p.get("seconds", 60)))
        else:
            dag.node("leaf", str(p.get("leaf", "echo")), params={"i": i, **p.get("leaf_params", {})})
        dags.append(dag)
    if gate := p.get("gate"):  # the test opens it once it has done what it wants done meanwhile
        while not Path(gate).exists():
            time.sleep(0.01)
    if p.get("bad_spawn"):
        call.spawn("not a dag")
        return None
    if (marker := p.get("die_once")) and not Path(marker).exists():
        Path(marker).touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return Spawn(dags)


@agent("streamer", timeout=60.0)
def streamer(call: AgentCall) -> dict[str, int]:
    """Stream ``count`` chunks (0, 1, …) ``interval`` s apart. On its first attempt, after
    ``pause_after`` chunks it waits for the file ``gate`` (so a test can kill it mid-stream)."""
    p = call.params
    for i in range(int(p.get("count", 10))):
        if call.attempt == 1 and i == p.get("pause_after"):
            while not Path(p["gate"]).exists():
                time.sleep(0.01)
        call.stream(i)
        if p.get("interval"):
            time.sleep(float(p["interval"]))
    return {"streamed": int(p.get("count", 10))}


@agent("versioned")
def versioned_v1(call: AgentCall) -> dict[str, str]:
    """Version 1 (unversioned): says which version ran."""
    return {"version": "1"}


@agent("versioned", version="2")
def versioned_v2(call: AgentCall) -> dict[str, str]:
    """Version 2, served on agents.versioned@2: says which version ran."""
    return {"version": "2"}
