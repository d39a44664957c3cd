"""Issue 30's figures for flow control, on a real stack (embedded Redis, two local pools of 4 processes).

1. Overhead: diamond capacity (200 runs at once) and a 1,000-node fan-out, each with a
   non-binding limit on every node (a concurrency limit, a rate limit, one with both) and
   without one, alternated, medians.
2. A keyed concurrency limit: 3 repos × 60 nodes of 0.3 s under ``Limit("repo", concurrency=2,
   key="repo")``: the most nodes of one repo running at once (from the history's times), and
   the run's time against the ideal (60 × 0.3 s / 2 = 9 s).
3. A weighted rate limit: ``rate=20, per=2`` with nodes of 1–5 units for 30 s: the most units
   dispatched in any 2 s window, and the units per second against the limit's 10.
4. Priority: 400 nodes queued at priority 2, then 10 at priority 8: how many nodes began after
   the urgent ones were submitted and before the last of them began (the bar: 2 × the 8 slots).
5. Fairness: key A submits 1,000 nodes, then key B 10: how many of A's had succeeded when B's
   last did (the bar: fewer than 100).
6. Critical path: one chain of 6 nodes of 1 s and 40 independent nodes of 0.1 s on 2 slots (a
   pool of its own), in critical-path order and in FIFO order (``CODITECT_CRITICAL_PATH=0``).

    python examples/bench_flow.py [--repeats 3] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import redis

from coditect_tasks import Dag, submit
from coditect_tasks.app import CoditectApp, create_app
from coditect_tasks.bench import dag_capacity, dag_seconds, fanout, max_overlap, timeline
from coditect_tasks.client import Client, DagRun
from coditect_tasks.embedded import LocalStack
from coditect_tasks.engine.transitions import engine_for
from coditect_tasks.footprint import redis_cpu
from coditect_tasks.limits import Limit
from coditect_tasks.load.scenario import default_dag
from coditect_tasks.settings import Settings

#: Limits that never bind: every dispatch still takes them (a slot, a rate charge) and frees them.
WIDE = {
    "concurrency": Limit("wide-slots", concurrency=1_000_000),
    "rate": Limit("wide-rate", rate=1e9, per=1.0),
    "both": Limit("wide", concurrency=1_000_000, rate=1e9, per=1.0),
}


def limited(dag: Dag, limits: list[str]) -> Dag:
    """``dag`` with every node holding ``limits``."""
    copy = Dag(dag.name)
    for node in dag.nodes.values():
        copy.node(node.id, node.agent, params=node.params, after=node.after, limits=limits)
    return copy


def overhead(app: CoditectApp, state: redis.Redis, repeats: int) -> dict[str, Any]:
    """Capacity and fan-out with each non-binding limit against none, alternated run by run, and
    the Redis CPU per node each spent (the figure a shared machine's noise moves least)."""
    capacity: dict[str, list[float]] = defaultdict(list)
    fan: dict[str, list[float]] = defaultdict(list)
    cpu: dict[str, list[float]] = defaultdict(list)
    for _ in range(repeats):
        for kind, limit in [("none", None), *WIDE.items()]:
            names = [limit.name] if limit else []
            before = redis_cpu(state)
            capacity[kind].append(dag_capacity(app, limited(default_dag(), names), 200, 300))
            fan[kind].append(dag_seconds(app, limited(fanout(1000), names), 300)[0])
            cpu[kind].append((redis_cpu(state) - before) / (200 * 4 + 1000) * 1e6)
    med = statistics.median
    report: dict[str, Any] = {"diamonds_per_s": {k: round(med(v), 1) for k, v in capacity.items()}}
    report["fanout_nodes_per_s"] = {k: round(1000 / med(v), 1) for k, v in fan.items()}
    report["redis_cpu_us_per_node"] = {k: round(med(v), 1) for k, v in cpu.items()}
    for kind in WIDE:
        report[f"capacity_ratio_{kind}"] = round(med(capacity[kind]) / med(capacity["none"]), 3)
        report[f"fanout_ratio_{kind}"] = round(med(fan["none"]) / med(fan[kind]), 3)
        report[f"redis_cpu_ratio_{kind}"] = round(med(cpu[kind]) / med(cpu["none"]), 3)
    return report


def finished(app: CoditectApp, dag: Dag) -> tuple[float, dict[str, list[tuple[str, float]]]]:
    """Run ``dag`` to its end: its seconds, and its nodes' transitions (``bench.timeline``)."""
    seconds, doc = dag_seconds(app, dag, 300)
    return seconds, timeline(DagRun(doc["run_id"], Client.of(app)))


def keyed(app: CoditectApp) -> dict[str, Any]:
    engine_for(app.settings.state_url).declare_limit("repo", Limit("repo", concurrency=2, key="repo").to_json())
    dag = Dag("repos")
    for repo in ("a", "b", "c"):
        for i in range(60):
            dag.node(f"{repo}{i}", "sleep", params={"repo": repo, "seconds": 0.3}, limits=["repo"])
    seconds, events = finished(app, dag)
    overlap = {}
    for repo in ("a", "b", "c"):
        spans = [(dict(e)["running"], dict(e)["succeeded"]) for n, e in events.items() if n.startswith(repo)]
        overlap[repo] = max_overlap(spans)
    ideal = 60 * 0.3 / 2
    return {
        "max_overlap_per_repo": overlap,
        "seconds": round(seconds, 2),
        "ideal_seconds": ideal,
        "ratio_to_ideal": round(seconds / ideal, 3),
    }


def rated(app: CoditectApp, seconds: float) -> dict[str, Any]:
    engine_for(app.settings.state_url).declare_limit(
        "tokens", Limit("tokens", rate=20, per=2.0, units="tokens").to_json()
    )
    rng = random.Random(30)
    units: dict[str, int] = {}
    while sum(units.values()) < seconds * 10 + 20:  # enough for the whole span at the limit's rate
        units[f"n{len(units)}"] = rng.randint(1, 5)
    dag = Dag("rated")
    for node, tokens in units.items():
        dag.node(node, "noop", params={"tokens": tokens}, limits=["tokens"])
    _, events = finished(app, dag)
    dispatched = {n: max(t for s, t in e if s == "queued") for n, e in events.items()}
    worst = max(sum(units[n] for n, t in dispatched.items() if at <= t < at + 2.0 - 0.02) for at in dispatched.values())
    first, last = min(dispatched.values()), max(dispatched.values())
    # the limit allows 20 units at once, then 10 a second: what it allowed over the span taken
    allowed = 20 + 10 * (last - first)
    return {
        "units": sum(units.values()),
        "span_seconds": round(last - first, 2),
        "max_units_in_2s_window": worst,
        "share_of_limit": round(sum(units.values()) / allowed, 3),
    }


def priority(app: CoditectApp, slots: int) -> dict[str, Any]:
    backlog = Dag("backlog")
    for i in range(400):
        backlog.node(f"low{i}", "sleep", params={"seconds": 0.05})
    low = submit(backlog, app, priority=2)
    wait_for_running(low)
    urgent = Dag("urgent")
    for i in range(10):
        urgent.node(f"hot{i}", "sleep", params={"seconds": 0.05})
    hot = submit(urgent, app, priority=8)
    submitted = time.time()
    assert hot.wait(300) == "succeeded" and low.wait(300) == "succeeded"
    began = sorted((t, run.id) for run in (low, hot) for e in timeline(run).values() for s, t in e if s == "running")
    order = [run for at, run in began if at >= submitted]
    last_hot = max(i for i, run in enumerate(order) if run == hot.id)
    return {"begun_until_the_last_urgent_one": last_hot + 1, "bar": 2 * slots}


def wait_for_running(run: Any) -> None:
    deadline = time.monotonic() + 30
    while not any(n["status"] == "running" for n in run.status()["nodes"].values()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {run.id} did not start")
        time.sleep(0.05)


def fairness(app: CoditectApp) -> dict[str, Any]:
    big = Dag("tenant-a")
    for i in range(1000):
        big.node(f"a{i}", "noop")
    small = Dag("tenant-b")
    for i in range(10):
        small.node(f"b{i}", "noop")
    a = submit(big, app, fairness_key="a")
    b = submit(small, app, fairness_key="b")
    assert a.wait(300) == "succeeded" and b.wait(300) == "succeeded"
    ends = {run.id: [t for e in timeline(run).values() for s, t in e if s == "succeeded"] for run in (a, b)}
    b_done = max(ends[b.id])
    return {"a_succeeded_before_b_finished": sum(1 for t in ends[a.id] if t < b_done)}


def critical_path(base: Settings) -> dict[str, Any]:
    dag = Dag("critical")
    for i in range(40):
        dag.node(f"short{i}", "sleep", params={"seconds": 0.1})
    for i in range(6):
        dag.node(f"chain{i}", "sleep", params={"seconds": 1.0}, after=[f"chain{i - 1}"] if i else [])
    seconds = {}
    with LocalStack.temporary(base, ["sleep"], "bench-critical", workers=1, concurrency=2) as stack:
        stack.start()
        for label, enabled in (("fifo", False), ("critical_path", True)):
            app = create_app(dataclasses.replace(stack.settings, critical_path=enabled))
            seconds[label] = round(dag_seconds(app, dag, 300)[0], 2)
            app.close()
    return {**seconds, "sooner": round(1 - seconds["critical_path"] / seconds["fifo"], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rate-seconds", type=float, default=30.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="coditect-bench-limits-") as folder:
        base = Settings(home=Path(folder), log_level="WARNING")
        with LocalStack.temporary(base, ["noop", "echo", "sleep"], "bench-limits", workers=2, concurrency=4) as stack:
            stack.start()
            app = create_app(stack.settings)
            state = redis.Redis.from_url(stack.settings.state_url, decode_responses=True)
            for limit in WIDE.values():
                engine_for(stack.settings.state_url).declare_limit(limit.name, limit.to_json())
            dag_capacity(app, default_dag(), 50, 300)  # warm-up
            started = time.perf_counter()
            report = {
                "overhead": overhead(app, state, args.repeats),
                "keyed_concurrency": keyed(app),
                "weighted_rate": rated(app, args.rate_seconds),
                "priority": priority(app, slots=8),
                "fairness": fairness(app),
                "critical_path": critical_path(base),
                "seconds": 0.0,
            }
            report["seconds"] = round(time.perf_counter() - started, 1)
            app.close()
    print(json.dumps(report, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in report.items()))


if __name__ == "__main__":
    main()
