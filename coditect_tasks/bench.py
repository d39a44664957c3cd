"""Benchmarks against plain Celery, in the same run, on the same worker processes.

These machines are shared and noisy, so every figure is a ratio or a median of
several repetitions, plain Celery and coditect interleaved.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from celery import chain, group

from .app import CoditectApp
from .client import DagRun, submit
from .dag.plan import validate
from .dag.spec import Dag


def validate_seconds(nodes: int = 10_000) -> float:
    """Seconds to build, validate and plan a layered DAG of ``nodes`` noop nodes."""
    started = time.perf_counter()
    dag = Dag("big")
    width = 10
    for i in range(nodes):
        after = (
            [f"n{i - width + j}" for j in range(width)]
            if i >= width and i % width == 0
            else ([f"n{i - 1}"] if i % width else [])
        )
        dag.node(f"n{i}", "noop", after=after, params={"i": i})
    validate(dag, {"noop"})
    return time.perf_counter() - started


def celery_group_seconds(app: CoditectApp, n: int, timeout: float) -> float:
    noop = app.tasks["agents.noop"]
    started = time.perf_counter()
    result = group(noop.si() for _ in range(n)).apply_async()
    result.get(timeout=timeout)
    elapsed = time.perf_counter() - started
    result.forget()
    return elapsed


def celery_chain_seconds(app: CoditectApp, n: int, timeout: float) -> float:
    noop = app.tasks["agents.noop"]
    started = time.perf_counter()
    chain(*(noop.si() for _ in range(n))).apply_async().get(timeout=timeout)
    return time.perf_counter() - started


def dag_seconds(app: CoditectApp, dag: Dag, timeout: float) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    run = submit(dag, app)
    state = run.wait(timeout)
    elapsed = time.perf_counter() - started
    if state != "succeeded":
        raise RuntimeError(f"benchmark run {run.id} ended {state}")
    return elapsed, run.status()


def celery_capacity(app: CoditectApp, dag: Dag, runs: int, timeout: float) -> float:
    """Runs per second plain Celery completes when ``runs`` copies of ``dag`` (as canvas) arrive at once."""
    from .load.canvas import canvas

    started = time.perf_counter()
    results = [canvas(dag, app).signature.apply_async() for _ in range(runs)]
    for result in results:
        result.get(timeout=timeout, disable_sync_subtasks=False)
    elapsed = time.perf_counter() - started
    for result in results:
        result.forget()
    return runs / elapsed


def dag_capacity(app: CoditectApp, dag: Dag, runs: int, timeout: float) -> float:
    """Runs per second the platform completes when ``runs`` runs of ``dag`` arrive at once."""
    started = time.perf_counter()
    handles = [submit(dag, app) for _ in range(runs)]
    for run in handles:
        if run.wait(timeout) != "succeeded":
            raise RuntimeError(f"benchmark run {run.id} did not succeed")
    return runs / (time.perf_counter() - started)


def celery_dispatch_seconds(app: CoditectApp, timeout: float) -> float:
    """Apply → done of one plain noop task (its result's ``date_done``): an upper bound on
    Celery's dispatch latency, since a noop finishes within microseconds of starting."""
    noop = app.tasks["agents.noop"]
    applied = datetime.now(UTC)
    result = noop.apply_async()
    result.get(timeout=timeout)
    done: datetime = result.date_done
    result.forget()
    return (done.replace(tzinfo=done.tzinfo or UTC) - applied).total_seconds()


def dag_dispatch_seconds(app: CoditectApp, timeout: float) -> float:
    """Submit → first node running of a one-node noop run, from the caller's clock as
    for plain Celery (validation and planning included)."""
    dag = Dag("dispatch")
    dag.node("n0", "noop")
    submitted = datetime.now(UTC)
    run = submit(dag, app)
    if run.wait(timeout) != "succeeded":
        raise RuntimeError(f"benchmark run {run.id} did not succeed")
    started = run.status()["nodes"]["n0"]["started_at"]
    return (datetime.fromisoformat(started) - submitted).total_seconds()


def submit_milliseconds(app: CoditectApp, runs: int, timeout: float) -> tuple[list[float], list[float]]:
    """Submit of a 4-node noop diamond through one long-lived app and pool (what a ``Client`` holds)
    against plain Celery's ``chain(a, chord([b, c], d)).apply_async()``, interleaved; each side's
    calls in milliseconds. Both kinds of work run to the end before the next measurement."""
    from .load.canvas import canvas

    dag = Dag("diamond")
    dag.node("a", "noop")
    dag.node("b", "noop", after=["a"])
    dag.node("c", "noop", after=["a"])
    dag.node("d", "noop", after=["b", "c"])
    plain: list[float] = []
    ours: list[float] = []
    handles, results = [], []
    for _ in range(runs):
        signature = canvas(dag, app).signature  # chain(a, chord([b, c], d)), built before the clock starts
        started = time.perf_counter()
        results.append(signature.apply_async())
        plain.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        handles.append(submit(dag, app))
        ours.append((time.perf_counter() - started) * 1000)
    for result in results:
        result.get(timeout=timeout, disable_sync_subtasks=False)
        result.forget()
    for run in handles:
        if run.wait(timeout) != "succeeded":
            raise RuntimeError(f"benchmark run {run.id} did not succeed")
    return plain, ours


def fanout(n: int) -> Dag:
    dag = Dag(f"fanout-{n}")
    for i in range(n):
        dag.node(f"n{i}", "noop")
    return dag


def chained(n: int) -> Dag:
    dag = Dag(f"chain-{n}")
    for i in range(n):
        dag.node(f"n{i}", "noop", after=[f"n{i - 1}"] if i else [])
    return dag


def edge_latencies_ms(doc: dict[str, Any]) -> list[float]:
    """Predecessor finished → successor started, per edge of a chain, in milliseconds."""
    nodes = doc["nodes"]
    ids = list(nodes)
    return [
        (
            datetime.fromisoformat(nodes[b]["started_at"]) - datetime.fromisoformat(nodes[a]["finished_at"])
        ).total_seconds()
        * 1000
        for a, b in itertools.pairwise(ids)
    ]


def timeline(run: DagRun) -> dict[str, list[tuple[str, float]]]:
    """Node → its transitions (status, Unix time) in order, from the run's event stream: when each
    node was queued (dispatched), began and ended."""
    out: dict[str, list[tuple[str, float]]] = {}
    for event in run.events():
        if event.node is not None:
            out.setdefault(event.node, []).append((event.status, datetime.fromisoformat(event.ts).timestamp()))
    return out


def max_overlap(spans: list[tuple[float, float]]) -> int:
    """The most (start, end) spans open at one instant (an end and a start at one instant do not overlap)."""
    level = best = 0
    for _, step in sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans]):
        level += step
        best = max(best, level)
    return best


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def run_engine_bench(
    app: CoditectApp,
    fan: int = 1000,
    length: int = 200,
    repeats: int = 3,
    timeout: float = 300,
    dispatches: int = 100,
    diamonds: int = 200,
    on_step: Callable[[str], None] = lambda step: None,
) -> dict[str, Any]:
    """Validation time, fan-out throughput ratio, chain and per-edge latency, dispatch
    latency and diamond capacity, each against plain Celery (``footprint``: what a node costs Redis)."""
    from .load.scenario import default_dag

    on_step("warm-up")
    celery_group_seconds(app, 50, timeout)
    dag_seconds(app, fanout(50), timeout)
    plain_fan, ours_fan, plain_chain, ours_chain, edges, validations = [], [], [], [], [], []
    plain_dispatch: list[float] = []
    ours_dispatch: list[float] = []
    plain_capacity: list[float] = []
    ours_capacity: list[float] = []
    plain_submit: list[float] = []
    ours_submit: list[float] = []
    for rep in range(repeats):
        on_step(f"repetition {rep + 1}/{repeats}: validate {10_000} nodes")
        validations.append(validate_seconds())
        on_step(f"repetition {rep + 1}/{repeats}: fan-out of {fan}")
        plain_fan.append(celery_group_seconds(app, fan, timeout))
        ours_fan.append(dag_seconds(app, fanout(fan), timeout)[0])
        on_step(f"repetition {rep + 1}/{repeats}: chain of {length}")
        plain_chain.append(celery_chain_seconds(app, length, timeout))
        seconds, doc = dag_seconds(app, chained(length), timeout)
        ours_chain.append(seconds)
        edges.extend(edge_latencies_ms(doc))
        on_step(f"repetition {rep + 1}/{repeats}: dispatch latency of {dispatches} single-node runs")
        for _ in range(dispatches):
            plain_dispatch.append(celery_dispatch_seconds(app, timeout) * 1000)
            ours_dispatch.append(dag_dispatch_seconds(app, timeout) * 1000)
        on_step(f"repetition {rep + 1}/{repeats}: submit of {diamonds} diamonds, one at a time")
        plain, ours = submit_milliseconds(app, diamonds, timeout)
        plain_submit.extend(plain)
        ours_submit.extend(ours)
        on_step(f"repetition {rep + 1}/{repeats}: capacity, {diamonds} diamond runs at once")
        plain_capacity.append(celery_capacity(app, default_dag(), diamonds, timeout))
        ours_capacity.append(dag_capacity(app, default_dag(), diamonds, timeout))
    med = statistics.median
    return {
        "repeats": repeats,
        "validate_10k_seconds": round(med(validations), 4),
        "fanout": {
            "tasks": fan,
            "celery_tasks_per_s": round(fan / med(plain_fan), 1),
            "coditect_tasks_per_s": round(fan / med(ours_fan), 1),
            "throughput_ratio": round(med(plain_fan) / med(ours_fan), 3),
        },
        "chain": {
            "length": length,
            "celery_seconds": round(med(plain_chain), 4),
            "coditect_seconds": round(med(ours_chain), 4),
            "celery_ms_per_hop": round(med(plain_chain) / length * 1000, 3),
            "edge_latency_p50_ms": round(percentile(edges, 50), 3),
            "edge_latency_p99_ms": round(percentile(edges, 99), 3),
            "speed_ratio": round(med(plain_chain) / med(ours_chain), 3),
        },
        "dispatch": {
            "runs": len(ours_dispatch),
            "celery_p50_ms": round(percentile(plain_dispatch, 50), 3),
            "celery_p99_ms": round(percentile(plain_dispatch, 99), 3),
            "coditect_p50_ms": round(percentile(ours_dispatch, 50), 3),
            "coditect_p99_ms": round(percentile(ours_dispatch, 99), 3),
        },
        "submit": {
            "calls": len(ours_submit),
            "celery_p50_ms": round(percentile(plain_submit, 50), 3),
            "celery_p99_ms": round(percentile(plain_submit, 99), 3),
            "coditect_p50_ms": round(percentile(ours_submit, 50), 3),
            "coditect_p99_ms": round(percentile(ours_submit, 99), 3),
        },
        "capacity": {
            "runs": diamonds,
            "celery_diamonds_per_s": round(med(plain_capacity), 1),
            "coditect_diamonds_per_s": round(med(ours_capacity), 1),
            "ratio": round(med(ours_capacity) / med(plain_capacity), 3),
        },
    }


