"""Benchmarks against plain Celery, in the same run, on the same worker processes.

These machines are shared and noisy, so every figure is a ratio or a median of
several repetitions, plain Celery and coditect interleaved.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from celery import chain, group

from .app import CoditectApp
from .dag.plan import validate
from .dag.run import submit
from .dag.spec import Dag


def validate_seconds(nodes: int = 10_000) -> float:
    """Seconds to build, validate and plan a layered DAG of ``nodes`` noop nodes."""
    started = time.perf_counter()
    dag = Dag("big")
    width = 10
    for i in range(nodes):
        after = [f"n{i - width + j}" for j in range(width)] if i >= width and i % width == 0 else (
            [f"n{i - 1}"] if i % width else [])
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
        (datetime.fromisoformat(nodes[b]["started_at"]) - datetime.fromisoformat(nodes[a]["finished_at"]))
        .total_seconds() * 1000
        for a, b in itertools.pairwise(ids)
    ]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def run_engine_bench(
    app: CoditectApp, fan: int = 1000, length: int = 200, repeats: int = 3, timeout: float = 300,
    on_step: Callable[[str], None] = lambda step: None,
) -> dict[str, Any]:
    """The issue-3 figures: validation time, fan-out throughput ratio, chain latency."""
    on_step("warm-up")
    celery_group_seconds(app, 50, timeout)
    dag_seconds(app, fanout(50), timeout)
    plain_fan, ours_fan, plain_chain, ours_chain, edges, validations = [], [], [], [], [], []
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
    }


def run_observability_bench(
    app: CoditectApp, start_pool: Callable[[bool], Callable[[], None]], fan: int = 1000, repeats: int = 3,
    timeout: float = 300, on_step: Callable[[str], None] = lambda step: None,
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
