"""Issue 31's figures for waiting nodes and child runs, on a real stack (embedded Redis, one local
pool of 2 processes).

1. Event to successor: a run waits for an event; the time from ``send_event`` to the waiting
   node's successor running (p50/p99 of ``--samples`` runs, one at a time).
2. Spawn to child running: a ``plan`` node spawns one child of one ``noop`` node; the time from
   the child's submit (its worker prepared it) to its node running, and from the child's end to
   the parent's next node running (p50/p99).
3. Redis bytes: 200 runs each holding one waiting node (a wait, a sleep, and a spawning node with
   one sleeping child run), by ``INFO memory`` before and after, per run.

    python examples/bench_waits.py [--samples 50] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import redis

from coditect_tasks import Dag
from coditect_tasks.client import Client
from coditect_tasks.embedded import LocalStack
from coditect_tasks.settings import Settings


def _at(stamp: str | None) -> float:
    assert stamp, "a node that never started"
    return datetime.fromisoformat(stamp).timestamp()


def _quantiles(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 1),
    }


def _until(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the stack did not get there in time")
        time.sleep(0.005)


def event_to_successor(client: Client, samples: int) -> dict[str, float]:
    seconds = []
    for i in range(samples):
        dag = Dag("gate")
        dag.wait("ci", "bench.event", key=str(i))
        dag.node("after", "noop", after=["ci"])
        run = client.submit(dag)
        _until(lambda run=run: run.status()["nodes"]["ci"]["status"] == "waiting")
        sent = time.time()
        client.send_event("bench.event", key=str(i), data={"i": i})
        assert run.wait(timeout=30) == "succeeded"
        seconds.append(_at(run.status()["nodes"]["after"]["started_at"]) - sent)
    return _quantiles(seconds)


def spawn_latency(client: Client, samples: int) -> dict[str, dict[str, float]]:
    to_child, back = [], []
    for _ in range(samples):
        dag = Dag("planned")
        dag.node("plan", "plan", params={"items": [1]})
        dag.node("after", "noop", after=["plan"])
        run = client.submit(dag)
        assert run.wait(timeout=30) == "succeeded"
        doc = run.status()
        child = client.get(doc["nodes"]["plan"]["children"][0]).status()
        to_child.append(_at(child["nodes"]["work"]["started_at"]) - _at(child["submitted_at"]))
        back.append(_at(doc["nodes"]["after"]["started_at"]) - _at(child["nodes"]["work"]["finished_at"]))
    return {"submit_to_child_running": _quantiles(to_child), "child_end_to_parent_next": _quantiles(back)}


def waiting_bytes(client: Client, state: redis.Redis, count: int = 200) -> dict[str, int]:
    kinds: dict[str, Dag] = {}
    kinds["wait"] = Dag("w")
    kinds["wait"].wait("w", "bench.never", key="k")
    kinds["sleep"] = Dag("s")
    kinds["sleep"].sleep("s", seconds=3600)
    kinds["spawn_with_child"] = Dag("p")
    kinds["spawn_with_child"].node("p", "plan", params={"items": [1], "agent": "sleep", "seconds": 3600})
    out = {}
    for kind, dag in kinds.items():
        before = int(state.info("memory")["used_memory"])
        runs = [client.submit(dag) for _ in range(count)]
        node = next(iter(dag.nodes))
        _until(lambda runs=runs, node=node: all(r.status()["nodes"][node]["status"] == "waiting" for r in runs), 120)
        out[kind] = (int(state.info("memory")["used_memory"]) - before) // count
        for run in runs:
            run.cancel()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="coditect-bench-waits-") as folder:
        base = Settings(home=Path(folder), log_level="WARNING")
        with LocalStack.temporary(base, ["noop", "plan"], "bench-waits", workers=1, concurrency=2) as stack:
            stack.start()
            client = Client(stack.settings)
            state = redis.Redis.from_url(stack.settings.state_url, decode_responses=True)
            report = {
                "event_to_successor": event_to_successor(client, args.samples),
                "spawn": spawn_latency(client, args.samples),
                "bytes_per_waiting_run": waiting_bytes(client, state),
            }
            client.close()
    print(json.dumps(report, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in report.items()))


if __name__ == "__main__":
    main()