def run_observability_bench(
    app: CoditectApp,
    start_pool: Callable[[bool], Callable[[], None]],
    fan: int = 1000,
    repeats: int = 3,
    timeout: float = 300,
    on_step: Callable[[str], None] = lambda step: None,
) -> dict[str, Any]:
    """The issue-5 figure: fan-out throughput with workers exporting traces vs not.

    ``start_pool(traced)`` starts the noop pool with or without an OTLP exporter and
    returns a function that stops it; the two kinds alternate so that noise hits both.
    Metrics are Lua counters written with every transition, so they are on in both.
    """
    seconds: dict[bool, list[float]] = {False: [], True: []}
    for rep in range(repeats):
        for traced in (False, True):
            on_step(f"repetition {rep + 1}/{repeats}: fan-out of {fan}, tracing {'on' if traced else 'off'}")
            stop = start_pool(traced)
            try:
                dag_seconds(app, fanout(50), timeout)  # warm the pool's processes and connections
                seconds[traced].append(dag_seconds(app, fanout(fan), timeout)[0])
            finally:
                stop()
    off, on = statistics.median(seconds[False]), statistics.median(seconds[True])
    return {
        "repeats": repeats,
        "tasks": fan,
        "tracing_off_tasks_per_s": round(fan / off, 1),
        "tracing_on_tasks_per_s": round(fan / on, 1),
        "throughput_ratio": round(off / on, 3),
    }
